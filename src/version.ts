/** The package version, read once from package.json (one source of truth). */
import { readFileSync } from 'node:fs'

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'latin1')) as { version: string }

export const VERSION: string = pkg.version

/**
 * The beanstalkd release whose protocol this server speaks, as `stats`
 * reports `version`. Clients parse it: fivebeans' tests append ".0" and hand
 * it to semver to decide which commands exist, so it must read exactly as
 * the reference's does. Which server answers is told where no client
 * parses: `-v` and the start log line (VERSION).
 */
export const PROTOCOL_VERSION = '1.12'

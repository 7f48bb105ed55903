/** The package version, read once from package.json (one source of truth). */
import { readFileSync } from 'node:fs'

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'latin1')) as { version: string }

export const VERSION: string = pkg.version

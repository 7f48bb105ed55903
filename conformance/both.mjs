// @ts-check
/**
 * The differential check `npm test` runs: the whole suite against the
 * reference beanstalkd (proving every scenario true of it), against
 * tsbeanstalkd, and against tsbeanstalkd over TLS with token authentication
 * (every connection authenticates first), which shows the protocol is the
 * same behind them, then against tsbeanstalkd --extensions (the standard
 * scenarios, and the extensions' own in conformance/extensions/). Without a `beanstalkd` (or an `openssl` for the test
 * certificates) on PATH that run is skipped with a notice, except under CI,
 * where both are required.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { haveOpenssl, makeTestCerts } from './lib/certs.mjs'

const run = (/** @type {string[]} */ args) =>
  spawnSync(process.execPath, ['conformance/run.mjs', ...args], { stdio: 'inherit' }).status ?? 1

/** @param {string} what @param {string} install */
function missing(what, install) {
  if (process.env.CI) {
    console.error(`conformance: ${what} is not installed; CI needs it (${install})`)
    process.exit(1)
  }
  console.log(`conformance: ${what} not installed, its run skipped (${install})`)
}

const hasReference = spawnSync('beanstalkd', ['-v'], { stdio: 'ignore' }).status === 0
let failed = 0
if (hasReference) {
  console.log('conformance against the reference (beanstalkd):')
  failed += run(['--server', 'beanstalkd -l 127.0.0.1 -p {PORT}', '--flavor', 'ref'])
} else {
  missing('beanstalkd', 'apt-get install -y beanstalkd')
}
console.log('conformance against tsbeanstalkd:')
failed += run(['--server', 'node bin/tsbeanstalkd.js -l 127.0.0.1 -p {PORT}', '--flavor', 'tsb'])
if (haveOpenssl()) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tsbconf-tls-'))
  try {
    const c = makeTestCerts(dir)
    console.log('conformance against tsbeanstalkd over TLS, after auth (Unix-socket scenarios skipped):')
    const server = `node bin/tsbeanstalkd.js -l 127.0.0.1 --tls-only --tls-port {PORT} --tls-cert ${c.cert} --tls-key ${c.key} --auth-file ${c.tokens}`
    failed += run(['--server', server, '--flavor', 'tsb', '--tls', c.ca, '--auth', c.token])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
} else {
  missing('openssl', 'apt-get install -y openssl')
}
// With --extensions every standard scenario must still pass (those that show
// the extensions' lines answered as the reference does are tagged off), and
// the extension scenarios (conformance/extensions/, tsbeanstalkd only) too.
const extended = 'node bin/tsbeanstalkd.js -l 127.0.0.1 -p {PORT} --extensions'
console.log('conformance against tsbeanstalkd --extensions:')
failed += run(['--server', extended, '--flavor', 'tsb', '--skip-tag', 'no-extensions'])
console.log('extension scenarios against tsbeanstalkd --extensions:')
failed += run(['--server', extended, '--flavor', 'tsb', '--dir', 'conformance/extensions'])
process.exit(failed === 0 ? 0 : 1)

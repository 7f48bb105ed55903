// @ts-check
/**
 * The differential check `npm test` runs: the whole suite against the
 * reference beanstalkd (proving every scenario true of it) and against
 * tsbeanstalkd. Without a `beanstalkd` on PATH the reference half is skipped
 * with a notice, except under CI, where it is required.
 */
import { spawnSync } from 'node:child_process'

const run = (/** @type {string[]} */ args) =>
  spawnSync(process.execPath, ['conformance/run.mjs', ...args], { stdio: 'inherit' }).status ?? 1

const hasReference = spawnSync('beanstalkd', ['-v'], { stdio: 'ignore' }).status === 0
let failed = 0
if (hasReference) {
  console.log('conformance against the reference (beanstalkd):')
  failed += run(['--server', 'beanstalkd -l 127.0.0.1 -p {PORT}', '--flavor', 'ref'])
} else if (process.env.CI) {
  console.error('conformance: beanstalkd is not installed; CI needs it (apt-get install -y beanstalkd)')
  process.exit(1)
} else {
  console.log('conformance: beanstalkd not installed, reference run skipped (apt-get install -y beanstalkd)')
}
console.log('conformance against tsbeanstalkd:')
failed += run(['--server', 'node bin/tsbeanstalkd.js -l 127.0.0.1 -p {PORT}', '--flavor', 'tsb'])
process.exit(failed === 0 ? 0 : 1)

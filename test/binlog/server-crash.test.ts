/**
 * The whole server with `-b -f 0` under concurrent load, killed with SIGKILL
 * at random moments and restarted on the same directory, 20 times, for each
 * engine (`--store binlog`, `--store sqlite`): every job
 * acknowledged as INSERTED and not acknowledged as DELETED comes back with the
 * same body, priority and state class; no acknowledged delete comes back; new
 * ids are above every id ever acknowledged.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Truth, load, verify } from '../helpers/crash-load.js'
import { ensureBuilt, killAll, killNineRounds } from '../helpers/process.js'
import { prng } from '../helpers/prng.js'
import { ENGINES } from '../store/engines.js'

const dirs: string[] = []
beforeAll(() => {
  ensureBuilt()
})
afterEach(async () => {
  await killAll()
})
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

describe.each(ENGINES)('$name', (engine) => {
  it('survives 20 kill -9 under concurrent load with -f 0, losing nothing acknowledged', { timeout: 120_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-crash-'))
    dirs.push(dir)
    const args = ['-b', dir, ...engine.flags, '-f', '0', '-s', '65536', '-p0', '-l127.0.0.1']
    const t = new Truth()
    const rnd = prng(20261124)
    const last = await killNineRounds(
      args,
      20,
      (n) => rnd.int(n),
      (port) => verify(t, port),
      (port, round) => [0, 1, 2, 3].map((k) => load(t, port, round * 10 + k)),
    )
    expect(last['store']).toBe(engine.name)
    expect(t.deleted.size).toBeGreaterThan(50)
    expect(t.live.size).toBeGreaterThan(5)
  })
})

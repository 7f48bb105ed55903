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
import { RawClient } from '../helpers/client.js'
import { ensureBuilt, killAll, killNineRounds } from '../helpers/process.js'
import { prng } from '../helpers/prng.js'
import { ENGINES } from '../store/engines.js'

type StateClass = 'ready' | 'delayed' | 'buried'
interface Expected {
  body: string
  pri: number
  state: StateClass
}

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

/** What the clients were told, across every round of one engine's run. */
class Truth {
  readonly live = new Map<number, Expected>()
  readonly deleted = new Set<number>()
  /** Jobs with a delete, bury or release in flight when the server died: either outcome is right. */
  readonly uncertain = new Set<number>()
  maxId = 0
}

/** One client's load until its connection dies: put, delete, reserve then bury or release with delay. */
async function load(t: Truth, port: number, seed: number): Promise<void> {
  const { live, deleted, uncertain } = t
  const rnd = prng(seed)
  let c: RawClient
  try {
    c = await RawClient.connect(port)
  } catch {
    return
  }
  let inflight = 0
  try {
    for (;;) {
      inflight = 0
      const roll = rnd.next()
      // Keep a few hundred live jobs: enough to matter, few enough to verify quickly.
      if (roll < (live.size < 300 ? 0.55 : 0.3) || live.size < 5) {
        const body = `job-${seed}-${rnd.int(1e9)}-${'x'.repeat(rnd.int(300))}`
        const pri = rnd.int(2000)
        const delay = rnd.chance(0.1) ? 1000 : 0
        const reply = await c.call(`put ${pri} ${delay} 100 ${body.length}\r\n${body}\r\n`, 5000)
        const id = Number(/^INSERTED (\d+)\r\n$/.exec(reply)![1])
        live.set(id, { body, pri, state: delay > 0 ? 'delayed' : 'ready' })
        t.maxId = Math.max(t.maxId, id)
      } else if (roll < 0.85) {
        const ids = [...live.keys()]
        const id = ids[rnd.int(ids.length)]!
        inflight = id
        const reply = await c.call(`delete ${id}\r\n`, 5000)
        if (reply === 'DELETED\r\n') {
          live.delete(id)
          deleted.add(id)
        }
      } else {
        const reply = await c.call('reserve-with-timeout 0\r\n', 5000)
        const m = /^RESERVED (\d+) (\d+)\r\n$/.exec(reply)
        if (m === null) continue
        const id = Number(m[1])
        await c.read(Number(m[2]) + 2, 5000)
        const e = live.get(id)
        if (e === undefined) continue
        e.state = 'ready' // a reserved job replays as ready
        inflight = id
        if (rnd.chance(0.5)) {
          const pri = rnd.int(2000)
          if ((await c.call(`bury ${id} ${pri}\r\n`, 5000)) === 'BURIED\r\n') Object.assign(e, { pri, state: 'buried' })
        } else {
          const pri = rnd.int(2000)
          if ((await c.call(`release ${id} ${pri} 1000\r\n`, 5000)) === 'RELEASED\r\n') {
            Object.assign(e, { pri, state: 'delayed' })
          }
        }
      }
    }
  } catch {
    // The server was killed: what was not acknowledged may or may not have happened.
    if (inflight !== 0) uncertain.add(inflight)
  } finally {
    c.close()
  }
}

async function verify(t: Truth, port: number): Promise<void> {
  const { live, deleted, uncertain } = t
  const c = await RawClient.connect(port)
  for (const id of uncertain) {
    const e = live.get(id)
    if (e === undefined) continue
    const head = await c.call(`peek ${id}\r\n`)
    if (head === 'NOT_FOUND\r\n') {
      live.delete(id)
      continue
    }
    await c.read(e.body.length + 2)
    const st = await c.stats(`stats-job ${id}\r\n`)
    e.pri = Number(st['pri'])
    e.state = st['state'] as StateClass
  }
  uncertain.clear()
  for (const [id, e] of live) {
    const head = await c.call(`peek ${id}\r\n`)
    expect(head, `job ${id}`).toBe(`FOUND ${id} ${e.body.length}\r\n`)
    expect(await c.read(e.body.length + 2)).toBe(`${e.body}\r\n`)
    const st = await c.stats(`stats-job ${id}\r\n`)
    expect(Number(st['pri']), `pri of job ${id}`).toBe(e.pri)
    expect(st['state'], `state of job ${id}`).toBe(e.state)
  }
  for (const id of deleted) expect(await c.call(`peek ${id}\r\n`), `deleted job ${id}`).toBe('NOT_FOUND\r\n')
  const reply = await c.call('put 0 0 10 1\r\nz\r\n')
  const id = Number(/^INSERTED (\d+)\r\n$/.exec(reply)![1])
  expect(id).toBeGreaterThan(t.maxId)
  expect(await c.call(`delete ${id}\r\n`)).toBe('DELETED\r\n')
  t.maxId = id
  c.close()
}

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

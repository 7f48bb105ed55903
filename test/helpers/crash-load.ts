/**
 * The kill -9 tests' load and their check, shared by every engine's crash
 * and failover tests: clients that put, delete, reserve, bury and release
 * until their connection dies, recording what the server acknowledged
 * (Truth), and `verify`, which checks a restarted (or new leader's) server
 * against it: every acknowledged job there with its body, priority and state
 * class, no acknowledged delete back, new ids above every one handed out.
 */
import { expect } from 'vitest'
import { RawClient } from './client.js'
import { prng } from './prng.js'

type StateClass = 'ready' | 'delayed' | 'buried'
interface Expected {
  body: string
  pri: number
  state: StateClass
}

/** What the clients were told, across every round of one engine's run. */
export class Truth {
  readonly live = new Map<number, Expected>()
  readonly deleted = new Set<number>()
  /** Jobs with a delete, bury or release in flight when the server died: either outcome is right. */
  readonly uncertain = new Set<number>()
  maxId = 0
}

/** One client's load until its connection dies: put, delete, reserve then bury or release with delay. */
export async function load(t: Truth, port: number, seed: number): Promise<void> {
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

export async function verify(t: Truth, port: number): Promise<void> {
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


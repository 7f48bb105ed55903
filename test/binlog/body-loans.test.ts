/**
 * The binlog and the SQLite store read a job's body as a view of its slab
 * that they borrow (`Job.lendBody`) and settle once their write returns, so
 * the arena refills an emptied slab under them (queue/body-arena.ts) as it
 * does without a store, but never under a record still queued: a put, its
 * delete and another put in the same turn leave the first body's bytes as
 * they were until the turn's write took them (the binlog writes both
 * records; SQLite drops a put deleted before its commit). A record written
 * with the second body's bytes under the first one's CRC would stop the next
 * start.
 */
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { Job } from '../../src/queue/job.js'
import { Registry } from '../../src/queue/registry.js'
import { TimingWheel } from '../../src/queue/timing-wheel.js'
import { openStore } from '../../src/store/open.js'
import type { DurableStore, StoreEngine } from '../../src/store/store.js'
import { ManualClock } from '../../src/util/clock.js'
import { RecordingWaiter } from '../helpers/queue.js'
import { putBody } from '../helpers/put-body.js'
import { tmpDir } from './helpers.js'

const body = (c: string): Buffer => Buffer.from(`${c.repeat(3000)}\r\n`, 'latin1')
const bodyOf = (j: Job): string => j.slab.buf.toString('latin1', j.bodyOff, j.bodyOff + j.bodyLen)

const stores: DurableStore[] = []
afterEach(() => {
  for (const s of stores.splice(0)) s.close()
})

async function open(engine: StoreEngine, dir: string): Promise<Registry> {
  const clock = new ManualClock(1_000_000)
  const r = new Registry(clock, new TimingWheel(clock.now()))
  const opts = { dir, engine, fileSize: 8 << 20, fsyncMs: 0, fsyncNever: true, maxJobSize: 65535, log: pino({ level: 'silent' }), clock, yieldMs: 0 }
  const store = await openStore(opts, r)
  stores.push(store)
  r.journal = store
  return r
}

describe.each(['binlog', 'sqlite'] as const)('bodies lent to the %s store', (engine) => {
  it('are refilled once written: the next put after a delete reuses the emptied slab', async () => {
    const r = await open(engine, tmpDir())
    const s = r.openSession(new RecordingWaiter())
    const a = putBody(r, s, 0, 0, 60, body('a'))!
    stores[0]!.flush()
    expect(r.delete(s, a.id)).toBe(true)
    stores[0]!.flush()
    const c = putBody(r, s, 0, 0, 60, body('c'))!
    expect([c.slab === a.slab, c.bodyOff]).toEqual([true, a.bodyOff])
    expect(bodyOf(c)).toBe(body('c').toString('latin1'))
  })

  it('are not refilled before the write: put, delete and put in one turn restart intact', async () => {
    const dir = tmpDir()
    let r = await open(engine, dir)
    const s = r.openSession(new RecordingWaiter())
    const a = putBody(r, s, 0, 0, 60, body('a'))!
    const b = putBody(r, s, 0, 0, 60, body('b'))!
    expect(r.delete(s, a.id)).toBe(true)
    expect(r.delete(s, b.id)).toBe(true)
    // The slab is empty again, and a's and b's records may still wait for the turn's write.
    const c = putBody(r, s, 0, 0, 60, body('c'))!
    stores.pop()!.close()

    r = await open(engine, dir)
    const back = r.peek(c.id)
    expect(back === undefined ? 'gone' : bodyOf(back)).toBe(body('c').toString('latin1'))
    expect([r.peek(a.id), r.peek(b.id)]).toEqual([undefined, undefined])
  })
})

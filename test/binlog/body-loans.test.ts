/**
 * The binlog, the SQLite and the PostgreSQL store read a job's body as a view
 * of its slab that they borrow (`Job.lendBody`) and settle once their write
 * returns (PostgreSQL's: the commit's round trip), so
 * the arena refills an emptied slab under them (queue/body-arena.ts) as it
 * does without a store, but never under a record still queued: a put, its
 * delete and another put in the same turn leave the first body's bytes as
 * they were until the turn's write took them (the binlog writes both
 * records; SQLite drops a put deleted before its commit; PostgreSQL's commit
 * is still in flight). A record written
 * with the second body's bytes under the first one's CRC would stop the next
 * start.
 */
import pino from 'pino'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { Job } from '../../src/queue/job.js'
import { Registry } from '../../src/queue/registry.js'
import { TimingWheel } from '../../src/queue/timing-wheel.js'
import { openStore } from '../../src/store/open.js'
import { Leader } from '../../src/store/postgres/leader.js'
import type { DurableStore, StoreEngine } from '../../src/store/store.js'
import { ManualClock } from '../../src/util/clock.js'
import { PgCluster, pgMissing, stopAllClusters } from '../helpers/postgres.js'
import { RecordingWaiter } from '../helpers/queue.js'
import { putBody } from '../helpers/put-body.js'
import { tmpDir } from './helpers.js'

const body = (c: string): Buffer => Buffer.from(`${c.repeat(3000)}\r\n`, 'latin1')
const bodyOf = (j: Job): string => j.slab.buf.toString('latin1', j.bodyOff, j.bodyOff + j.bodyLen)

const pgMissingWhy = pgMissing()
const engines: StoreEngine[] = pgMissingWhy === null ? ['binlog', 'sqlite', 'postgres'] : ['binlog', 'sqlite']
if (pgMissingWhy !== null) console.warn(`skipping the PostgreSQL store's body loans: ${pgMissingWhy}`)

const log = pino({ level: 'silent' })
const stores: DurableStore[] = []
const leaders: Leader[] = []
afterEach(async () => {
  for (const s of stores.splice(0)) await (s.closeAsync?.() ?? s.close())
  for (const l of leaders.splice(0)) await l.release()
})
let cluster: PgCluster | null = null
afterAll(() => stopAllClusters())

/** For PostgreSQL `dir` names the schema: one cluster, a namespace per test. */
async function open(engine: StoreEngine, dir: string): Promise<Registry> {
  const clock = new ManualClock(1_000_000)
  const r = new Registry(clock, new TimingWheel(clock.now()))
  const opts = { dir, engine, fileSize: 8 << 20, fsyncMs: 0, fsyncNever: true, maxJobSize: 65535, log, clock, yieldMs: 0 }
  let postgres: { url: string; schema: string; leader: Leader } | undefined
  if (engine === 'postgres') {
    cluster ??= PgCluster.start()
    const at = { url: cluster.url, schema: dir }
    const leader = await Leader.acquire({ ...at, log, onLost: () => undefined })
    leaders.push(leader)
    postgres = { ...at, leader }
  }
  const store = await openStore({ ...opts, ...(postgres === undefined ? {} : { dir: '', postgres }) }, r)
  stores.push(store)
  r.journal = store
  return r
}

/** Until every record so far is written (at once for the binlog and SQLite, a commit for PostgreSQL). */
function written(store: DurableStore): Promise<void> {
  const seq = store.flush()
  return new Promise((resolve) => store.whenDurable(seq, resolve))
}

let schemas = 0
const where = (engine: StoreEngine): string => (engine === 'postgres' ? `tsb_loans${++schemas}` : tmpDir())

describe.each(engines)('bodies lent to the %s store', { timeout: 60_000 }, (engine) => {
  it('are refilled once written: the next put after a delete reuses the emptied slab', async () => {
    const r = await open(engine, where(engine))
    const s = r.openSession(new RecordingWaiter())
    const a = putBody(r, s, 0, 0, 60, body('a'))!
    await written(stores[0]!)
    expect(r.delete(s, a.id)).toBe(true)
    await written(stores[0]!)
    const c = putBody(r, s, 0, 0, 60, body('c'))!
    expect([c.slab === a.slab, c.bodyOff]).toEqual([true, a.bodyOff])
    expect(bodyOf(c)).toBe(body('c').toString('latin1'))
  })

  it('are not refilled before the write: put, delete and put in one turn restart intact', async () => {
    const dir = where(engine)
    let r = await open(engine, dir)
    const s = r.openSession(new RecordingWaiter())
    const a = putBody(r, s, 0, 0, 60, body('a'))!
    const b = putBody(r, s, 0, 0, 60, body('b'))!
    expect(r.delete(s, a.id)).toBe(true)
    expect(r.delete(s, b.id)).toBe(true)
    // The slab is empty again, and a's and b's records may still wait for the turn's write.
    const c = putBody(r, s, 0, 0, 60, body('c'))!
    await written(stores[0]!)
    const first = stores.pop()!
    await (first.closeAsync?.() ?? first.close())
    await leaders.pop()?.release()

    r = await open(engine, dir)
    const back = r.peek(c.id)
    expect(back === undefined ? 'gone' : bodyOf(back)).toBe(body('c').toString('latin1'))
    expect([r.peek(a.id), r.peek(b.id)]).toEqual([undefined, undefined])
  })
})

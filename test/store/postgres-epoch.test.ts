/**
 * The PostgreSQL store's second fence, below the lock: every commit checks
 * the leader epoch, so a leader whose epoch was raised by a takeover
 * commits nothing more and acknowledges nothing (src/store/postgres/).
 * Against a real cluster (helpers/postgres.ts); the takeover's raise is the
 * statement a new leader's takeOver runs.
 */
import { pino } from 'pino'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Leader } from '../../src/store/postgres/leader.js'
import { PostgresStore } from '../../src/store/postgres/postgres-store.js'
import type { JobView } from '../../src/store/store.js'
import { PgCluster, pgMissing, stopAllClusters } from '../helpers/postgres.js'
import { TestQueue } from '../helpers/queue.js'

const missing = pgMissing()
if (missing !== null) console.warn(`skipping the PostgreSQL epoch test: ${missing}`)

const job = (id: number, body: string): JobView => ({
  id,
  tube: { name: 'default' },
  pri: 10,
  delayMs: 0,
  ttrMs: 60_000,
  body: Buffer.from(`${body}\r\n`),
  bodyLen: body.length + 2,
  state: 1,
  createdAt: 1_000_000,
  deadline: 0,
  reserves: 0,
  timeouts: 0,
  releases: 0,
  buries: 0,
  kicks: 0,
})

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe.skipIf(missing !== null)('postgres store epoch', () => {
  let cluster: PgCluster
  beforeAll(() => {
    cluster = PgCluster.start()
  }, 120_000)
  afterAll(() => stopAllClusters())

  it('a commit after another takeover raised the epoch fails: fenced, nothing committed, nothing acknowledged', { timeout: 30_000 }, async () => {
    const log = pino({ level: 'silent' })
    const schema = 'tsb_epoch'
    const lost: string[] = []
    const leader = await Leader.acquire({ url: cluster.url, schema, log, onLost: (r) => lost.push(r) })
    const q = new TestQueue()
    let fenced: Error | null = null
    const store = await PostgresStore.open(
      { url: cluster.url, schema, leader, dir: '', fsyncMs: 0, fsyncNever: false, maxJobSize: 65535, log, clock: q.clock, onFenced: (e) => (fenced = e) },
      q.r,
    )
    const sql = postgres({ host: cluster.dir, port: cluster.port, user: 'postgres', database: 'postgres', onnotice: () => undefined })
    try {
      expect(store.epoch).toBe(1)
      store.put(job(1, 'kept'))
      const first = store.flush()
      await new Promise<void>((resolve) => store.whenDurable(first, resolve))
      // What a new leader's takeover does (schema.ts takeOver), here without its lock.
      await sql.unsafe(`UPDATE ${schema}.meta SET value = value + 1 WHERE key = 'epoch'`)
      store.put(job(2, 'stale'))
      const second = store.flush()
      let acked = false
      store.whenDurable(second, () => (acked = true))
      await until(() => fenced !== null, 'the store to fence itself')
      expect(fenced!.message).toMatch(/fenced: another process took over: the epoch is 2, not 1/)
      expect((fenced as unknown as { code: string }).code).toBe('TSB_ERR_STORE_FENCED')
      expect(acked).toBe(false)
      expect(() => store.put(job(3, 'after'))).toThrow(/fenced/)
      const rows = await sql.unsafe(`SELECT id, convert_from(body, 'UTF8') AS body FROM ${schema}.jobs ORDER BY id`)
      expect(rows.map((r) => [Number(r['id']), r['body']])).toEqual([[1, 'kept']])
      expect(lost).toEqual([]) // the lock itself was never lost: the epoch alone fenced it
    } finally {
      await leader.release()
      await sql.end()
    }
  })
})

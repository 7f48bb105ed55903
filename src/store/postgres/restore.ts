/**
 * The PostgreSQL store's replay: every row of `jobs`, in id order, straight
 * into the registry (the ReplaySink), a page of rows per query.
 *
 * Invariants:
 * - Pages are keyset queries (id > last ORDER BY id LIMIT PAGE_ROWS), each a
 *   complete statement, so nothing stays open while replay yields to the
 *   event loop; at most two pages are held (the next is read while this
 *   one goes into the registry). The caller is the leader with
 *   its epoch raised, so nobody writes meanwhile: the pages are one snapshot.
 * - A row that breaks the schema's rules is PgRefusedError naming the job;
 *   nothing is skipped, and restoreEnd is the caller's.
 * - Stored wall-clock times become monotonic ones against one
 *   (monoNow, wallNow) pair read at the start.
 */
import { ReplayMeter, type RestoreOptions } from '../replay-progress.js'
import { toMono, type ReplaySink, type RestoredFields } from '../store.js'
import type { Sql } from './connect.js'
import { PgRefusedError } from './errors.js'

/** Rows per page: large enough that a query's round trip costs nothing per row. */
export const PAGE_ROWS = 5000

const STATE_NUMBER: Record<string, number> = { ready: 1, reserved: 2, buried: 3, delayed: 4 }

export interface RestoredRows {
  readonly jobs: number
  readonly maxId: number
  readonly buryKeys: Map<number, number>
  readonly nextBuryKey: number
  /** Buried jobs in bury order. */
  readonly buried: number[]
  readonly oversized: number
  readonly seconds: number
}

type Row = [number, string, string, number, number, number, number, number | null, number | null, number, number, number, number, number, Buffer]

export async function restoreRows(sql: Sql, schema: string, sink: ReplaySink, o: RestoreOptions): Promise<RestoredRows> {
  const [c] = await sql`SELECT count(*)::int8 AS n FROM jobs`
  const total = Number(c!['n'])
  const meter = new ReplayMeter('postgres store', { filesTotal: 0, bytesTotal: 0, recordsTotal: total }, o.log, o)
  const monoNow = o.clock.now()
  const wallNow = o.wall()
  const f: RestoredFields = { id: 0, state: 0, pri: 0, delayMs: 0, ttrMs: 0, createdAt: 0, deadline: 0, reserves: 0, timeouts: 0, releases: 0, buries: 0, kicks: 0 }
  const buryKeys = new Map<number, number>()
  let nextBuryKey = 1
  let oversized = 0
  let jobs = 0
  let last = 0
  const page = (after: number): Promise<Row[]> =>
    sql`
      SELECT id, tube, state, pri, delay_ms, ttr_ms, created_at, due_at, bury_seq, reserves, timeouts, releases, buries, kicks, body
      FROM jobs WHERE id > ${after} ORDER BY id LIMIT ${PAGE_ROWS}`.values() as unknown as Promise<Row[]>
  let coming = page(0)
  for (;;) {
    const rows = await coming
    // The next page is asked for before this one is handed over: PostgreSQL reads it meanwhile.
    const full = rows.length === PAGE_ROWS
    if (full) {
      coming = page(rows[rows.length - 1]![0])
      coming.catch(() => undefined) // awaited below; a bad row thrown first must not leave it unhandled
    }
    for (const [id, tube, stateName, pri, delayMs, ttrMs, createdAt, dueAt, burySeq, reserves, timeouts, releases, buries, kicks, body] of rows) {
      const state = STATE_NUMBER[stateName]
      const bad = (what: string): never => {
        throw new PgRefusedError(schema, `job ${id}: ${what}; the jobs table was changed by hand`)
      }
      if (state === undefined) bad(`unknown state ${stateName}`)
      if (state === 4 && dueAt === null) bad('delayed without due_at')
      if (state === 3 && burySeq === null) bad('buried without bury_seq')
      f.id = id
      f.state = state!
      f.pri = pri
      f.delayMs = delayMs
      f.ttrMs = ttrMs
      f.createdAt = toMono(createdAt, monoNow, wallNow)
      f.deadline = state === 4 ? toMono(dueAt!, monoNow, wallNow) : 0
      f.reserves = reserves
      f.timeouts = timeouts
      f.releases = releases
      f.buries = buries
      f.kicks = kicks
      sink.restoreJob(f, tube, body, 0, body.length)
      if (state === 3) {
        buryKeys.set(id, burySeq!)
        if (burySeq! >= nextBuryKey) nextBuryKey = burySeq! + 1
      }
      if (body.length > o.maxJobSize) oversized++
      last = id
    }
    jobs += rows.length
    meter.records = meter.jobs = jobs
    if (!full) break
    // Each page's query lets the event loop run anyway; this reports progress (and logs it now and then).
    await meter.pause()
  }
  const buried = [...buryKeys].sort((a, b) => a[1] - b[1] || a[0] - b[0]).map(([id]) => id)
  return { jobs, maxId: last, buryKeys, nextBuryKey, buried, oversized, seconds: meter.finish().seconds }
}

/**
 * The SQLite store's replay: every row of `jobs`, in id order, straight into
 * the registry (the ReplaySink), a page of rows at a time.
 *
 * Invariants:
 * - Rows are read in pages of PAGE_ROWS by id (`WHERE id > last`), each page
 *   one statement run, so no statement stays open while replay yields to
 *   the event loop between pages, and only one page of rows is ever held.
 *   The caller holds the write lock meanwhile, so the pages are one snapshot.
 * - A row that breaks the schema's rules is damage (StoreCorruptError, the
 *   job named); nothing is skipped.
 * - Stored wall-clock times become monotonic ones against one
 *   (monoNow, wallNow) pair read at the start.
 */
import type { Logger } from 'pino'
import { ReplayMeter } from '../replay-progress.js'
import { toMono, type RestoredFields, type ReplaySink } from '../store.js'
import type { Clock } from '../../util/clock.js'
import type { Readiness } from '../../util/readiness.js'
import { JOB_COLUMNS, checkRow, type Db, type JobRow } from './schema.js'

/** Rows per statement run: big enough that a run costs nothing per row, small enough to hold. */
const PAGE_ROWS = 2048
const STATE_NUMBER = { ready: 1, reserved: 2, buried: 3, delayed: 4 } as const

export interface RestoreRowsOptions {
  readonly clock: Clock
  readonly wall: () => number
  readonly log: Logger
  readonly readiness?: Readiness | undefined
  readonly progressMs?: number | undefined
  /** -z: bodies over it still replay, counted for a warning. */
  readonly maxJobSize: number
}

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

export async function restoreRows(db: Db, file: string, sink: ReplaySink, o: RestoreRowsOptions): Promise<RestoredRows> {
  const total = db.prepare('SELECT count(*) FROM jobs').pluck().get() as number
  const page = db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id > ? ORDER BY id LIMIT ${PAGE_ROWS}`).raw()
  const meter = new ReplayMeter('sqlite store', { filesTotal: 1, bytesTotal: 0, recordsTotal: total }, o.log, o.readiness, o.progressMs)
  const monoNow = o.clock.now()
  const wallNow = o.wall()
  const f: RestoredFields = { id: 0, state: 0, pri: 0, delayMs: 0, ttrMs: 0, createdAt: 0, deadline: 0, reserves: 0, timeouts: 0, releases: 0, buries: 0, kicks: 0 }
  const buryKeys = new Map<number, number>()
  let nextBuryKey = 1
  let oversized = 0
  let jobs = 0
  let last = 0
  for (;;) {
    const rows = page.all(last) as JobRow[]
    let pause = false
    for (const r of rows) {
      checkRow(r, file)
      const [id, tube, state, pri, delayMs, ttrMs, createdAtWall, dueAt, burySeq, reserves, timeouts, releases, buries, kicks, body] = r
      f.id = id
      f.state = STATE_NUMBER[state]
      f.pri = pri
      f.delayMs = delayMs
      f.ttrMs = ttrMs
      f.createdAt = toMono(createdAtWall, monoNow, wallNow)
      f.deadline = state === 'delayed' ? toMono(dueAt!, monoNow, wallNow) : 0
      f.reserves = reserves
      f.timeouts = timeouts
      f.releases = releases
      f.buries = buries
      f.kicks = kicks
      sink.restoreJob(f, tube, body, 0, body.length)
      if (state === 'buried') {
        buryKeys.set(id, burySeq!)
        if (burySeq! >= nextBuryKey) nextBuryKey = burySeq! + 1
      }
      if (body.length > o.maxJobSize) oversized++
      last = id
      if (meter.due()) pause = true
    }
    jobs += rows.length
    meter.records = jobs
    meter.jobs = jobs
    if (rows.length < PAGE_ROWS) break
    if (pause) await meter.pause()
  }
  meter.files = 1
  const buried = [...buryKeys].sort((a, b) => a[1] - b[1] || a[0] - b[0]).map(([id]) => id)
  return { jobs, maxId: last, buryKeys, nextBuryKey, buried, oversized, seconds: meter.finish().seconds }
}

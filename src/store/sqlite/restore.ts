/**
 * The SQLite store's replay: every row of `jobs`, in id order, straight into
 * the registry (the ReplaySink), a packed page of rows at a time
 * (job-pages.ts). For a large file one worker reads the pages
 * (page-worker.ts) and another checks the file (check.ts), so this thread
 * only builds jobs; a small one is read here.
 *
 * Invariants:
 * - One statement run per page, so no statement stays open while replay
 *   yields to the event loop between pages, and only a few pages of rows are
 *   ever held. The caller holds the write lock meanwhile, so the pages are
 *   one snapshot.
 * - A row that breaks the schema's rules, or a file the check finds damaged,
 *   is StoreCorruptError; nothing is skipped. restoreEnd is the caller's, so
 *   a damaged file never reaches the server.
 * - Stored wall-clock times become monotonic ones against one
 *   (monoNow, wallNow) pair read at the start.
 */
import { StoreCorruptError } from '../errors.js'
import { ReplayMeter, type RestoreOptions } from '../replay-progress.js'
import { toMono, type ReplaySink, type RestoredFields } from '../store.js'
import { checkFile, worthAWorker } from './check.js'
import { LocalPages, PageDecoder, type JobRow, type PackedPage } from './job-pages.js'
import { WorkerPages } from './page-worker.js'
import { storeError, type Db } from './schema.js'

const STATE_NUMBER = { ready: 1, reserved: 2, buried: 3, delayed: 4 } as const

export interface RestoreRowsOptions extends RestoreOptions {
  /** How long the check's connection waits for a lock, ms. */
  readonly timeoutMs: number
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

type TagsRow = [number, string | null, number, string | null, string | null, number, string | null, number]
type TombRow = [string, string, number, number, number]

/**
 * --extensions: the tags of the jobs just restored and the cooldowns that
 * have not run out. A store without them has no rows here, so a registry
 * without the extensions is only told (and refuses) when there are some.
 */
function restoreExtensions(db: Db, sink: ReplaySink, monoNow: number, wallNow: number): void {
  const tags = db.prepare('SELECT id, idp_key, idp_ttl, grp, aft, aft_done, con_key, con_limit FROM job_tags ORDER BY id').raw().all() as TagsRow[]
  for (const [id, idpKey, idpTtl, group, after, afterDone, conKey, conLimit] of tags) {
    if (sink.restoreTags === undefined) break
    sink.restoreTags(id, { idpKey, idpTtl, group, after, afterDone: afterDone === 1, conKey, conLimit })
  }
  const tombs = db.prepare('SELECT tube, key, id, ttl, expires_at FROM idp_tombstones WHERE expires_at > ?').raw().all(wallNow) as TombRow[]
  for (const [tube, key, id, ttlSecs, expiresAtWall] of tombs) {
    sink.restoreTombstone?.({ tube, key, id, ttlSecs, expiresAt: toMono(expiresAtWall, monoNow, wallNow) })
  }
  const policies = db.prepare('SELECT tube, max_retries, dead_letter, max_jobs, fan_out FROM tube_policies ORDER BY tube').raw().all() as [string, number, string | null, number, string | null][]
  for (const [tube, maxRetries, deadLetter, maxJobs, fanOut] of policies) {
    sink.restorePolicy?.({ tube, maxRetries, deadLetter, maxJobs, fanOut: fanOut === null ? [] : fanOut.split(',') })
  }
}

export async function restoreRows(db: Db, file: string, sink: ReplaySink, o: RestoreRowsOptions): Promise<RestoredRows> {
  const check = checkFile(db, file, o.timeoutMs)
  const total = db.prepare('SELECT count(*) FROM jobs').pluck().get() as number
  const meter = new ReplayMeter('sqlite store', { filesTotal: 1, bytesTotal: 0, recordsTotal: total }, o.log, o)
  const monoNow = o.clock.now()
  const wallNow = o.wall()
  const f: RestoredFields = { id: 0, state: 0, pri: 0, delayMs: 0, ttrMs: 0, createdAt: 0, deadline: 0, reserves: 0, timeouts: 0, releases: 0, buries: 0, kicks: 0 }
  const buryKeys = new Map<number, number>()
  let nextBuryKey = 1
  let oversized = 0
  let jobs = 0
  let last = 0
  let pause = false
  const restore = (r: JobRow): void => {
    f.id = r.id
    f.state = STATE_NUMBER[r.state]
    f.pri = r.pri
    f.delayMs = r.delayMs
    f.ttrMs = r.ttrMs
    f.createdAt = toMono(r.createdAtWall, monoNow, wallNow)
    f.deadline = r.state === 'delayed' ? toMono(r.readyAtWall, monoNow, wallNow) : 0
    f.reserves = r.reserves
    f.timeouts = r.timeouts
    f.releases = r.releases
    f.buries = r.buries
    f.kicks = r.kicks
    sink.restoreJob(f, r.tube, r.body, r.bodyStart, r.bodyEnd)
    if (r.state === 'buried') {
      buryKeys.set(r.id, r.buryKey)
      if (r.buryKey >= nextBuryKey) nextBuryKey = r.buryKey + 1
    }
    if (r.bodyEnd - r.bodyStart > o.maxJobSize) oversized++
    last = r.id
    if (meter.due()) pause = true
  }
  const pages: { next(): PackedPage | null | Promise<PackedPage | null>; close(): unknown } = worthAWorker(file)
    ? new WorkerPages(file, o.timeoutMs)
    : new LocalPages(db)
  const decoder = new PageDecoder(file)
  let readError: unknown = null
  try {
    for (let page = await pages.next(); page !== null; page = await pages.next()) {
      decoder.decode(page, restore)
      jobs += page.rows
      meter.records = meter.jobs = jobs
      if (pause) {
        pause = false
        await meter.pause()
      }
    }
  } catch (err) {
    readError = err
  } finally {
    await pages.close()
  }
  // The check's verdict first: damage explains a failed read best.
  const c = await check
  if (c.error !== undefined) throw storeError(file, Object.assign(new Error(c.error.message), { code: c.error.code }), 'cannot check the SQLite store')
  if (c.problems.length > 0) throw new StoreCorruptError(file, `quick_check: ${c.problems.join('; ')}`)
  if (readError !== null) throw readError
  restoreExtensions(db, sink, monoNow, wallNow)
  meter.files = 1
  const buried = [...buryKeys].sort((a, b) => a[1] - b[1] || a[0] - b[0]).map(([id]) => id)
  return { jobs, maxId: last, buryKeys, nextBuryKey, buried, oversized, seconds: meter.finish().seconds }
}

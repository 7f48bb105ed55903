/**
 * The persistence boundary the server talks to, whichever engine is behind
 * it: the binlog (src/store/binlog/binlog.ts, the default) or the SQLite store
 * (sqlite/sqlite-store.ts). The registry sees it only as its Journal; the reply gate
 * flushes it once per event-loop turn and sends replies from whenDurable; the
 * CLI opens it, wires onFatal and closes it.
 *
 * The contract, the same for every engine (binlog.ts's header has the call
 * order in detail):
 * - Opening (open.ts `openStore`, asynchronous) takes DIR's lock and replays:
 *   it hands every stored job to a ReplaySink (the registry) as it reads it,
 *   one record at a time, so nothing but the registry's own structures holds
 *   the queue, and yields to the event loop about every 50 ms (progress log
 *   lines, Readiness `replaying`, /readyz). It ends with `restoreEnd`: the
 *   buried jobs in bury order and the next id (above every id ever handed out:
 *   ids are never reused). Reserved jobs come back ready; delayed ones keep
 *   their wall-clock due time.
 * - put/update/delete are synchronous and never do I/O that can fail a
 *   reply; `put` answers false only when nothing can be stored (the server
 *   answers OUT_OF_MEMORY) and `canPut()` asks the same question first.
 * - `flush()` stores everything queued since the last flush as one unit and
 *   returns a sequence number covering it; `whenDurable(seq, cb)` calls back
 *   once that unit is as durable as the -f/-F level promises. A unit that
 *   cannot be stored (disk full, database locked) stays queued, its callbacks
 *   wait, and the engine retries on its own timer.
 * - `close()` stores what is queued, makes it durable whatever the level,
 *   and releases the directory.
 */
import type { Logger } from 'pino'
import type { RestoredFields, RestoredPolicy, RestoredTags, RestoredTombstone } from '../queue/journal.js'
import type { Clock } from '../util/clock.js'
import type { Readiness } from '../util/readiness.js'
import type { HistogramView } from './latency-histogram.js'

/** The fields an engine stores, read from the registry's Job at each call. */
export interface JobView {
  readonly id: number
  readonly tube: { readonly name: string }
  pri: number
  delayMs: number
  ttrMs: number
  /** Including the trailing CRLF. A view that may be kept: the body's slab is never reused after it. */
  body: Buffer
  /**
   * The body (with its CRLF) as a view for a write that is done with it when
   * it returns: the view's slab is pushed onto `loans` and counts it until
   * `settleLoans(loans)`, so a slab emptied meanwhile is not filled again
   * while the view may still be read (queue/body-arena.ts). Absent on plain
   * objects (tests), which are read through `body`.
   */
  lendBody?(loans: BodyLoan[]): Buffer
  /** `body.length`, without making the view. */
  readonly bodyLen: number
  /** The queue's JobState number: 1 ready, 2 reserved, 3 buried, 4 delayed. */
  state: number
  /** Monotonic ms. */
  createdAt: number
  /** Delayed: when it becomes ready; reserved: TTR end (monotonic ms). */
  deadline: number
  reserves: number
  timeouts: number
  releases: number
  buries: number
  kicks: number
  /** --extensions: the job's tags; null or absent for an untagged job. */
  readonly ext?: TagsView | null
}

/** A body's slab, as a lender sees it: the views of it not yet settled. */
export interface BodyLoan {
  viewsPending: number
}

/** The write that read the lent views returned: their slabs may be reused again. */
export function settleLoans(loans: BodyLoan[]): void {
  for (const s of loans) s.viewsPending--
  loans.length = 0
}

/**
 * What an engine stores of a tagged job (--extensions), read from the
 * queue's JobExt at each call: the idempotency key and its cooldown, the
 * group, the after-group (as put, and whether the job still waits for it),
 * the concurrency key and its limit.
 */
export interface TagsView {
  readonly idp: { readonly key: string; readonly ttlSecs: number } | null
  readonly group: { readonly name: string } | null
  readonly afterName: string | null
  /** Non-null while the job still waits for its after-group. */
  readonly after: { readonly name: string } | null
  readonly con: { readonly name: string } | null
  readonly conLimit: number
}

/** A job's fields as replay hands them to the sink (declared with the queue, which takes them). */
export type { RestoredFields, RestoredPolicy, RestoredTags, RestoredTombstone } from '../queue/journal.js'

/**
 * Where replay puts the jobs it reads (the registry). Calls come in the
 * order of the store's records; between them the sink's jobs are not yet in
 * their heaps and lists, which `restoreEnd` builds once.
 */
export interface ReplaySink {
  /**
   * A job as stored whole (its body is `body[start, end)`, without the CRLF):
   * creates it, or replaces the job with its id (the same job stored again).
   */
  restoreJob(f: RestoredFields, tube: string, body: Buffer, start: number, end: number): void
  /** A later state change of a job restored before; false if there is none (a stale record). */
  restoreUpdate(f: RestoredFields): boolean
  /** false if there is no such job (a stale record). */
  restoreDelete(id: number): boolean
  /**
   * --extensions: the tags of a job restored before (replacing any earlier
   * ones); false if there is no such job. Throws ExtensionsNeededError from a
   * registry without the extensions.
   */
  restoreTags?(id: number, tags: RestoredTags): boolean
  /** --extensions: an idempotency key's cooldown that has not run out. */
  restoreTombstone?(t: RestoredTombstone): void
  /** --extensions: a tube policy as last stored (a later one for the same tube replaces it; zeros clear it). */
  restorePolicy?(p: RestoredPolicy): void
  /**
   * Replay is over: every job goes where its state says (reserved ones and
   * delayed ones whose time has passed: ready), buried ones in `buried`
   * order, and new ids start at `nextId`.
   */
  restoreEnd(buried: readonly number[], nextId: number): void
  /** The job with this id now (restored or put since), for an engine that rewrites it later. */
  peek(id: number): JobView | undefined
}

/**
 * A stored tube policy that sets nothing: the tube has none (any more). The
 * queue's journal.ts has the same rule; the store keeps its own copy because
 * store/ imports no values from queue/ (its engines run on their own in the
 * crash tests' child processes).
 */
export const noPolicy = (p: RestoredPolicy): boolean => p.maxRetries === 0 && p.maxJobs === 0 && p.fanOut.length === 0

/** Monotonic whole ms for a wall-clock time, against a `monoNow`/`wallNow` pair read together. */
export const toMono = (wall: number, monoNow: number, wallNow: number): number => monoNow - (wallNow - wall)

/** What `stats` shows (the binlog-* keys) and what operators and tests look at. */
export interface StoreStats {
  /** Binlog file indices; 0 for an engine without numbered files. */
  readonly oldestIndex: number
  readonly currentIndex: number
  /** State changes stored, the ones queued in this turn included. */
  readonly recordsWritten: number
  readonly recordsMigrated: number
  readonly liveJobs: number
  /** The disk is full: puts are refused. */
  readonly noSpace: boolean
  readonly fsyncs: number
  /** Which engine (/metrics labels). */
  readonly engine: StoreEngine
  /** Files in DIR holding jobs: binlog files; the SQLite database and its WAL. */
  readonly files: number
  /** Their bytes, a binlog file's preallocated zeros included (the space reserve and the binlog spare not). */
  readonly diskBytes: number
  /** How long each of the `fsyncs` took; with SQLite at -f 0 each is a COMMIT (which fsyncs). */
  readonly fsyncLatency: HistogramView
}

export interface DurableStore {
  /** Whether a put would be accepted now (false: answer OUT_OF_MEMORY). */
  canPut(): boolean
  put(job: JobView): boolean
  update(job: JobView): void
  delete(job: JobView): void
  /** --extensions: the jobs of one flush slice, as one unit where the engine can (queue/journal.ts). */
  deleteMany?(jobs: readonly JobView[]): void
  /** --extensions: a tube policy set or cleared (zeros); stored with the next flush and replayed. */
  policy?(p: RestoredPolicy): void
  /** stats-job `file`: the binlog file holding the job; 0 where there is none. */
  fileOf(jobId: number): number
  flush(): number
  whenDurable(seq: number, cb: () => void): void
  close(): void
  stats(): StoreStats
  /**
   * An engine whose I/O is asynchronous (postgres): close() only starts
   * the final commit; this resolves once it is done. Callers prefer it.
   */
  closeAsync?(): Promise<void>
}

/** The options every engine takes (each adds its own). */
export interface StoreOptions {
  readonly dir: string
  /** -f: fsync at most every this many ms; 0 = before every acknowledgement (group commit). */
  readonly fsyncMs: number
  /** -F: never fsync while running. */
  readonly fsyncNever: boolean
  /** -z: larger bodies still replay, with a warning. */
  readonly maxJobSize: number
  readonly log: Logger
  /** Monotonic ms, as the queue's Job times are. */
  readonly clock: Clock
  /** Wall-clock ms (tests); default Date.now. */
  readonly now?: () => number
  /** Size of DIR/reserve, the space given up when the disk fills. */
  readonly reserveBytes?: number
  /** How often to retry while the disk is full or the store locked, ms; default 1000. */
  readonly retryMs?: number
  /** A fatal error found outside a call (a background fsync); default: thrown (an uncaught exception). */
  readonly onFatal?: (err: Error) => void
  /** Told `replaying`, with progress, while the store replays. */
  readonly readiness?: Readiness
  /** How often a long replay logs its progress, ms; default 5000. */
  readonly progressMs?: number
  /** How long replay runs between turns of the event loop, ms; default 50 (tests: 0). */
  readonly yieldMs?: number
}

export type StateName = 'ready' | 'reserved' | 'buried' | 'delayed'

/** A job as the store (and a conversion) holds it: wall-clock times, its state as last recorded. */
export interface StoredJob {
  id: number
  tube: string
  state: StateName
  pri: number
  delayMs: number
  ttrMs: number
  createdAtWall: number
  /** Delayed: the due time; otherwise 0. */
  readyAtWall: number
  /** Buried: bury order; otherwise 0. */
  buryKey: number
  reserves: number
  timeouts: number
  releases: number
  buries: number
  kicks: number
  /** Including the trailing CRLF. */
  body: Buffer
}

/** The engines that keep a -b directory (convert, import and export work between them). */
export const ENGINES = ['binlog', 'sqlite'] as const
export type Engine = (typeof ENGINES)[number]
/** Every --store: the directory engines and PostgreSQL (src/store/postgres/). */
export const STORE_ENGINES = [...ENGINES, 'postgres'] as const
export type StoreEngine = (typeof STORE_ENGINES)[number]

/**
 * Largest -z the SQLite store takes: SQLite refuses a row over 10^9 bytes
 * (SQLITE_MAX_LENGTH, which better-sqlite3 keeps), body and other columns together.
 */
export const MAX_JOB_SIZE_SQLITE = 999_000_000

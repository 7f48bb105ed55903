/**
 * The SQLite store (`--store sqlite -b DIR`): the same contract as the binlog
 * (store.ts), with the jobs in DIR/tsbeanstalkd.sqlite, one row each, where an
 * operator can query them read-only while the server runs. Schema:
 * docs/sqlite-schema.md (schema.ts).
 *
 * ## How a turn is stored
 *
 * put/update/delete only note the job in `pending` (one entry per job, the
 * last call wins: a put and a delete in the same turn cancel out). flush()
 * then runs one transaction: an INSERT, UPDATE or DELETE per pending job,
 * with the job's fields as they are at that moment, one DELETE for all the
 * jobs of the turn's flush-tube slices (deleteMany), and next_id if it moved,
 * through prepared statements, then COMMIT. better-sqlite3 is synchronous,
 * so when flush() returns the turn is committed (or has failed and stays
 * pending).
 *
 * ## -f and -F (docs in README "SQLite store")
 *
 * - `-f 0`: synchronous=FULL. COMMIT fsyncs the WAL before it returns, so
 *   whenDurable calls back at once; every connection that ran in the turn
 *   shares that one fsync (group commit).
 * - `-f N`: synchronous=NORMAL (COMMIT writes the WAL, no fsync), plus our own
 *   asynchronous fsync of the WAL file at most every N ms and within N ms of
 *   any commit, as the binlog's writer does. NORMAL, not OFF: under OFF,
 *   SQLite's checkpoints would not sync the database file before the WAL is
 *   reused, so a power loss could lose commits our fsync had already made
 *   durable, or corrupt the file. Under NORMAL SQLite syncs exactly there.
 * - `-F`: synchronous=NORMAL, no fsync of ours: commits are never fsynced
 *   (the OS writes back when it likes); SQLite's checkpoints still sync, so
 *   a power loss loses recent commits but cannot corrupt the file.
 * - close() commits what is pending, fsyncs the WAL and checkpoints it into
 *   the database with synchronous=FULL, whatever the level.
 *
 * ## Faults
 *
 * - SQLITE_FULL: the space reserve (DIR/reserve, as the binlog's) is given up
 *   and the commit retried at once, so what was pending and the deletes
 *   after it fit; puts are refused (OUT_OF_MEMORY) until a retry has given
 *   free pages back to the file system and the reserve can be written again.
 * - SQLITE_BUSY/LOCKED (another connection writes): the turn stays pending,
 *   its replies wait, puts are refused, and the retry timer commits it once
 *   the lock is gone. While it runs the server holds the write lock between
 *   its transactions (an open, empty BEGIN IMMEDIATE), so other connections
 *   can read and back up the file but not write to it.
 * - Anything else SQLite or fsync reports while running (I/O error, damage)
 *   is fatal, as the binlog's write and fsync errors are: onFatal, exit,
 *   and a restart checks the file.
 *
 * Invariants:
 * - No whenDurable callback runs before the transaction holding every change
 *   queued before its flush has committed (under -f 0: and been fsynced).
 * - After every commit, max(next_id, max(id) + 1) is at least every id
 *   handed to put, so ids are never reused.
 * - A job has a bury key exactly while its last recorded state is buried;
 *   keys only grow, so bury order survives restarts.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import { DurableWaiters } from '../durable-waiters.js'
import type { Statement } from 'better-sqlite3'
import { DirLock } from '../lock.js'
import { nodeFs } from '../io.js'
import { SpaceReserve } from '../reserve.js'
import type { Clock } from '../../util/clock.js'
import { StoreCorruptError, StoreIoError, isBusy, isCorrupt, isFull, sqliteCode } from '../errors.js'
import { sqlitePath } from '../layout.js'
import {
  AFTER_DONE,
  DELETE_JOB,
  DELETE_JOBS,
  DELETE_TAGS,
  DELETE_TAGS_MANY,
  EXTENSION_DDL,
  INSERT_JOB,
  INSERT_TAGS,
  INSERT_TOMBSTONE,
  PURGE_TOMBSTONES,
  SET_POLICY,
  DELETE_POLICY,
  MAX_BODY,
  SET_NEXT_ID,
  STATE_NAMES,
  UPDATE_JOB,
  metaValue,
  openDb,
  storeError,
  type Db,
} from './schema.js'
import { restoreRows } from './restore.js'
import type { BodyLoan, DurableStore, JobView, ReplaySink, RestoredPolicy, StoreOptions, StoreStats } from '../store.js'
import { noPolicy, settleLoans } from '../store.js'
import { fsyncDir } from '../sync.js'
import { RetryTimer } from '../retry-timer.js'
import { LatencyHistogram } from '../latency-histogram.js'

export interface SqliteStoreOptions extends StoreOptions {
  /** How long a statement waits for another connection's lock, ms (the event loop waits too); default 20. */
  readonly busyTimeoutMs?: number
  /** Hold the write lock between transactions so no other connection can write; default true. */
  readonly holdWriteLock?: boolean
  /** WAL pages after which a commit checkpoints (wal_autocheckpoint); default 1000 (about 4 MB). */
  readonly checkpointPages?: number
  /** How often free pages are given back to the file system, ms; default 5000. */
  readonly maintenanceMs?: number
}

const Op = { INSERT: 1, UPDATE: 2, DELETE: 3 } as const
type Op = (typeof Op)[keyof typeof Op]

interface Pending {
  job: JobView
  op: Op
}


const BURIED = 3
const PAGE_SIZE = 4096
/** How long open waits for another connection's lock before giving up. */
const OPEN_TIMEOUT_MS = 2000

interface Statements {
  readonly begin: Statement
  readonly commit: Statement
  readonly rollback: Statement
  readonly insert: Statement
  readonly update: Statement
  readonly del: Statement
  readonly delMany: Statement
  readonly delTagsMany: Statement
  readonly setNextId: Statement
  readonly freePages: Statement
  readonly pageCount: Statement
  readonly checkpointTruncate: Statement
  readonly insertTags: Statement
  readonly afterDone: Statement
  readonly delTags: Statement
  readonly insertTomb: Statement
  readonly purgeTombs: Statement
  readonly setPolicy: Statement
  readonly delPolicy: Statement
}

/** The queue's JobState.HELD (--extensions): stored ready; replay holds the job again while its group has members. */
const HELD = 5
const READY = 1

/** A cooldown to store with the next commit. */
interface PendingTomb {
  readonly tube: string
  readonly key: string
  readonly id: number
  readonly ttl: number
  readonly expiresAt: number
}

export class SqliteStore implements DurableStore {
  /** DIR/tsbeanstalkd.sqlite */
  readonly file: string
  private readonly walPath: string
  private readonly opts: SqliteStoreOptions
  private readonly log: Logger
  private readonly clock: Clock
  private readonly wall: () => number
  private readonly lock: DirLock
  private readonly db: Db
  private readonly stmt: Statements
  private readonly reserve: SpaceReserve
  /** -f 0: COMMIT fsyncs. -f N: a timer fsyncs the WAL. -F: nobody does. */
  private readonly level: 'commit' | 'timer' | 'never'
  private readonly holdLock: boolean
  /** The database file was created by this open. */
  private readonly created: boolean

  private pending = new Map<number, Pending>()
  /** Committed jobs deleted by flush slices since the last commit (deleteMany), and those of them with a job_tags row. */
  private flushed: number[] = []
  private flushedTagged: number[] = []
  /** --extensions: idempotency cooldowns left by deletes, for the next commit. */
  private tombs: PendingTomb[] = []
  /** Tube policies set or cleared (zeros) since the last commit, by tube. */
  private policies = new Map<string, RestoredPolicy>()
  /** Calls since the last commit (stats: records written). */
  private queued = 0
  private readonly buryKeys = new Map<number, number>()
  /** The slab of the body being inserted, settled as soon as SQLite has its copy. */
  private readonly loans: BodyLoan[] = []
  private nextBuryKey = 1
  private hwm = 1
  private storedNextId = 1
  private live = 0

  private lastSeq = 0
  private committedSeq = 0
  private syncedSeq = 0
  private readonly waiters = new DurableWaiters()
  private noSpace = false
  /** The last commit failed (no space even after the reserve, or locked): the retry timer commits. */
  private stalled = false
  private locked = false
  private readonly retryTimer: RetryTimer
  private syncTimer: NodeJS.Timeout | null = null
  private maintenanceTimer: NodeJS.Timeout | null = null
  private syncing = false
  private lastSyncStart = -Infinity
  private walFd = -1
  private walIno = -1
  private fatal: Error | null = null
  private closed = false
  private recordsWritten = 0
  private fsyncs = 0
  /** Our fsyncs of the WAL and, at -f 0, each COMMIT (SQLite fsyncs inside it). */
  private readonly fsyncLatency = new LatencyHistogram()

  /** Takes DIR's lock, opens (or creates) the database and replays its rows into `jobs` (store.ts). */
  static async open(opts: SqliteStoreOptions, jobs: ReplaySink): Promise<SqliteStore> {
    fs.mkdirSync(opts.dir, { recursive: true })
    const lock = DirLock.acquire(opts.dir)
    let store: SqliteStore | null = null
    try {
      SpaceReserve.check(path.join(opts.dir, 'reserve'), nodeFs) // before anything in DIR changes
      store = new SqliteStore(opts, lock)
      await store.replay(jobs)
      return store
    } catch (err) {
      if (store !== null) store.abandon()
      else lock.release({ failedOpen: true })
      throw err
    }
  }

  private constructor(opts: SqliteStoreOptions, lock: DirLock) {
    this.opts = opts
    this.retryTimer = new RetryTimer(opts.retryMs ?? 1000, () => this.retry(), (err) => this.asyncFailure(err))
    this.log = opts.log
    this.clock = opts.clock
    this.wall = opts.now ?? Date.now
    this.lock = lock
    this.file = sqlitePath(opts.dir)
    this.walPath = `${this.file}-wal`
    this.level = opts.fsyncNever ? 'never' : opts.fsyncMs === 0 ? 'commit' : 'timer'
    this.holdLock = opts.holdWriteLock ?? true
    // The integrity check runs beside the replay (restore.ts).
    const { db, created } = openDb(this.file, { timeoutMs: OPEN_TIMEOUT_MS, check: false })
    this.db = db
    try {
      const pages = opts.checkpointPages ?? 1000
      db.pragma(`synchronous = ${this.level === 'commit' ? 'FULL' : 'NORMAL'}`)
      db.pragma(`wal_autocheckpoint = ${pages}`)
      // After a burst (or a reader that held checkpoints back) the WAL file is cut back to one interval.
      db.pragma(`journal_size_limit = ${pages * PAGE_SIZE}`)
      // The database and its WAL are new directory entries after a first start or a clean stop.
      if (this.level !== 'never') fsyncDir(opts.dir)
      db.exec(EXTENSION_DDL)
      this.stmt = {
        begin: db.prepare('BEGIN IMMEDIATE'),
        commit: db.prepare('COMMIT'),
        rollback: db.prepare('ROLLBACK'),
        insert: db.prepare(INSERT_JOB),
        update: db.prepare(UPDATE_JOB),
        del: db.prepare(DELETE_JOB),
        delMany: db.prepare(DELETE_JOBS),
        delTagsMany: db.prepare(DELETE_TAGS_MANY),
        setNextId: db.prepare(SET_NEXT_ID),
        freePages: db.prepare('PRAGMA freelist_count').pluck(),
        pageCount: db.prepare('PRAGMA page_count').pluck(),
        checkpointTruncate: db.prepare('PRAGMA wal_checkpoint(TRUNCATE)'),
        insertTags: db.prepare(INSERT_TAGS),
        afterDone: db.prepare(AFTER_DONE),
        delTags: db.prepare(DELETE_TAGS),
        insertTomb: db.prepare(INSERT_TOMBSTONE),
        purgeTombs: db.prepare(PURGE_TOMBSTONES),
        setPolicy: db.prepare(SET_POLICY),
        delPolicy: db.prepare(DELETE_POLICY),
      }
      this.reserve = new SpaceReserve(
        path.join(opts.dir, 'reserve'),
        opts.reserveBytes ?? pages * PAGE_SIZE + (1 << 20),
        nodeFs,
        this.level !== 'never',
      )
      if (!this.reserve.ensure()) this.enterNoSpace(`no room for the ${this.reserve.bytes}-byte space reserve`)
    } catch (err) {
      try {
        db.close()
      } catch {
        // Reporting the first error.
      }
      throw storeError(this.file, err, 'cannot open the SQLite store')
    }
    this.created = created
  }

  /**
   * Reads every row into `jobs` (yielding now and then), then takes the
   * write lock and starts the timers: the store is ready for the server.
   */
  private async replay(jobs: ReplaySink): Promise<void> {
    const db = this.db
    try {
      // Taken with open's patience (an operator's write transaction fails the start clearly),
      // and before the rows are read, so nobody changes them while replay yields.
      if (this.holdLock) this.stmt.begin.run()
      const r = await restoreRows(db, this.file, jobs, {
        clock: this.clock,
        wall: this.wall,
        log: this.log,
        readiness: this.opts.readiness,
        progressMs: this.opts.progressMs,
        yieldMs: this.opts.yieldMs,
        maxJobSize: this.opts.maxJobSize,
        timeoutMs: OPEN_TIMEOUT_MS,
      })
      this.storedNextId = Math.max(metaValue(db, 'next_id') ?? 1, r.maxId + 1)
      this.hwm = this.storedNextId
      this.live = r.jobs
      for (const [id, key] of r.buryKeys) this.buryKeys.set(id, key)
      this.nextBuryKey = r.nextBuryKey
      if (r.oversized > 0) {
        this.log.warn({ jobs: r.oversized, maxJobSize: this.opts.maxJobSize }, 'sqlite store: stored jobs larger than the current -z')
      }
      db.pragma(`busy_timeout = ${this.opts.busyTimeoutMs ?? 20}`)
      jobs.restoreEnd(r.buried, this.storedNextId)
      this.log.info(
        { file: path.resolve(this.file), jobs: r.jobs, nextId: this.storedNextId, created: this.created, seconds: r.seconds },
        'sqlite store: opened',
      )
    } catch (err) {
      // SQLite's own errors get the store's classes; anything else (a bug) goes up as it is.
      throw sqliteCode(err) === '' ? err : storeError(this.file, err, 'cannot read the SQLite store')
    }
    this.maintenanceTimer = setInterval(() => this.maintain(), this.opts.maintenanceMs ?? 5000)
    this.maintenanceTimer.unref()
  }

  /** A failed open: closes the database and releases the directory. */
  private abandon(): void {
    this.closed = true
    this.stopTimers()
    try {
      this.db.close()
    } catch {
      // Reporting the open's own error.
    }
    this.lock.release({ failedOpen: true })
  }

  // --- mutations: note the job, synchronously ------------------------------------

  put(job: JobView): boolean {
    this.check()
    if (job.id >= this.hwm) this.hwm = job.id + 1
    if (this.noSpace || this.stalled) return false
    if (job.bodyLen - 2 > MAX_BODY) throw new Error(`sqlite store: a ${job.bodyLen}-byte body exceeds SQLite's limit (the CLI clamps -z)`)
    if (this.pending.has(job.id)) throw new Error(`sqlite store: job ${job.id} put twice`)
    this.pending.set(job.id, { job, op: Op.INSERT })
    if (job.state === BURIED) this.buryKeys.set(job.id, this.nextBuryKey++)
    this.live++
    this.queued++
    return true
  }

  update(job: JobView): void {
    this.check()
    if (job.state !== BURIED) this.buryKeys.delete(job.id)
    else if (!this.buryKeys.has(job.id)) this.buryKeys.set(job.id, this.nextBuryKey++)
    const p = this.pending.get(job.id)
    if (p === undefined) this.pending.set(job.id, { job, op: Op.UPDATE })
    else p.job = job
    this.queued++
  }

  delete(job: JobView): void {
    this.check()
    this.queued++
    this.forget(job)
    const p = this.pending.get(job.id)
    if (p === undefined) this.pending.set(job.id, { job, op: Op.DELETE })
    else if (p.op === Op.INSERT) this.pending.delete(job.id) // never committed: nothing to delete
    else p.op = Op.DELETE
  }

  /** The jobs of one flush slice: one DELETE statement for them all in the next commit. */
  deleteMany(jobs: readonly JobView[]): void {
    this.check()
    this.queued++
    for (const job of jobs) {
      this.forget(job)
      const p = this.pending.get(job.id)
      if (p !== undefined) {
        this.pending.delete(job.id)
        if (p.op === Op.INSERT) continue // never committed: nothing to delete
      }
      this.flushed.push(job.id)
      if (job.ext != null) this.flushedTagged.push(job.id)
    }
  }

  /** A job is gone: its bury key and live count, and the cooldown its idempotency key keeps. */
  private forget(job: JobView): void {
    this.buryKeys.delete(job.id)
    this.live--
    const idp = job.ext?.idp ?? null
    if (idp !== null && idp.ttlSecs > 0) {
      this.tombs.push({ tube: job.tube.name, key: idp.key, id: job.id, ttl: idp.ttlSecs, expiresAt: this.wall() + idp.ttlSecs * 1000 })
    }
  }

  /** A tube policy set or cleared (zeros): its row, in the next commit. */
  policy(p: RestoredPolicy): void {
    this.check()
    this.policies.set(p.tube, { tube: p.tube, maxRetries: p.maxRetries, deadLetter: p.deadLetter, maxJobs: p.maxJobs, fanOut: [...p.fanOut] })
    this.queued++
  }

  canPut(): boolean {
    return !this.noSpace && !this.stalled && this.fatal === null && !this.closed
  }

  fileOf(_jobId: number): number {
    return 0
  }

  // --- committing ----------------------------------------------------------------

  /** Commits everything pending in one transaction; returns the sequence number covering it. */
  flush(): number {
    this.check()
    if (!this.hasChanges()) {
      this.recordsWritten += this.queued
      this.queued = 0
      return this.lastSeq
    }
    this.lastSeq++
    if (!this.stalled) {
      try {
        this.commit()
      } catch (err) {
        this.syncFailure(err)
      }
    }
    return this.lastSeq
  }

  whenDurable(seq: number, cb: () => void): void {
    this.check()
    this.waiters.add(seq, cb, this.committedSeq)
  }

  /** Commits what is pending, makes everything durable (even under -F), releases the directory. */
  close(): void {
    if (this.closed) return
    this.stopTimers()
    try {
      if (this.fatal === null) {
        if (this.hasChanges()) {
          this.lastSeq++
          if (!this.commit()) {
            this.log.error({ jobs: this.pending.size }, 'sqlite store: changes left uncommitted at close (no space or locked); none was acknowledged')
          }
        }
        this.rollback() // ends the held (empty) write transaction
        const fd = this.walFile()
        if (fd >= 0) this.fsyncSync(fd)
        this.syncedSeq = this.committedSeq
        this.db.pragma('synchronous = FULL')
        this.stmt.checkpointTruncate.get() // best effort: a reader can hold it back; the WAL is fsynced already
        this.releaseWaiters()
      }
    } catch (err) {
      this.syncFailure(sqliteCode(err) === '' ? err : this.runtimeError(err))
    } finally {
      this.closed = true
      try {
        this.db.close()
      } catch (err) {
        this.log.warn({ err }, 'sqlite store: close reported an error')
      }
      if (this.walFd >= 0 && !this.syncing) fs.closeSync(this.walFd)
      this.lock.release()
    }
  }

  stats(): StoreStats {
    const db = fileSize(this.file)
    const wal = fileSize(this.walPath)
    return {
      oldestIndex: 0,
      currentIndex: 0,
      recordsWritten: this.recordsWritten + this.queued,
      recordsMigrated: 0,
      liveJobs: this.live,
      noSpace: this.noSpace,
      fsyncs: this.fsyncs,
      engine: 'sqlite',
      files: (db < 0 ? 0 : 1) + (wal < 0 ? 0 : 1),
      diskBytes: Math.max(0, db) + Math.max(0, wal),
      fsyncLatency: this.fsyncLatency,
    }
  }

  /** Sizes of the database and its WAL, and its free pages (operators, tests). */
  fileStats(): { dbBytes: number; walBytes: number; pages: number; freePages: number } {
    return {
      dbBytes: Math.max(0, fileSize(this.file)),
      walBytes: Math.max(0, fileSize(this.walPath)),
      pages: this.stmt.pageCount.get() as number,
      freePages: this.stmt.freePages.get() as number,
    }
  }

  // --- internals -------------------------------------------------------------------

  private check(): void {
    if (this.fatal !== null) throw this.fatal
    if (this.closed) throw new Error('sqlite store: used after close()')
  }

  /** Something waits to be committed. */
  private hasChanges(): boolean {
    return this.pending.size > 0 || this.flushed.length > 0 || this.tombs.length > 0 || this.policies.size > 0 || this.hwm > this.storedNextId
  }

  /** One transaction for everything pending. false: it failed and stays pending (retried by the timer). */
  private commit(): boolean {
    const s = this.stmt
    try {
      if (!this.db.inTransaction) s.begin.run()
      const offset = this.wall() - this.clock.now()
      for (const [id, p] of this.pending) {
        if (p.op === Op.DELETE) {
          s.del.run(id)
          if (p.job.ext != null) s.delTags.run(id)
          continue
        }
        const j = p.job
        const state = STATE_NAMES[j.state === HELD ? READY : j.state]
        if (state === undefined || state === '') throw new Error(`sqlite store: job ${id} in state ${j.state}`)
        const dueAt = state === 'delayed' ? Math.max(0, Math.round(j.deadline + offset)) : null
        let buryKey: number | null = null
        if (state === 'buried') {
          buryKey = this.buryKeys.get(id) ?? this.nextBuryKey++
          this.buryKeys.set(id, buryKey)
        }
        if (p.op === Op.INSERT) {
          const body = j.lendBody === undefined ? j.body : j.lendBody(this.loans)
          try {
            s.insert.run(
              id,
              j.tube.name,
              state,
              j.pri,
              j.delayMs,
              j.ttrMs,
              Math.max(0, Math.round(j.createdAt + offset)),
              dueAt,
              buryKey,
              j.reserves,
              j.timeouts,
              j.releases,
              j.buries,
              j.kicks,
              body.subarray(0, body.length - 2),
            )
          } finally {
            // SQLite took its copy of the bytes in run(), or failed (the retry reads the job again).
            settleLoans(this.loans)
          }
          const x = j.ext
          if (x != null) {
            const a = x.afterName
            s.insertTags.run(id, x.idp?.key ?? null, x.idp?.ttlSecs ?? 0, x.group?.name ?? null, a, a !== null && x.after === null ? 1 : 0, x.con?.name ?? null, x.conLimit)
          }
        } else {
          s.update.run(state, j.pri, j.delayMs, dueAt, buryKey, j.reserves, j.timeouts, j.releases, j.buries, j.kicks, id)
          if (j.ext != null && j.ext.afterName !== null && j.ext.after === null) s.afterDone.run(id)
        }
      }
      if (this.flushed.length > 0) {
        s.delMany.run(JSON.stringify(this.flushed))
        if (this.flushedTagged.length > 0) s.delTagsMany.run(JSON.stringify(this.flushedTagged))
      }
      if (this.tombs.length > 0) {
        s.purgeTombs.run(this.wall())
        for (const t of this.tombs) s.insertTomb.run(t.tube, t.key, t.id, t.ttl, t.expiresAt)
      }
      for (const p of this.policies.values()) {
        if (noPolicy(p)) s.delPolicy.run(p.tube)
        else s.setPolicy.run(p.tube, p.maxRetries, p.deadLetter, p.maxJobs, p.fanOut.length === 0 ? null : p.fanOut.join(','))
      }
      if (this.hwm > this.storedNextId) s.setNextId.run(this.hwm)
      if (this.level === 'commit') this.fsyncLatency.time(() => s.commit.run())
      else s.commit.run()
    } catch (err) {
      this.rollback()
      return this.commitFailed(err)
    }
    this.storedNextId = Math.max(this.storedNextId, this.hwm)
    this.recordsWritten += this.queued
    this.queued = 0
    this.pending.clear()
    this.flushed = []
    this.flushedTagged = []
    this.tombs = []
    this.policies.clear()
    this.committedSeq = this.lastSeq
    if (this.stalled) {
      this.stalled = false
      if (this.locked) this.log.info({ file: this.file }, 'sqlite store: the lock is gone; changes committed')
      this.locked = false
    }
    if (this.level === 'commit') {
      this.syncedSeq = this.committedSeq
      this.fsyncs++
    } else if (this.level === 'timer') {
      this.armSync()
    } else {
      this.syncedSeq = this.committedSeq
    }
    this.lease()
    this.releaseWaiters()
    return true
  }

  private commitFailed(err: unknown): boolean {
    if (sqliteCode(err) === '') throw err // a bug, not the environment
    if (isFull(err)) {
      if (this.reserve.release()) {
        this.enterNoSpace('a commit hit SQLITE_FULL; released the space reserve and retried')
        return this.commit()
      }
      this.enterNoSpace(`${this.pending.size} changed jobs wait for space`)
      this.stalled = true
      this.armRetry()
      return false
    }
    if (isBusy(err)) {
      if (!this.locked) {
        this.log.error(
          { err, file: this.file },
          'sqlite store: the database is locked by another connection; refusing puts (OUT_OF_MEMORY) and holding replies until it is released',
        )
      }
      this.locked = true
      this.stalled = true
      this.armRetry()
      return false
    }
    throw this.runtimeError(err)
  }

  /** Takes the write lock for the time between transactions (an empty BEGIN IMMEDIATE). */
  private lease(): void {
    if (!this.holdLock || this.db.inTransaction) return
    try {
      this.stmt.begin.run()
    } catch (err) {
      // Someone slipped in between COMMIT and BEGIN: the next commit waits for them.
      if (!isBusy(err)) throw this.runtimeError(err)
    }
  }

  private rollback(): void {
    if (!this.db.inTransaction) return
    try {
      this.stmt.rollback.run()
    } catch {
      // SQLite may already have rolled it back.
    }
  }

  /** A SQLite error while running that no retry can cure. */
  private runtimeError(err: unknown): Error {
    const msg = err instanceof Error ? err.message : String(err)
    if (isCorrupt(err)) return new StoreCorruptError(this.file, `SQLite reports damage while running: ${msg}`, { cause: err })
    return new StoreIoError(this.file, `SQLite failed while running: ${msg}; stop and let a restart check the file`, { cause: err })
  }

  private releaseWaiters(): void {
    this.waiters.release(this.committedSeq)
  }

  // --- -f N: our fsync of the WAL ------------------------------------------------------

  private armSync(): void {
    if (this.syncTimer !== null || this.syncing || this.closed) return
    const delay = Math.max(0, this.lastSyncStart + this.opts.fsyncMs - performance.now())
    this.syncTimer = setTimeout(() => {
      this.syncTimer = null
      this.startSync()
    }, delay)
    this.syncTimer.unref()
  }

  private startSync(): void {
    if (this.syncing || this.closed || this.fatal !== null || this.syncedSeq >= this.committedSeq) return
    let fd: number
    try {
      fd = this.walFile()
    } catch (err) {
      this.asyncFailure(new StoreIoError(this.walPath, 'cannot open the WAL to fsync it', { cause: err }))
      return
    }
    const target = this.committedSeq
    if (fd < 0) {
      this.syncedSeq = target
      return
    }
    this.syncing = true
    const t0 = (this.lastSyncStart = performance.now())
    this.fsyncs++
    fs.fsync(fd, (err) => {
      this.syncing = false
      this.fsyncLatency.observeMs(performance.now() - t0)
      if (this.closed) {
        if (this.walFd >= 0) fs.closeSync(this.walFd)
        this.walFd = -1
        return
      }
      if (err !== null) {
        this.asyncFailure(new StoreIoError(this.walPath, 'fsync failed; commits since the last successful fsync may not be on disk', { cause: err }))
        return
      }
      if (target > this.syncedSeq) this.syncedSeq = target
      if (this.committedSeq > this.syncedSeq) this.armSync()
    })
  }

  /** An fd on the WAL file (reopened if SQLite replaced it); -1 when there is none. */
  private walFile(): number {
    const st = fs.statSync(this.walPath, { throwIfNoEntry: false })
    if (st === undefined) return -1
    if (this.walFd >= 0 && st.ino === this.walIno) return this.walFd
    if (this.walFd >= 0 && !this.syncing) fs.closeSync(this.walFd)
    this.walFd = fs.openSync(this.walPath, 'r')
    this.walIno = fs.fstatSync(this.walFd).ino
    return this.walFd
  }

  private fsyncSync(fd: number): void {
    this.fsyncs++
    try {
      this.fsyncLatency.time(() => fs.fsyncSync(fd))
    } catch (err) {
      throw new StoreIoError(this.walPath, 'fsync failed', { cause: err })
    }
  }

  // --- no space, locks, maintenance ------------------------------------------------

  private enterNoSpace(detail: string): void {
    if (!this.noSpace) {
      this.log.error({ file: this.file, detail }, 'sqlite store: disk full; refusing puts (OUT_OF_MEMORY) until space returns')
    }
    this.noSpace = true
    this.armRetry()
  }

  private armRetry(): void {
    if (this.closed || this.fatal !== null) return
    this.retryTimer.arm()
  }

  private retry(): void {
    if (this.closed || this.fatal !== null) return
    if (this.stalled && !this.commit()) return // re-armed by commitFailed
    if (!this.noSpace) return
    this.giveBackSpace(0)
    if (this.reserve.ensure()) {
      this.noSpace = false
      this.log.info({ file: this.file }, 'sqlite store: space available again; accepting puts')
    } else {
      this.armRetry()
    }
  }

  /**
   * Gives up to `pages` free pages (0: all) back to the file system: moves
   * them to the end of the file and cuts them off, in steps, each step's WAL
   * checkpointed and truncated before the next (on a full disk the WAL is
   * where the space is). Maintenance, off the hot path: db.pragma() steps
   * the vacuum to its end (a prepared statement's run() frees one page).
   */
  private giveBackSpace(pages: number): void {
    try {
      if (this.db.inTransaction) this.stmt.commit.run() // the held write lock: an empty transaction
      this.stmt.checkpointTruncate.get()
      for (let left = pages === 0 ? Infinity : pages; left > 0; ) {
        const n = Math.min(left, this.stmt.freePages.get() as number, 1024)
        if (n === 0) break
        this.db.pragma(`incremental_vacuum(${n})`)
        this.stmt.checkpointTruncate.get()
        left -= n
      }
    } catch (err) {
      this.rollback()
      if (!isFull(err) && !isBusy(err)) throw this.runtimeError(err)
    } finally {
      this.lease()
    }
  }

  /** After a burst, gives most of the free pages back (a bounded step each time). */
  private maintain(): void {
    if (this.closed || this.fatal !== null || this.stalled) return
    try {
      const free = this.stmt.freePages.get() as number
      const pages = this.stmt.pageCount.get() as number
      if (free < 2048 || free < pages / 4) return
      this.giveBackSpace(4096)
    } catch (err) {
      this.asyncFailure(err)
    }
  }

  private stopTimers(): void {
    this.retryTimer.cancel()
    if (this.syncTimer !== null) clearTimeout(this.syncTimer)
    if (this.maintenanceTimer !== null) clearInterval(this.maintenanceTimer)
    this.syncTimer = null
    this.maintenanceTimer = null
  }

  // --- fatal errors ------------------------------------------------------------------

  private setFatal(err: Error): void {
    if (this.fatal !== null) return
    this.fatal = err
    this.stopTimers()
    this.log.fatal({ err }, 'sqlite store: fatal error; stop the server and let a restart check the file')
    this.opts.onFatal?.(err)
  }

  /** An error in a synchronous call: the store's own are fatal; anything else (a callback's bug) just propagates. */
  private syncFailure(err: unknown): never {
    if (err instanceof StoreIoError || err instanceof StoreCorruptError) this.setFatal(err)
    throw err
  }

  /** An error in a timer or fsync callback: always fatal; thrown (uncaught) if nobody listens. */
  private asyncFailure(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err))
    this.setFatal(e)
    if (this.opts.onFatal === undefined) throw e
  }
}

/** A file's size, or -1 when it does not exist. */
function fileSize(p: string): number {
  return fs.statSync(p, { throwIfNoEntry: false })?.size ?? -1
}

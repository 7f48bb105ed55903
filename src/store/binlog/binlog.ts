/**
 * tsbeanstalkd's write-ahead log (the "binlog", `-b DIR`): the one object the
 * server talks to. Format: docs/binlog-format.md.
 *
 * ## Boundary: what the server calls, and when
 *
 * 1. Start (cli.ts, through open.ts): `await Binlog.open(opts, registry)`. It
 *    takes DIR's lock and replays every file straight into the registry (the
 *    ReplaySink: restoreJob/restoreUpdate/restoreDelete per record, yielding
 *    to the event loop about every 50 ms, progress logged and reported to
 *    opts.readiness), cuts a torn tail (warning), starts a fresh file and
 *    ends with `restoreEnd(buried in bury order, next id)`. From then on the
 *    binlog reads jobs from the registry (`peek`) when compaction rewrites
 *    them; it keeps no copy. Errors, all with a stable `code`:
 *    BinlogLockedError (TSB_ERR_BINLOG_LOCKED, another server has DIR),
 *    BinlogCorruptError (TSB_ERR_BINLOG_CORRUPT: file, offset and what to
 *    do), BinlogFullError (TSB_ERR_BINLOG_FULL: not even a first file fits),
 *    BinlogIoError (TSB_ERR_BINLOG_IO). Map them to exit codes.
 * 2. Every state change, synchronously, after the Job's fields are updated:
 *    - put: `put(job)` once its state (READY or DELAYED) and deadline are
 *      set, before processQueue may hand it to a waiter. On `false` the disk
 *      is full: answer OUT_OF_MEMORY and do not keep the job (`canPut()`
 *      asks first; the answers agree within one synchronous section). Ids
 *      handed out but refused still raise the id high-water mark.
 *    - `update(job)` after: reserve (reserve, reserve-with-timeout,
 *      reserve-job, a waiter being handed a job), release (with or without
 *      delay), bury, kick and kick-job (each job), TTR timeout.
 *      Not needed (replay derives them): touch, a delayed job becoming ready,
 *      a disconnect returning reserved jobs (reserved replays as ready),
 *      pause, drain. Reserve is logged only so `reserves` survives a restart;
 *      its reply need not wait for durability.
 *    - `delete(job)` when a job is deleted; `deleteMany(jobs)` for the jobs
 *      of one flush-tube/delete-tube slice (one DELETE_MANY record).
 * 3. Once per connection run (after the commands of one input chunk) and
 *    once after the timer advances the wheel (TTR timeouts, waiters handed
 *    jobs): `seq = flush()` writes everything queued in one write (nothing
 *    queued: no syscall, returns the last seq). Send the replies of that run from
 *    `whenDurable(seq, cb)`: under -F and -f N it calls back as soon as the
 *    batch is written (synchronously, inside flush's caller, when it
 *    already is); under -f 0 once an fsync that started after the write has
 *    completed (inside flush while fsyncs are fast, else a group commit on
 *    the thread pool: writer.ts). When the disk is full the batch stays queued
 *    and the callbacks wait; the binlog retries on its own timer.
 * 4. `opts.onFatal(err)` receives a BinlogFsyncError or BinlogIoError, once,
 *    whether it arose in the background fsync or in flush()/close() (which
 *    also throw it): log it and exit; replay recovers. Every later call
 *    throws the same error. Without onFatal a background failure is thrown
 *    as an uncaught exception.
 * 5. SIGTERM/SIGINT: `close()` (writes what is queued, fsyncs even under -F,
 *    releases the lock).
 * 6. stats: `stats()` (binlog-oldest-index, -current-index, -records-written,
 *    -records-migrated, -max-size), stats-job `file`: `fileOf(id)`.
 *
 * Invariants:
 * - Records are queued in call order and written in that order; a record is
 *   encoded at call time, so it holds the job as it was then.
 * - No callback passed to whenDurable(seq) runs before every record queued
 *   before the flush that returned seq is written (and, under -f 0, fsynced).
 * - A put is accepted only while the space reserve exists (see reserve.ts);
 *   without it, records are kept queued, never dropped, and retried.
 */
import path from 'node:path'
import type { Logger } from 'pino'
import { DurableWaiters } from '../durable-waiters.js'
import { RetryTimer } from '../retry-timer.js'
import type { BodyLoan, DurableStore, ReplaySink, StoreOptions, StoreStats, TagsView } from '../store.js'
import type { Clock } from '../../util/clock.js'
import type { Compactor } from './compactor.js'
import { BinlogFsyncError, BinlogFullError, BinlogIoError } from './errors.js'
import { nodeFs, type BinlogFs } from '../io.js'
import { DirLock } from '../lock.js'
import { DELETE_MANY_MAX, RecState, encodeDelete, encodeDeleteMany, encodeFanout, encodeFull, encodePolicy, encodeTags, encodeTomb, encodeUpdate, tombRecordSize, type JobFields, type RecordPolicy, type RecordTags } from './record.js'
import { fullBytesOf, restore, type Restored, type Tomb } from './restore.js'
import { noPolicy, settleLoans } from '../store.js'
import { SpaceReserve } from '../reserve.js'
import type { JobView } from './types.js'
import { Spare } from './spare.js'
import { INLINE_SYNC_MAX_MS, Writer, reservePath } from './writer.js'

export type { JobView } from './types.js'

/** The queue's JobState.HELD (--extensions: an after-job waiting for its group). */
const HELD = 5

/** What a TAGS record holds of a job's tags. */
function recordTags(x: TagsView): RecordTags {
  return {
    idpKey: x.idp?.key ?? null,
    idpTtl: x.idp?.ttlSecs ?? 0,
    group: x.group?.name ?? null,
    after: x.afterName,
    afterDone: x.afterName !== null && x.after === null,
    conKey: x.con?.name ?? null,
    conLimit: x.conLimit,
  }
}
export { BinlogCorruptError, BinlogFsyncError, BinlogFullError, BinlogIoError, BinlogLockedError } from './errors.js'
export type { BinlogFs } from '../io.js'

export interface BinlogOptions extends StoreOptions {
  /** -s: rotate before a batch that would take a file past this many bytes. */
  readonly fileSize: number
  /** File-system calls (tests inject failures); default node:fs. */
  readonly fs?: BinlogFs
  /** Size of DIR/reserve; default fileSize + 1 MiB. */
  readonly reserveBytes?: number
  /** -f 0: fsyncs run inline while the last took under this; default INLINE_SYNC_MAX_MS (writer.ts). Tests pin one path. */
  readonly inlineSyncMaxMs?: number
}

export interface BinlogStats extends StoreStats {
  readonly maxSize: number
  /** Bytes a fully compacted log of the live jobs would take. */
  readonly liveBytes: number
}

export class Binlog implements DurableStore {
  private readonly opts: BinlogOptions
  private readonly log: Logger
  private readonly clock: Clock
  private readonly wall: () => number
  private readonly lock: DirLock
  private readonly live: Compactor
  /** The registry: where the binlog reads a job when compaction rewrites it. */
  private readonly jobs: ReplaySink
  private readonly writer: Writer
  private readonly reserve: SpaceReserve
  /** Files in the run that hold no data of ours (replay's `empty`): never removed, only dropped from the books. */
  private readonly keep = new Set<number>()

  // The batch being built: encoded records, and the ids whose FULL record is in it.
  private parts: Buffer[] = []
  /** The slabs of the bodies in `parts`, settled once they are written (a batch waiting for space keeps them). */
  private readonly loans: BodyLoan[] = []
  private bytes = 0
  private records = 0
  private migrations = 0
  private placing: number[] = []
  /** Bytes the server logged since the last flush: the compaction budget. */
  private appBytes = 0

  private lastSeq = 0
  private readonly waiters = new DurableWaiters()
  private hwm: number
  /** Bury order of the buried jobs, as their records carry it. */
  private readonly buryKeys: Map<number, number>
  /** --extensions: idempotency cooldowns, live in the compactor by their job's id until they run out. */
  private readonly tombs: Map<number, Tomb>
  /** --extensions: the tube policies in force (POLICY records), by tube. */
  private readonly policies: Map<string, RecordPolicy>
  /**
   * The file holding the latest whole set of `policies` (0: none written
   * yet). It and every later file are kept: the set is written again into
   * each new file (setQueued while that is in the queue), and only then may
   * the older files go.
   */
  private policyFile = 0
  private setQueued = false
  private nextBuryKey: number
  private noSpace = false
  /** The last write found no space; the queue waits for a retry. */
  private writeFailed = false
  private readonly retryTimer: RetryTimer
  private fatal: Error | null = null
  private closed = false
  private recordsWritten = 0
  private recordsMigrated = 0

  /** Takes DIR's lock and replays it into `jobs` (the boundary above, step 1). */
  static async open(opts: BinlogOptions, jobs: ReplaySink): Promise<Binlog> {
    const io = opts.fs ?? nodeFs
    io.mkdirSync(opts.dir)
    const lock = DirLock.acquire(opts.dir)
    try {
      SpaceReserve.check(reservePath(opts.dir), io) // before anything in DIR changes
      Spare.check(opts.dir, io)
      const wall = opts.now ?? Date.now
      const r = await restore({ ...opts, wall }, io, jobs)
      const b = new Binlog(opts, io, lock, jobs, r)
      jobs.restoreEnd(r.buried, r.nextId)
      b.log.info(
        { dir: path.resolve(opts.dir), files: r.files.length, records: r.records, stale: r.stale, jobs: r.live.liveJobs, nextId: r.nextId, seconds: r.seconds },
        'binlog: replayed',
      )
      return b
    } catch (err) {
      lock.release({ failedOpen: true })
      throw err
    }
  }

  private constructor(opts: BinlogOptions, io: BinlogFs, lock: DirLock, jobs: ReplaySink, r: Restored) {
    this.opts = opts
    this.retryTimer = new RetryTimer(opts.retryMs ?? 1000, () => this.retry(), (err) => this.asyncFailure(err))
    this.log = opts.log
    this.clock = opts.clock
    this.wall = opts.now ?? Date.now
    this.lock = lock
    this.jobs = jobs
    this.live = r.live
    this.buryKeys = r.buryKeys
    this.nextBuryKey = r.nextBuryKey
    this.tombs = r.tombs
    this.policies = r.policies

    for (const file of r.leftovers) {
      this.log.warn({ file }, 'binlog: removing a new file whose creation a crash interrupted (it held only its header)')
      io.unlinkSync(file)
    }
    let lastIndex = 0
    for (const f of r.files) {
      lastIndex = f.index
      if (f.empty) {
        this.log.warn(
          { file: f.path, bytes: f.originalSize },
          'binlog: skipping a file that holds no data (a crash while it was created); tsbeanstalkd cannot tell it wrote it, so it is left in place: remove it when convenient',
        )
        // Inside the run of our files (replay began it in the books) it keeps the run contiguous; it is never removed (keep).
        if (this.live.fileAt(f.index) !== undefined) {
          this.live.fileWritten(f.index, f.size)
          this.keep.add(f.index)
        }
        continue
      }
      if (f.cut !== null) {
        this.log.warn(
          { file: f.path, offset: f.cut.offset, bytes: f.cut.bytes, detail: f.cut.detail },
          'binlog: cut a torn tail (a crash interrupted a write; the cut records had not been fsynced)',
        )
        const fd = io.openSync(f.path, 'r+')
        io.ftruncateSync(fd, f.size)
        io.fsyncSync(fd)
        io.closeSync(fd)
      }
      this.live.fileWritten(f.index, f.size)
    }
    if (r.oversized > 0) {
      this.log.warn({ jobs: r.oversized, maxJobSize: opts.maxJobSize }, 'binlog: replayed jobs larger than the current -z')
    }

    this.hwm = r.nextId
    this.writer = new Writer(
      {
        dir: opts.dir,
        fileSize: opts.fileSize,
        fsyncMs: opts.fsyncMs,
        fsyncNever: opts.fsyncNever,
        inlineSyncMaxMs: opts.inlineSyncMaxMs ?? INLINE_SYNC_MAX_MS,
        io,
        log: opts.log,
        nextId: () => this.hwm,
        onSynced: () => this.synced(),
        onFatal: (err) => this.asyncFailure(err),
      },
      lastIndex + 1,
    )
    this.live.fileWritten(this.writer.currentIndex, this.writer.size, this.writer.unwritten)
    this.reserve = new SpaceReserve(reservePath(opts.dir), opts.reserveBytes ?? opts.fileSize + (1 << 20), io, !opts.fsyncNever)
    if (!this.reserve.ensure()) this.enterNoSpace(new BinlogFullError(opts.dir, `no room for the ${this.reserve.bytes}-byte space reserve`))
    this.live.markRemovable(0, this.writer.currentIndex)
    // The replayed policies, whole, into the new file (until written, no file goes).
    if (this.policies.size > 0) this.queuePolicySet()
    this.removeFiles()
  }

  // --- mutations: queue records, synchronously ---------------------------------

  /** Logs a new job. false: the disk is full; answer OUT_OF_MEMORY and drop the job. */
  put(job: JobView): boolean {
    this.check()
    if (job.id >= this.hwm) this.hwm = job.id + 1
    if (this.noSpace) return false
    if (this.live.has(job.id)) throw new Error(`binlog: job ${job.id} put twice`)
    if (job.state === RecState.BURIED) this.buryKeys.set(job.id, this.nextBuryKey++)
    this.live.add(job.id, fullBytesOf(job))
    this.queueFull(job, false)
    return true
  }

  /**
   * Logs the copies of one fan-out put (new, untagged, one body, ids
   * consecutive) as one FANOUT record: all of them survive a torn write or
   * none. false: the disk is full.
   */
  putAll(jobs: readonly JobView[]): boolean {
    this.check()
    const last = jobs[jobs.length - 1]!
    if (last.id >= this.hwm) this.hwm = last.id + 1
    if (this.noSpace) return false
    for (const j of jobs) {
      if (this.live.has(j.id)) throw new Error(`binlog: job ${j.id} put twice`)
      this.live.add(j.id, fullBytesOf(j))
    }
    const first = jobs[0]!
    const [head, body] = encodeFanout(this.fields(first, 0), jobs.map((j) => j.tube.name), first.body)
    this.parts.push(head, body)
    const n = head.length + body.length
    this.bytes += n
    this.appBytes += n
    this.records++
    for (const j of jobs) this.placing.push(j.id)
    return true
  }

  /** Logs a job's new state, priority and counters (see the boundary above for when). */
  update(job: JobView): void {
    this.check()
    if (!this.live.has(job.id)) return // never logged: nothing on disk to update
    this.queue(encodeUpdate(this.fields(job, this.buryKeyFor(job))))
    // An after-job's tags again: the latest says whether it still waits (cheap, and only for these).
    const x = job.ext
    if (x != null && x.afterName !== null) this.queue(encodeTags(job.id, recordTags(x)))
  }

  delete(job: JobView): void {
    this.check()
    if (this.forget(job)) this.queue(encodeDelete(job.id))
  }

  /**
   * Logs the deletes of one flush slice as one DELETE_MANY record (one CRC:
   * after a torn write none of them happened, and the flush was not
   * answered). A job whose idempotency key keeps a cooldown gets its TOMB
   * record as `delete` would write it.
   */
  deleteMany(jobs: readonly JobView[]): void {
    this.check()
    const ids: number[] = []
    for (const j of jobs) if (this.forget(j)) ids.push(j.id)
    if (ids.length === 1) return this.queue(encodeDelete(ids[0]!))
    for (let i = 0; i < ids.length; i += DELETE_MANY_MAX) this.queue(encodeDeleteMany(ids.slice(i, i + DELETE_MANY_MAX)))
  }

  /**
   * A job is gone: out of the live set and the bury keys. true when a plain
   * DELETE of it is due; false when it was never logged or its key's
   * cooldown went into a TOMB record instead.
   */
  private forget(job: JobView): boolean {
    if (!this.live.remove(job.id, fullBytesOf(job))) return false
    this.buryKeys.delete(job.id)
    const idp = job.ext?.idp ?? null
    if (idp === null || idp.ttlSecs === 0) return true
    // The key's cooldown: a TOMB record, live (and moved by compaction) until it runs out.
    const t: Tomb = {
      tube: job.tube.name,
      key: idp.key,
      ttlSecs: idp.ttlSecs,
      expiresAtWall: this.wall() + idp.ttlSecs * 1000,
      bytes: tombRecordSize(job.tube.name, idp.key),
    }
    this.tombs.set(job.id, t)
    this.live.add(job.id, t.bytes)
    this.queueTomb(job.id, t, false)
    return false
  }

  /** A tube policy set or cleared (zeros): a POLICY record, with the turn's others. */
  policy(p: RecordPolicy): void {
    this.check()
    const v = { tube: p.tube, maxRetries: p.maxRetries, deadLetter: p.deadLetter, maxJobs: p.maxJobs, fanOut: [...p.fanOut] }
    if (noPolicy(v)) this.policies.delete(v.tube)
    else this.policies.set(v.tube, v)
    this.queue(encodePolicy(v))
  }

  /** The whole policy set again, for the file the next write goes to (see policyFile). */
  private queuePolicySet(): void {
    for (const p of this.policies.values()) this.queue(encodePolicy(p))
    this.setQueued = true
  }

  /** Whether a put would be accepted now. */
  canPut(): boolean {
    return !this.noSpace && this.fatal === null && !this.closed
  }

  // --- writing -------------------------------------------------------------------

  /**
   * Writes everything queued (plus compaction's migrations) in one write and
   * returns the sequence number that covers it. Nothing queued: the last one.
   */
  flush(): number {
    this.check()
    if (this.bytes === 0) return this.lastSeq
    const budget = 2 * this.appBytes
    this.appBytes = 0
    // After a failed write, adding migrations to the waiting batch only makes it bigger.
    if (!this.writeFailed) {
      for (const id of this.live.select(budget, this.writer.currentIndex, this.sizeOf)) this.migrate(id)
    }
    this.lastSeq++
    try {
      this.writeQueued()
    } catch (err) {
      this.syncFailure(err)
    }
    return this.lastSeq
  }

  /** Calls `cb` once everything flushed up to `seq` is durable per the fsync policy. */
  whenDurable(seq: number, cb: () => void): void {
    this.check()
    this.waiters.add(seq, cb, this.ackedSeq)
  }

  /** Writes what is queued, fsyncs (even under -F), removes what compaction freed, releases the lock. */
  close(): void {
    if (this.closed) return
    this.retryTimer.cancel()
    try {
      if (this.fatal === null) {
        if (this.bytes > 0) {
          this.lastSeq++
          if (!this.writeQueued()) {
            this.log.error({ records: this.records }, 'binlog: records left unwritten at close (disk full); none was acknowledged')
          }
        }
        this.writer.syncNow()
        this.removeFiles()
        this.writer.close()
        this.releaseWaiters()
      }
    } catch (err) {
      this.syncFailure(err)
    } finally {
      this.closed = true
      this.lock.release()
    }
  }

  /** Files given up but not yet gone from the directory (the writer removes them on the thread pool). */
  get removalsPending(): number {
    return this.writer.removalsPending
  }

  stats(): BinlogStats {
    return {
      oldestIndex: this.live.files[0]?.index ?? this.writer.currentIndex,
      currentIndex: this.writer.currentIndex,
      // Records queued this turn count too: the reference writes each one as it
      // happens, so a `stats` right after a command sees it.
      recordsWritten: this.recordsWritten + this.records,
      recordsMigrated: this.recordsMigrated,
      maxSize: this.opts.fileSize,
      diskBytes: this.live.diskBytes,
      liveBytes: this.live.liveBytes,
      liveJobs: this.live.liveJobs - this.tombs.size,
      noSpace: this.noSpace,
      fsyncs: this.writer.fsyncs,
      engine: 'binlog',
      files: this.live.files.length,
      fsyncLatency: this.writer.fsyncLatency,
    }
  }

  /** The file holding the job's latest full record (stats-job `file`); 0 if the binlog has none. */
  fileOf(jobId: number): number {
    return this.live.fileOf(jobId, this.writer.currentIndex)
  }

  // --- internals -------------------------------------------------------------------

  private get ackedSeq(): number {
    return this.opts.fsyncMs === 0 && !this.opts.fsyncNever ? this.writer.syncedSeq : this.writer.writtenSeq
  }

  private check(): void {
    if (this.fatal !== null) throw this.fatal
    if (this.closed) throw new Error('binlog: used after close()')
  }

  /** A job's fields as stored: monotonic times become wall-clock ms. */
  private fields(v: JobView, buryKey: number): JobFields {
    if (v.state < RecState.READY || v.state > HELD) throw new Error(`binlog: job ${v.id} in state ${v.state}`)
    const offset = this.wall() - this.clock.now()
    return {
      id: v.id,
      // A held after-job is stored ready: replay holds it again while its group has members.
      state: v.state === HELD ? RecState.READY : (v.state as RecState),
      pri: v.pri,
      reserves: v.reserves,
      timeouts: v.timeouts,
      releases: v.releases,
      buries: v.buries,
      kicks: v.kicks,
      delayMs: v.delayMs,
      ttrMs: v.ttrMs,
      createdAtWall: Math.max(0, Math.round(v.createdAt + offset)),
      readyAtWall: v.state === RecState.DELAYED ? Math.max(0, Math.round(v.deadline + offset)) : 0,
      buryKey,
    }
  }

  private queue(b: Buffer): void {
    this.parts.push(b)
    this.bytes += b.length
    this.appBytes += b.length
    this.records++
  }

  /** A live job as the registry holds it now. */
  private job(id: number): JobView {
    const j = this.jobs.peek(id)
    if (j === undefined) throw new Error(`binlog: live job ${id} is not in the registry`)
    return j
  }

  private readonly sizeOf = (id: number): number => this.tombs.get(id)?.bytes ?? fullBytesOf(this.job(id))

  /** Compaction moves a live job, or a cooldown that has not run out (one that has is dropped). */
  private migrate(id: number): void {
    const t = this.tombs.get(id)
    if (t === undefined) return this.queueFull(this.job(id), true)
    if (t.expiresAtWall > this.wall()) return this.queueTomb(id, t, true)
    this.tombs.delete(id)
    this.live.remove(id, t.bytes)
  }

  private queueTomb(id: number, t: Tomb, migration: boolean): void {
    const b = encodeTomb(id, t)
    this.parts.push(b)
    this.bytes += b.length
    this.records++
    this.placing.push(id)
    if (migration) this.migrations++
    else this.appBytes += b.length
  }

  /** The job's bury key: kept while it stays buried, a new one when it enters BURIED, none otherwise. */
  private buryKeyFor(job: JobView): number {
    if (job.state !== RecState.BURIED) {
      this.buryKeys.delete(job.id)
      return 0
    }
    let key = this.buryKeys.get(job.id)
    if (key === undefined) {
      key = this.nextBuryKey++
      this.buryKeys.set(job.id, key)
    }
    return key
  }

  private queueFull(job: JobView, migration: boolean): void {
    const body = job.lendBody === undefined ? job.body : job.lendBody(this.loans)
    const [head] = encodeFull(this.fields(job, this.buryKeys.get(job.id) ?? 0), job.tube.name, body)
    this.parts.push(head)
    if (body.length > 0) this.parts.push(body)
    const n = head.length + body.length
    this.bytes += n
    this.records++
    this.placing.push(job.id)
    if (migration) this.migrations++
    else this.appBytes += n
    // A tagged job's tags go with every FULL of it, in the same write (so in the same file).
    const x = job.ext
    if (x != null) {
      const tags = encodeTags(job.id, recordTags(x))
      this.parts.push(tags)
      this.bytes += tags.length
      this.records++
      if (!migration) this.appBytes += tags.length
    }
  }

  /** One write of the whole queue. false: disk full, the queue is kept for a retry. */
  private writeQueued(): boolean {
    let to = this.writer.write(this.parts, this.bytes, this.lastSeq)
    if (to < 0 && this.reserve.release()) {
      this.enterNoSpace(new BinlogFullError(this.opts.dir, 'a write hit ENOSPC; released the space reserve and retried'))
      to = this.writer.write(this.parts, this.bytes, this.lastSeq)
    }
    this.live.fileWritten(this.writer.currentIndex, this.writer.size, this.writer.unwritten)
    this.writeFailed = to < 0
    if (to < 0) {
      this.enterNoSpace(new BinlogFullError(this.opts.dir, `${this.records} records wait for space`))
      return false
    }
    this.live.placed(this.placing, to)
    const setWritten = this.setQueued
    this.setQueued = false
    if (setWritten) this.policyFile = to
    this.recordsWritten += this.records
    this.recordsMigrated += this.migrations
    this.parts = []
    settleLoans(this.loans)
    this.placing = []
    this.bytes = 0
    this.records = 0
    this.migrations = 0
    this.live.markRemovable(this.writer.writtenSeq, this.writer.currentIndex)
    // The writer moved on to a new file: the policy set goes there too, with the next write.
    if (this.policies.size > 0 && this.policyFile !== this.writer.currentIndex) this.queuePolicySet()
    this.removeFiles()
    this.releaseWaiters()
    return true
  }

  /** The background fsync completed. */
  private synced(): void {
    try {
      this.removeFiles()
    } catch (err) {
      this.asyncFailure(err)
      return
    }
    this.releaseWaiters()
  }

  private releaseWaiters(): void {
    this.waiters.release(this.ackedSeq)
  }

  /** Removes the oldest files no live job needs, once what was moved out of them is durable. */
  private removeFiles(): void {
    let removed = false
    for (let f; (f = this.live.removableHead(this.writer.syncedSeq, this.writer.currentIndex)) !== undefined; ) {
      // The latest whole policy set is in this file or a later one: keep them until a newer set is durable.
      if (this.policies.size > 0 && (this.setQueued || f.index >= this.policyFile)) break
      if (!this.keep.delete(f.index)) this.writer.remove(f.index)
      this.live.dropHead()
      removed = true
    }
    if (removed && this.noSpace) this.armRetry()
  }

  private enterNoSpace(err: BinlogFullError): void {
    if (!this.noSpace) this.log.error({ err }, 'binlog: disk full; refusing puts (OUT_OF_MEMORY) until space returns')
    this.noSpace = true
    this.armRetry()
  }

  private armRetry(): void {
    if (this.closed || this.fatal !== null) return
    this.retryTimer.arm()
  }

  private retry(): void {
    if (this.closed || this.fatal !== null) return
    if (this.bytes > 0 && !this.writeQueued()) return // re-armed by enterNoSpace
    if (!this.noSpace) return
    if (this.reserve.ensure()) {
      this.noSpace = false
      this.writer.spaceReturned()
      this.log.info({ dir: this.opts.dir }, 'binlog: space available again; accepting puts')
    } else {
      this.armRetry()
    }
  }

  /** Marks the binlog failed: every later call throws `err`; onFatal hears it once. */
  private setFatal(err: Error): void {
    if (this.fatal !== null) return
    this.fatal = err
    this.writer.abandon()
    this.retryTimer.cancel()
    this.log.fatal({ err }, 'binlog: fatal I/O error; stop the server and let replay recover')
    this.opts.onFatal?.(err)
  }

  /** An error in a synchronous call: I/O errors are fatal; anything else (a callback's bug) just propagates. */
  private syncFailure(err: unknown): never {
    if (err instanceof BinlogFsyncError || err instanceof BinlogIoError) this.setFatal(err)
    throw err
  }

  /** An error in a timer or fsync callback: always fatal; thrown (uncaught) if nobody listens. */
  private asyncFailure(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err))
    this.setFatal(e)
    if (this.opts.onFatal === undefined) throw e
  }
}

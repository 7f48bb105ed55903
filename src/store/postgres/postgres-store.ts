/**
 * The PostgreSQL store (`--store postgres --pg-url URL --pg-schema NAME`):
 * the same contract as the binlog and the SQLite store (store.ts), with the
 * jobs in the namespace's `jobs` table, one row each (schema.ts,
 * docs/postgres-schema.md), which `psql` can query while the server runs.
 * Only the namespace's leader (leader.ts) opens it.
 *
 * ## How a turn is stored
 *
 * put/update/delete note the job in `pending` (one entry per job, the last
 * call wins), as the SQLite store does. flush() hands what is pending to one
 * transaction, on the store's one connection, asynchronously: the event loop
 * never waits for the database. The transaction is one statement (one
 * round trip, committed on its own): data-modifying CTEs for the epoch
 * check, one INSERT of every new job (unnest of column arrays; the bodies
 * as one bytea cut up server-side), one UPDATE of every changed one, one
 * DELETE, and next_id. Transactions run one after another, never two at once, so a job's
 * changes commit in order; what the next turns queue while one is in flight
 * goes into the next (group commit: throughput is bounded by commits per
 * second, not by round trips per job).
 *
 * ## -f and -F (README "PostgreSQL store")
 *
 * - `-f 0`: synchronous_commit = on: COMMIT returns once the commit record
 *   is flushed to the WAL (and, with synchronous standbys configured in
 *   PostgreSQL, once they have it): replies wait for it.
 * - `-f N`: synchronous_commit = off: replies follow COMMIT, which does not
 *   wait for the WAL flush; within N ms of such a commit the store runs a
 *   transaction with synchronous_commit = on (the epoch check alone), whose
 *   flush covers every commit before it: at most about N ms are at risk.
 * - `-F`: synchronous_commit = off and nothing more: PostgreSQL's WAL
 *   writer flushes within 3 x wal_writer_delay (600 ms by default).
 * - The takeover transaction and the one at a clean stop always run with
 *   synchronous_commit = on.
 *
 * ## Faults
 *
 * - The epoch check finds another epoch (a newer leader took over), or the
 *   leader's lock session is lost, or not confirmed recently enough before a
 *   commit or before its replies (Leader.fresh()): fenced. Nothing more is
 *   acknowledged; onFenced (the CLI: exit 15).
 * - Any other failed transaction (a dropped connection, PostgreSQL
 *   restarting, its disk full): its changes go back to pending, its replies wait,
 *   puts are refused (OUT_OF_MEMORY), and the retry timer commits them later
 *   (once space is freed, for a full disk: the retry is the same transaction,
 *   so the deletes queued behind a put that did not fit wait with it). A stopped
 *   PostgreSQL also ends the lock session, so in practice the leader fences.
 *
 * Invariants:
 * - No whenDurable callback runs before the transaction holding every change
 *   queued before its flush has committed with this leader's epoch, and
 *   while the leadership was fresh after that commit.
 * - After every commit, max(next_id, max(id) + 1) is at least every id handed
 *   to put, so ids are never reused, by this leader or the next.
 * - A job has a bury key exactly while its last recorded state is buried.
 */
import type { Logger } from 'pino'
import type postgres from 'postgres'
import type { Clock } from '../../util/clock.js'
import { DurableWaiters } from '../durable-waiters.js'
import { LatencyHistogram } from '../latency-histogram.js'
import { RetryTimer } from '../retry-timer.js'
import type { BodyLoan, DurableStore, JobView, ReplaySink, StoreOptions, StoreStats } from '../store.js'
import { settleLoans } from '../store.js'
import { connect, type Sql } from './connect.js'
import { PgFencedError } from './errors.js'
import type { Leader } from './leader.js'
import { restoreRows } from './restore.js'
import { takeOver } from './schema.js'

export interface PostgresStoreOptions extends StoreOptions {
  readonly url: string
  readonly schema: string
  /** The leadership this store writes under (acquired before open). */
  readonly leader: Leader
  /** The store finds itself fenced; default: onFatal. */
  readonly onFenced?: (err: PgFencedError) => void
}

const Op = { INSERT: 1, UPDATE: 2, DELETE: 3 } as const
type Op = (typeof Op)[keyof typeof Op]

interface Pending {
  job: JobView
  op: Op
}

const BURIED = 3
const READY = 1
/** The queue's JobState.HELD (--extensions; refused with this store at start, but stored ready if ever seen). */
const HELD = 5
const STATE_NAMES = ['', 'ready', 'reserved', 'buried', 'delayed'] as const
/** What the epoch check casts to int when the epoch moved: the error message carries it. */
const FENCED_MARK = 'tsbeanstalkd fenced: epoch '
/** SQLSTATE disk_full: PostgreSQL could not extend a file (its tablespace's disk is full). */
const DISK_FULL = '53100'

/** Column arrays of one batch's INSERT (or UPDATE: no tube, times, body). */
interface Columns {
  id: number[]
  tube: string[]
  state: string[]
  pri: number[]
  delayMs: number[]
  ttrMs: number[]
  createdAt: number[]
  dueAt: (number | null)[]
  burySeq: (number | null)[]
  reserves: number[]
  timeouts: number[]
  releases: number[]
  buries: number[]
  kicks: number[]
  off: number[]
  len: number[]
  bodies: Buffer[]
}

const columns = (): Columns => ({
  id: [],
  tube: [],
  state: [],
  pri: [],
  delayMs: [],
  ttrMs: [],
  createdAt: [],
  dueAt: [],
  burySeq: [],
  reserves: [],
  timeouts: [],
  releases: [],
  buries: [],
  kicks: [],
  off: [],
  len: [],
  bodies: [],
})

export class PostgresStore implements DurableStore {
  readonly schema: string
  readonly epoch: number
  private readonly opts: PostgresStoreOptions
  private readonly log: Logger
  private readonly clock: Clock
  private readonly wall: () => number
  private readonly sql: Sql
  private readonly leader: Leader
  /** -f 0: every COMMIT waits for the WAL flush. -f N: a timer's commit does. -F: nobody does. */
  private readonly level: 'commit' | 'timer' | 'never'

  private pending = new Map<number, Pending>()
  private queued = 0
  /** Changes noted since the last flush (queued also counts a failed batch's, put back). */
  private turnChanges = 0
  private readonly buryKeys = new Map<number, number>()
  /** The slabs of the bodies the transaction in flight reads (store.ts `JobView.lendBody`). */
  private readonly loans: BodyLoan[] = []
  private nextBuryKey = 1
  private hwm = 1
  private storedNextId = 1
  private live = 0

  private lastSeq = 0
  private committedSeq = 0
  private readonly waiters = new DurableWaiters()
  private inFlight = false
  /** -f N: async commits not yet covered by a synchronous one. */
  private unsynced = false
  private syncDue = false
  private syncTimer: NodeJS.Timeout | null = null
  private stalled = false
  /** The last failed commit was PostgreSQL's disk full (SQLSTATE 53100): stats().noSpace. */
  private noSpace = false
  private readonly retryTimer: RetryTimer
  private fenced: PgFencedError | null = null
  private closed = false
  private idle: (() => void) | null = null
  private recordsWritten = 0
  private commits = 0
  private readonly commitLatency = new LatencyHistogram()

  /** Takes over the namespace (raising the epoch) and replays its rows into `jobs`. */
  static async open(opts: PostgresStoreOptions, jobs: ReplaySink): Promise<PostgresStore> {
    const level = opts.fsyncNever ? 'never' : opts.fsyncMs === 0 ? 'commit' : 'timer'
    const sql = connect({
      url: opts.url,
      schema: opts.schema,
      sessionTimeoutMs: opts.leader.sessionTimeoutMs,
      settings: { synchronous_commit: level === 'commit' ? 'on' : 'off' },
    })
    try {
      if (!opts.leader.fresh()) throw new PgFencedError(opts.schema, opts.leader.lost ?? 'the leadership is not confirmed')
      const t = await takeOver(sql, opts.schema)
      const store = new PostgresStore(opts, sql, t.epoch, level)
      store.storedNextId = t.nextId
      await store.replay(jobs, t.created)
      return store
    } catch (err) {
      await sql.end({ timeout: 0 }).catch(() => undefined)
      throw err
    }
  }

  private constructor(opts: PostgresStoreOptions, sql: Sql, epoch: number, level: 'commit' | 'timer' | 'never') {
    this.opts = opts
    this.schema = opts.schema
    this.epoch = epoch
    this.log = opts.log
    this.clock = opts.clock
    this.wall = opts.now ?? Date.now
    this.sql = sql
    this.leader = opts.leader
    this.level = level
    this.retryTimer = new RetryTimer(opts.retryMs ?? 1000, () => this.retry(), (err) => this.fatal(err))
  }

  private async replay(jobs: ReplaySink, created: boolean): Promise<void> {
    const r = await restoreRows(this.sql, this.schema, jobs, {
      clock: this.clock,
      wall: this.wall,
      log: this.log,
      readiness: this.opts.readiness,
      progressMs: this.opts.progressMs,
      yieldMs: this.opts.yieldMs,
      maxJobSize: this.opts.maxJobSize,
    })
    if (!this.leader.fresh()) throw new PgFencedError(this.schema, this.leader.lost ?? 'the leadership was lost during the replay')
    this.storedNextId = Math.max(this.storedNextId, r.maxId + 1)
    this.hwm = this.storedNextId
    this.live = r.jobs
    for (const [id, key] of r.buryKeys) this.buryKeys.set(id, key)
    this.nextBuryKey = r.nextBuryKey
    if (r.oversized > 0) this.log.warn({ jobs: r.oversized, maxJobSize: this.opts.maxJobSize }, 'postgres store: stored jobs larger than the current -z')
    jobs.restoreEnd(r.buried, this.storedNextId)
    this.log.info(
      { schema: this.schema, epoch: this.epoch, jobs: r.jobs, nextId: this.storedNextId, created, seconds: r.seconds },
      `postgres store: opened schema ${this.schema} (epoch ${this.epoch})`,
    )
  }

  // --- mutations: note the job, synchronously ------------------------------------

  put(job: JobView): boolean {
    this.check()
    if (job.id >= this.hwm) this.hwm = job.id + 1
    // noSpace stays set through the retries (stalled does not): a put meanwhile would queue behind the one that did not fit.
    if (this.stalled || this.noSpace) return false
    if (this.pending.has(job.id)) throw new Error(`postgres store: job ${job.id} put twice`)
    this.pending.set(job.id, { job, op: Op.INSERT })
    if (job.state === BURIED) this.buryKeys.set(job.id, this.nextBuryKey++)
    this.live++
    this.queued++
    this.turnChanges++
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
    this.turnChanges++
  }

  delete(job: JobView): void {
    this.check()
    this.buryKeys.delete(job.id)
    this.live--
    this.queued++
    this.turnChanges++
    const p = this.pending.get(job.id)
    if (p === undefined) this.pending.set(job.id, { job, op: Op.DELETE })
    else if (p.op === Op.INSERT) this.pending.delete(job.id) // never sent: nothing to delete
    else p.op = Op.DELETE
  }

  canPut(): boolean {
    return !this.stalled && !this.noSpace && this.fenced === null && !this.closed
  }

  fileOf(_jobId: number): number {
    return 0
  }

  // --- committing ----------------------------------------------------------------

  flush(): number {
    this.check()
    if (this.pending.size === 0 && this.hwm <= this.storedNextId) {
      this.recordsWritten += this.queued
      this.queued = 0
      this.turnChanges = 0
      return this.lastSeq
    }
    const changed = this.turnChanges > 0
    this.turnChanges = 0
    // A failed batch waits for its retry: a turn that stored nothing (reads, reserves, refused
    // puts) need not wait behind it, or a full disk would stop every reply, not just the writes.
    if (!changed && (this.stalled || this.noSpace)) return this.committedSeq
    this.lastSeq++
    this.kick()
    return this.lastSeq
  }

  whenDurable(seq: number, cb: () => void): void {
    this.check()
    this.waiters.add(seq, cb, this.committedSeq)
  }

  /** Starts committing what is queued; the clean stop is closeAsync(). */
  close(): void {
    void this.closeAsync()
  }

  /**
   * Commits what is pending with synchronous_commit on (whatever -f says),
   * waits for it, and ends the connection. The leadership is the caller's
   * to release after.
   */
  async closeAsync(): Promise<void> {
    if (this.closed) return
    this.stopTimers()
    if (this.fenced === null) {
      if (this.pending.size > 0 || this.hwm > this.storedNextId) this.lastSeq++
      this.syncDue = this.level !== 'commit' || this.syncDue
      for (let i = 0; i < 3 && this.fenced === null && (this.inFlight || this.committedSeq < this.lastSeq || this.syncDue); i++) {
        if (!this.inFlight) {
          this.stalled = false
          this.kick()
        }
        await new Promise<void>((resolve) => (this.idle = resolve))
      }
      if (this.committedSeq < this.lastSeq) this.log.error({ jobs: this.pending.size }, 'postgres store: changes left uncommitted at close; none was acknowledged')
    }
    this.closed = true
    await this.sql.end({ timeout: 1 }).catch(() => undefined)
  }

  stats(): StoreStats {
    return {
      oldestIndex: 0,
      currentIndex: 0,
      recordsWritten: this.recordsWritten + this.queued,
      recordsMigrated: 0,
      liveJobs: this.live,
      noSpace: this.noSpace,
      fsyncs: this.commits,
      engine: 'postgres',
      files: 0,
      diskBytes: 0,
      fsyncLatency: this.commitLatency,
    }
  }

  // --- internals -------------------------------------------------------------------

  private check(): void {
    if (this.fenced !== null) throw this.fenced
    if (this.closed) throw new Error('postgres store: used after close()')
  }

  /** Sends the next transaction when none is in flight and there is something to send. */
  private kick(): void {
    if (this.inFlight || this.stalled || this.fenced !== null || this.closed) return
    const work = this.pending.size > 0 || this.hwm > this.storedNextId || this.committedSeq < this.lastSeq
    if (!work && !this.syncDue) return
    if (!this.leader.fresh()) {
      this.fence(this.leader.lost ?? 'the leadership was not confirmed in time before a commit')
      return
    }
    const batch = this.pending
    this.pending = new Map()
    const seq = this.lastSeq
    const hwm = this.hwm
    const sync = this.syncDue
    this.syncDue = false
    this.inFlight = true
    const records = this.queued
    this.queued = 0
    const t0 = performance.now()
    this.transaction(batch, hwm, sync).then(
      () => this.committed(seq, hwm, sync, records, t0),
      (err: unknown) => this.failed(err, batch, sync, records),
    )
  }

  /** One transaction: the epoch check and every change of `batch`, sent together. */
  private async transaction(batch: Map<number, Pending>, hwm: number, sync: boolean): Promise<void> {
    try {
      await this.send(batch, hwm, sync)
    } finally {
      // postgres.js has serialized the bodies, or the commit failed (a retry lends them again).
      settleLoans(this.loans)
    }
  }

  private async send(batch: Map<number, Pending>, hwm: number, sync: boolean): Promise<void> {
    const offset = this.wall() - this.clock.now()
    const ins = columns()
    const upd = columns()
    const del: number[] = []
    let bodyBytes = 0
    for (const [id, p] of batch) {
      if (p.op === Op.DELETE) {
        del.push(id)
        continue
      }
      const j = p.job
      const state = STATE_NAMES[j.state === HELD ? READY : j.state]
      if (state === undefined || state === '') throw new Error(`postgres store: job ${id} in state ${j.state}`)
      const c = p.op === Op.INSERT ? ins : upd
      c.id.push(id)
      c.state.push(state)
      c.pri.push(j.pri)
      c.delayMs.push(j.delayMs)
      c.dueAt.push(state === 'delayed' ? Math.max(0, Math.round(j.deadline + offset)) : null)
      let buryKey: number | null = null
      if (state === 'buried') {
        buryKey = this.buryKeys.get(id) ?? this.nextBuryKey++
        this.buryKeys.set(id, buryKey)
      }
      c.burySeq.push(buryKey)
      c.reserves.push(j.reserves)
      c.timeouts.push(j.timeouts)
      c.releases.push(j.releases)
      c.buries.push(j.buries)
      c.kicks.push(j.kicks)
      if (p.op === Op.INSERT) {
        c.tube.push(j.tube.name)
        c.ttrMs.push(j.ttrMs)
        c.createdAt.push(Math.max(0, Math.round(j.createdAt + offset)))
        const lent = j.lendBody === undefined ? j.body : j.lendBody(this.loans)
        const body = lent.subarray(0, lent.length - 2)
        c.off.push(bodyBytes + 1) // substring() counts from 1
        c.len.push(body.length)
        c.bodies.push(body)
        bodyBytes += body.length
      }
    }
    const nextId = hwm > this.storedNextId ? hwm : 0
    const blob = ins.bodies.length === 1 ? ins.bodies[0]! : Buffer.concat(ins.bodies, bodyBytes)
    // One statement, so one round trip and, outside a BEGIN, its own transaction. Its parts run
    // as one: the epoch check fails the whole statement (a cast of the reason to int raises), and
    // it holds the epoch row's lock until the commit, which a takeover's raise waits for.
    const statement = (q: Sql | postgres.TransactionSql): postgres.PendingQuery<postgres.Row[]> => q`
      WITH fence AS (
        SELECT (CASE WHEN value = ${this.epoch} THEN '1' ELSE ${FENCED_MARK} || value END)::int AS ok
        FROM meta WHERE key = 'epoch' FOR UPDATE
      ), ins AS (
        INSERT INTO jobs (id, tube, state, pri, delay_ms, ttr_ms, created_at, due_at, bury_seq, reserves, timeouts, releases, buries, kicks, body)
        SELECT u.id, u.tube, u.state, u.pri, u.delay_ms, u.ttr_ms, u.created_at, u.due_at, u.bury_seq, u.reserves, u.timeouts, u.releases, u.buries, u.kicks,
               substring(${blob}::bytea FROM u.off FOR u.len)
        FROM unnest(${ins.id}::int8[], ${ins.tube}::text[], ${ins.state}::text[], ${ins.pri}::int8[], ${ins.delayMs}::int8[], ${ins.ttrMs}::int8[],
                    ${ins.createdAt}::int8[], ${ins.dueAt}::int8[], ${ins.burySeq}::int8[], ${ins.reserves}::int8[], ${ins.timeouts}::int8[],
                    ${ins.releases}::int8[], ${ins.buries}::int8[], ${ins.kicks}::int8[], ${ins.off}::int4[], ${ins.len}::int4[])
          AS u(id, tube, state, pri, delay_ms, ttr_ms, created_at, due_at, bury_seq, reserves, timeouts, releases, buries, kicks, off, len)
      ), upd AS (
        UPDATE jobs AS j SET state = u.state, pri = u.pri, delay_ms = u.delay_ms, due_at = u.due_at, bury_seq = u.bury_seq,
               reserves = u.reserves, timeouts = u.timeouts, releases = u.releases, buries = u.buries, kicks = u.kicks
        FROM unnest(${upd.id}::int8[], ${upd.state}::text[], ${upd.pri}::int8[], ${upd.delayMs}::int8[], ${upd.dueAt}::int8[], ${upd.burySeq}::int8[],
                    ${upd.reserves}::int8[], ${upd.timeouts}::int8[], ${upd.releases}::int8[], ${upd.buries}::int8[], ${upd.kicks}::int8[])
          AS u(id, state, pri, delay_ms, due_at, bury_seq, reserves, timeouts, releases, buries, kicks)
        WHERE j.id = u.id
      ), del AS (
        DELETE FROM jobs WHERE id = ANY(${del}::int8[])
      ), nid AS (
        UPDATE meta SET value = GREATEST(value, ${nextId}::int8) WHERE key = 'next_id' AND ${nextId}::int8 > 0
      )
      SELECT (SELECT count(*) FROM fence)::int AS checked`
    let rows: postgres.Row[]
    try {
      rows = sync
        ? ((await this.sql.begin((tx) => [tx`SET LOCAL synchronous_commit = on`, statement(tx)])) as unknown as postgres.Row[][])[1]!
        : await statement(this.sql)
    } catch (err) {
      const m = err instanceof Error ? err.message.indexOf(FENCED_MARK) : -1
      if (m >= 0) {
        const now = (err as Error).message.slice(m + FENCED_MARK.length).replace(/\D.*$/, '')
        throw new PgFencedError(this.schema, `another process took over: the epoch is ${now}, not ${this.epoch}`, { cause: err })
      }
      throw err
    }
    if (rows[0]?.['checked'] !== 1) {
      // Committed without the check: someone removed the epoch row by hand. Stop rather than go on unfenced.
      throw new PgFencedError(this.schema, 'meta has no epoch row: the schema was changed by hand')
    }
  }

  private committed(seq: number, hwm: number, sync: boolean, records: number, t0: number): void {
    this.inFlight = false
    this.commits++
    this.commitLatency.observeMs(performance.now() - t0)
    this.recordsWritten += records
    if (hwm > this.storedNextId) this.storedNextId = hwm
    if (this.noSpace) this.log.info({ schema: this.schema }, 'postgres store: space available again; accepting puts')
    else if (this.stalled) this.log.info({ schema: this.schema }, 'postgres store: commits succeed again')
    this.stalled = false
    this.noSpace = false
    if (!this.leader.fresh()) {
      // Committed, and in what the next leader replays, but not ours to acknowledge.
      this.fence(this.leader.lost ?? 'the leadership was not confirmed in time after a commit')
      return
    }
    if (seq > this.committedSeq) this.committedSeq = seq
    if (sync) this.unsynced = false
    else if (this.level === 'timer' && seq > 0) {
      this.unsynced = true
      this.armSync()
    }
    try {
      this.waiters.release(this.committedSeq)
    } finally {
      this.next()
    }
  }

  private failed(err: unknown, batch: Map<number, Pending>, sync: boolean, records: number): void {
    this.inFlight = false
    this.queued += records
    if (sync) this.syncDue = true
    if (err instanceof PgFencedError) {
      this.fence(err.message.replace(/^.*fenced: /, ''), err)
      return
    }
    if (!this.leader.fresh()) {
      this.fence(this.leader.lost ?? 'the leadership was lost while a commit failed', err)
      return
    }
    this.mergeBack(batch)
    const diskFull = (err as { code?: unknown } | null)?.code === DISK_FULL
    if (diskFull) {
      if (!this.noSpace) {
        this.log.error(
          { err, schema: this.schema },
          `postgres store: disk full in PostgreSQL (${(err as Error).message}); refusing puts (OUT_OF_MEMORY) and holding replies until a commit fits; retrying`,
        )
      }
    } else if (!this.stalled) {
      this.log.error(
        { err, schema: this.schema },
        `postgres store: a commit failed (${(err as Error).message}); refusing puts (OUT_OF_MEMORY) and holding replies; retrying`,
      )
    }
    this.stalled = true
    this.noSpace = diskFull
    if (!this.closed) this.retryTimer.arm()
    this.next()
  }

  /** A failed batch's changes back under the newer ones queued since. */
  private mergeBack(batch: Map<number, Pending>): void {
    for (const [id, b] of batch) {
      const p = this.pending.get(id)
      if (p === undefined) this.pending.set(id, b)
      else if (b.op === Op.INSERT && p.op === Op.UPDATE) p.op = Op.INSERT
      else if (b.op === Op.INSERT && p.op === Op.DELETE) this.pending.delete(id)
    }
  }

  /** After a transaction: the next one, or tell closeAsync it is done. */
  private next(): void {
    this.kick()
    if (!this.inFlight && this.idle !== null) {
      const idle = this.idle
      this.idle = null
      idle()
    }
  }

  private retry(): void {
    if (this.closed || this.fenced !== null) return
    this.stalled = false
    this.kick()
  }

  private armSync(): void {
    if (this.syncTimer !== null || this.closed) return
    this.syncTimer = setTimeout(() => {
      this.syncTimer = null
      if (!this.unsynced) return
      this.syncDue = true
      this.kick()
    }, this.opts.fsyncMs)
    this.syncTimer.unref()
  }

  private stopTimers(): void {
    this.retryTimer.cancel()
    if (this.syncTimer !== null) clearTimeout(this.syncTimer)
    this.syncTimer = null
  }

  private fence(reason: string, cause?: unknown): void {
    if (this.fenced !== null) return
    const err = new PgFencedError(this.schema, reason, cause === undefined ? undefined : { cause })
    this.fenced = err
    this.stopTimers()
    this.log.fatal({ err, schema: this.schema, epoch: this.epoch }, `postgres store: fenced (${reason}); acknowledging nothing more`)
    void this.sql.end({ timeout: 0 }).catch(() => undefined)
    if (this.idle !== null) {
      const idle = this.idle
      this.idle = null
      idle()
    }
    const to = this.opts.onFenced ?? this.opts.onFatal
    if (to !== undefined) to(err)
  }

  private fatal(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err))
    this.log.fatal({ err: e }, 'postgres store: fatal error')
    if (this.opts.onFatal === undefined) throw e
    this.opts.onFatal(e)
  }
}

/**
 * One leader per namespace: the process that holds the namespace's
 * PostgreSQL advisory lock serves; the others are standbys that poll for it.
 * The lock lives on a connection of its own (the lock session), which does
 * nothing else.
 *
 * ## Fencing
 *
 * The lock is the session's: it goes when the session ends (the process
 * dies, PostgreSQL ends an idle session after `idle_session_timeout`, the
 * server restarts). A leader must have stopped serving before a standby can
 * hold the lock, so:
 * - it heartbeats every `heartbeatMs`: a query on the lock session that also
 *   checks, in pg_locks, that this same session (its backend pid) still
 *   holds the lock (postgres.js would quietly open a new session after a
 *   lost one);
 * - `fresh()` is true only while the last heartbeat that succeeded was sent
 *   less than `fenceMs` (half the session timeout) ago. PostgreSQL cannot end
 *   the session before `sessionTimeoutMs` after that heartbeat arrived, so
 *   while `fresh()` no standby can hold the lock. The store asks before each
 *   commit and before each reply it releases;
 * - a failed heartbeat, a closed lock connection, or a watchdog that finds
 *   the last success too old calls `onLost` at once (the CLI: exit 15).
 *
 * A paused process (SIGSTOP, a VM freeze) cannot fence itself while it is
 * paused; it loses the session after the timeout, and when it resumes its
 * timers see `fresh()` false before it can reply to anything; a commit it
 * had already sent is ordered before the next leader's takeover by the
 * epoch row lock (schema.ts), so it is in what the next leader replays.
 */
import type { Logger } from 'pino'
import { Readiness, ReadyState } from '../../util/readiness.js'
import { connect, type Sql } from './connect.js'
import { DEFAULT_SESSION_TIMEOUT_MS, LOCK_CLASS, lockKey } from './names.js'

export interface LeaderOptions {
  readonly url: string
  readonly schema: string
  readonly log: Logger
  readonly readiness?: Readiness
  /** How often a standby tries for the lock, ms; default 250. */
  readonly pollMs?: number
  /** idle_session_timeout of the lock session, ms; default 2000. */
  readonly sessionTimeoutMs?: number
  /** Called once when the leadership is lost (after acquire resolved). */
  readonly onLost: (reason: string) => void
}

/**
 * The lock session's statements, with the lock's two int4 halves as literals.
 * They go as simple queries (one message each, no parameters) because
 * postgres.js sends a parameterized statement's first use as Parse, Describe
 * and Flush, and its Bind and Execute only once the answer is back: a leader
 * paused in between (SIGSTOP, a VM freeze) leaves its backend waiting for the
 * rest without having sent ReadyForQuery, and PostgreSQL starts no
 * idle_session_timeout there, so the lock (and the namespace) would be held
 * until the leader resumed. A simple query always ends in ReadyForQuery.
 */
function lockSessionSql(key: number): { tryLock: string; heartbeat: string; unlock: string } {
  // Both halves are non-negative 31-bit integers (names.ts): safe as literals.
  const lock = `${LOCK_CLASS}::int4, ${key}::int4`
  const held = `locktype = 'advisory' AND classid = ${LOCK_CLASS}::int4::oid AND objid = ${key}::int4::oid AND objsubid = 2`
  return {
    tryLock: `SELECT pg_try_advisory_lock(${lock}) AS got, pg_backend_pid() AS pid`,
    heartbeat: `SELECT pg_backend_pid() AS pid, EXISTS (SELECT 1 FROM pg_locks WHERE ${held} AND granted AND pid = pg_backend_pid()) AS held`,
    unlock: `SELECT pg_advisory_unlock(${lock})`,
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export class Leader {
  readonly schema: string
  readonly sessionTimeoutMs: number
  /** The lock session's backend pid (pg_stat_activity, pg_locks). */
  pid = 0
  private readonly sql: Sql
  private readonly opts: LeaderOptions
  private readonly key: number
  /** The lock session's statements (see `lockSessionSql`). */
  private readonly text: ReturnType<typeof lockSessionSql>
  private readonly heartbeatMs: number
  private readonly fenceMs: number
  private leading = false
  private lostReason: string | null = null
  private lastOk = -Infinity
  private beating = false
  private heartbeat: NodeJS.Timeout | null = null
  private watchdog: NodeJS.Timeout | null = null
  private stopped = false

  private constructor(o: LeaderOptions) {
    this.opts = o
    this.schema = o.schema
    this.key = lockKey(o.schema)
    this.text = lockSessionSql(this.key)
    this.sessionTimeoutMs = o.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS
    this.fenceMs = Math.floor(this.sessionTimeoutMs / 2)
    this.heartbeatMs = Math.max(20, Math.min(200, Math.floor(this.sessionTimeoutMs / 10)))
    this.sql = connect({
      url: o.url,
      schema: o.schema,
      sessionTimeoutMs: this.sessionTimeoutMs,
      settings: { idle_session_timeout: String(this.sessionTimeoutMs) },
      onclose: () => {
        if (this.leading) this.lose('the lock session closed')
      },
    })
  }

  /** Waits (as a standby) until this process holds the lock; then heartbeats. */
  static async acquire(o: LeaderOptions): Promise<Leader> {
    const l = new Leader(o)
    await l.waitForLock()
    return l
  }

  /** The leadership is certainly still ours (see the header). */
  fresh(): boolean {
    return this.leading && this.lostReason === null && performance.now() - this.lastOk < this.fenceMs
  }

  /** Why the leadership was lost, or null. */
  get lost(): string | null {
    return this.lostReason
  }

  /** Unlocks and closes the lock session (a clean stop: a standby takes over at its next poll). */
  async release(): Promise<void> {
    this.stopped = true
    this.leading = false
    this.stopTimers()
    try {
      await this.sql.unsafe(this.text.unlock)
    } catch {
      // The session may be gone already; then so is the lock.
    }
    await this.sql.end({ timeout: 1 }).catch(() => undefined)
  }

  /** Ends the lock session without a word (a failed start). */
  abandon(): void {
    this.stopped = true
    this.leading = false
    this.stopTimers()
    void this.sql.end({ timeout: 0 }).catch(() => undefined)
  }

  private async waitForLock(): Promise<void> {
    const log = this.opts.log
    const poll = this.opts.pollMs ?? 250
    let told: 'standby' | 'unreachable' | null = null
    const t0 = performance.now()
    for (;;) {
      if (this.stopped) throw new Error('postgres leader: stopped while waiting for the lock')
      const sent = performance.now()
      try {
        const [r] = await this.sql.unsafe(this.text.tryLock)
        if (r!['got'] === true) {
          this.pid = Number(r!['pid'])
          this.lastOk = sent
          this.leading = true
          this.startTimers()
          log.info(
            { schema: this.schema, lockPid: this.pid, waitedMs: Math.round(performance.now() - t0) },
            `postgres: leader of schema ${this.schema} (advisory lock ${LOCK_CLASS},${this.key} held)`,
          )
          return
        }
        if (told !== 'standby') {
          told = 'standby'
          const who = await this.holder()
          log.info(
            { schema: this.schema, leader: who },
            `postgres: standby: another tsbeanstalkd leads schema ${this.schema}; not listening for clients; polling every ${poll} ms`,
          )
          this.opts.readiness?.set(ReadyState.STANDBY, `another process leads schema ${this.schema}${who === null ? '' : ` (${who})`}`)
        }
      } catch (err) {
        if (told !== 'unreachable') {
          told = 'unreachable'
          log.error({ err, schema: this.schema }, `postgres: standby: cannot reach PostgreSQL (${(err as Error).message}); retrying every ${poll} ms`)
          this.opts.readiness?.set(ReadyState.STANDBY, `cannot reach PostgreSQL: ${(err as Error).message}`)
        }
      }
      await sleep(poll)
    }
  }

  /** Who holds the lock now (client address and application), for the standby's log line. */
  private async holder(): Promise<string | null> {
    try {
      const rows = await this.sql`
        SELECT a.pid, a.client_addr::text AS addr, a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.classid = ${LOCK_CLASS}::int4::oid AND l.objid = ${this.key}::int4::oid AND l.objsubid = 2 AND l.granted`
      const r = rows[0]
      return r === undefined ? null : `pid ${String(r['pid'])} from ${r['addr'] === null ? 'a Unix socket' : String(r['addr'])}`
    } catch {
      return null
    }
  }

  private startTimers(): void {
    this.heartbeat = setInterval(() => this.beat(), this.heartbeatMs)
    this.watchdog = setInterval(() => {
      if (this.leading && !this.fresh()) this.lose(`no heartbeat answer from PostgreSQL for ${Math.round(performance.now() - this.lastOk)} ms`)
    }, Math.max(10, Math.floor(this.heartbeatMs / 2)))
  }

  private stopTimers(): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat)
    if (this.watchdog !== null) clearInterval(this.watchdog)
    this.heartbeat = this.watchdog = null
  }

  private beat(): void {
    if (!this.leading || this.beating) return
    this.beating = true
    const sent = performance.now()
    this.sql
      .unsafe(this.text.heartbeat)
      .then(([r]) => {
        this.beating = false
        if (!this.leading) return
        if (Number(r!['pid']) !== this.pid || r!['held'] !== true) this.lose('the lock session was replaced: the advisory lock is no longer held')
        else if (sent > this.lastOk) this.lastOk = sent
      })
      .catch((err: unknown) => {
        this.beating = false
        if (this.leading) this.lose(`the lock session failed: ${(err as Error).message}`)
      })
  }

  private lose(reason: string): void {
    if (this.lostReason !== null) return
    this.lostReason = reason
    this.leading = false
    this.stopTimers()
    void this.sql.end({ timeout: 0 }).catch(() => undefined)
    this.opts.onLost(reason)
  }
}

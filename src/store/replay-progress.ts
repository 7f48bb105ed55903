/**
 * How a long replay stays visible and lets the process breathe, the same for
 * every engine: the engine counts what it has read into this object, asks
 * `due()` every few hundred records and, when it says so, awaits `pause()`.
 *
 * Invariants:
 * - A replay never runs more than about YIELD_MS without giving the event
 *   loop a turn (setImmediate: pending I/O, such as an HTTP /readyz request,
 *   runs first), so the process answers while it replays.
 * - Every pause reports the counts to the Readiness, which the engine sets
 *   to `replaying` at the start; a log line goes out at most every
 *   `progressMs` (files, records, jobs, rate, time left), so a replay that
 *   takes seconds says so, and a short one logs only its summary.
 * - `due()` reads the clock only on every CHECK_EVERY-th call: the cost per
 *   record is a counter increment.
 */
import type { Logger } from 'pino'
import type { Clock } from '../util/clock.js'
import { ReadyState, type Readiness, type ReplayProgress } from '../util/readiness.js'

const YIELD_MS = 50
const CHECK_EVERY = 256
const DEFAULT_LOG_MS = 5000

export interface ReplayTotals {
  readonly filesTotal: number
  readonly bytesTotal: number
  /** Records to read, where the engine knows it up front (0 where it does not). */
  readonly recordsTotal: number
}

export interface ReplayMeterOptions {
  readonly readiness?: Readiness | undefined
  /** Log a progress line at most this often, ms (default 5000). */
  readonly progressMs?: number | undefined
  /** Pause after this long without one, ms (default 50; tests: 0 pauses every CHECK_EVERY records). */
  readonly yieldMs?: number | undefined
}

/** What an engine's restore takes (binlog/restore.ts, sqlite/restore.ts; each adds its own). */
export interface RestoreOptions extends ReplayMeterOptions {
  readonly clock: Clock
  /** Wall-clock ms: read once, with the clock, to turn stored times monotonic. */
  readonly wall: () => number
  readonly log: Logger
  /** -z: bodies over it still replay, counted for a warning. */
  readonly maxJobSize: number
}

export class ReplayMeter {
  files = 0
  bytes = 0
  records = 0
  jobs = 0
  private readonly totals: ReplayTotals
  private readonly log: Logger
  private readonly what: string
  private readonly readiness: Readiness | undefined
  private readonly logMs: number
  private readonly yieldMs: number
  private readonly started = performance.now()
  private lastYield = this.started
  private lastLog = this.started
  private calls = 0

  /** `what` names the engine in the log lines ("binlog", "sqlite store"). */
  constructor(what: string, totals: ReplayTotals, log: Logger, o: ReplayMeterOptions = {}) {
    this.what = what
    this.totals = totals
    this.log = log
    this.readiness = o.readiness
    this.logMs = o.progressMs ?? DEFAULT_LOG_MS
    this.yieldMs = o.yieldMs ?? YIELD_MS
    // A SIGUSR1 during the start has said draining already: that stays (it is not ready either way).
    if (this.readiness !== undefined && this.readiness.state !== ReadyState.DRAINING) this.readiness.set(ReadyState.REPLAYING)
    this.report()
  }

  /** True when the replay has run long enough without a pause. */
  due(): boolean {
    if (++this.calls % CHECK_EVERY !== 0) return false
    return performance.now() - this.lastYield >= this.yieldMs
  }

  /** Gives the event loop a turn, reporting progress first. */
  async pause(): Promise<void> {
    const now = performance.now()
    this.report()
    if (now - this.lastLog >= this.logMs) {
      this.lastLog = now
      this.log.info(this.fields(now), `${this.what}: replaying`)
    }
    await new Promise<void>((resolve) => setImmediate(resolve))
    this.lastYield = performance.now()
  }

  /** The final counts, for the Readiness and the summary line. */
  finish(): { seconds: number } {
    this.report()
    return { seconds: Math.round(performance.now() - this.started) / 1000 }
  }

  private report(): void {
    const p: ReplayProgress = {
      files: this.files,
      filesTotal: this.totals.filesTotal,
      bytes: this.bytes,
      bytesTotal: this.totals.bytesTotal,
      records: this.records,
      jobs: this.jobs,
    }
    this.readiness?.reportReplay(p)
  }

  private fields(now: number): Record<string, number> {
    const secs = (now - this.started) / 1000
    const t = this.totals
    // Time left from the share done so far: bytes where the engine knows the total, else records.
    const done = t.bytesTotal > 0 ? this.bytes / t.bytesTotal : t.recordsTotal > 0 ? this.records / t.recordsTotal : 0
    const out: Record<string, number> = {
      files: this.files,
      filesTotal: t.filesTotal,
      bytes: this.bytes,
      bytesTotal: t.bytesTotal,
      records: this.records,
      jobs: this.jobs,
      recordsPerSec: Math.round(this.records / Math.max(secs, 0.001)),
      seconds: Math.round(secs * 10) / 10,
    }
    if (t.recordsTotal > 0) out['recordsTotal'] = t.recordsTotal
    if (done > 0) {
      out['percent'] = Math.floor(done * 100)
      out['secondsLeft'] = Math.round((secs * (1 - done)) / done)
    }
    return out
  }
}

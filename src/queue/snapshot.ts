/**
 * The queue's figures, read in one place: `stats` and `stats-tube` format
 * them as YAML (protocol/replies.ts) and `/metrics` as Prometheus text
 * (http/metrics.ts), so a metric and a stats key can never disagree (the
 * reference prints its stats from one struct too, dat.h).
 *
 * Every figure is a counter or gauge the registry and its tubes already keep
 * current; reading them costs nothing on the command path. `tubeFigures` is
 * O(1) per tube plus the wide waiters (`current-waiting`, as stats-tube).
 */
import type { Registry } from './registry.js'
import type { Tube } from './tube.js'

/** Whole seconds between two monotonic ms values, truncated toward zero like C. */
export const secs = (ms: number): number => Math.trunc(ms / 1000) || 0
/**
 * Whole seconds until `at`, as the reference divides nanoseconds: its clock
 * has always moved on since it set the deadline, so right after a reserve
 * with ttr 2 it says 1. The clock here counts whole milliseconds and can read
 * the same value twice, which would say 2: count from just after `now`.
 */
export const secsLeft = (at: number, now: number): number => secs(at - now - 1)

/** The server-wide job, tube and connection figures of `stats`. */
export interface QueueTotals {
  readonly urgent: number
  readonly ready: number
  readonly reserved: number
  readonly delayed: number
  readonly buried: number
  /** job-timeouts: TTRs that ran out. */
  readonly timeouts: number
  readonly totalJobs: number
  readonly tubes: number
  readonly connections: number
  readonly producers: number
  readonly workers: number
  readonly waiting: number
  readonly totalConnections: number
  readonly draining: boolean
}

export function queueTotals(r: Registry): QueueTotals {
  return {
    urgent: r.urgentCount,
    ready: r.readyCount,
    reserved: r.reservedCount,
    delayed: r.delayedCount,
    buried: r.buriedCount,
    timeouts: r.timeouts,
    totalJobs: r.totalJobs,
    tubes: r.tubes.size,
    connections: r.sessionCount,
    producers: r.producers,
    workers: r.workers,
    waiting: r.waitingCount,
    totalConnections: r.totalSessions,
    draining: r.draining,
  }
}

/** One tube's figures: those of `stats-tube`, plus what /metrics adds. */
export interface TubeFigures {
  readonly name: string
  readonly urgent: number
  readonly ready: number
  readonly reserved: number
  readonly delayed: number
  readonly buried: number
  readonly totalJobs: number
  readonly using: number
  readonly watching: number
  readonly waiting: number
  readonly cmdDelete: number
  readonly cmdPause: number
  /** Whole seconds of the last pause-tube. */
  readonly pause: number
  readonly pauseTimeLeft: number
  /** Not in stats-tube: TTRs that ran out on jobs of this tube. */
  readonly timeouts: number
  /** Not in stats-tube: jobs buried in this tube (each bury counts). */
  readonly buries: number
  /**
   * Not in stats-tube: the age in ms (stats-job `age`) of the job a reserve
   * would get next, the head of the ready heap (lowest priority value, then
   * lowest id); -1 with nothing ready. With one priority in the tube that is
   * the oldest ready job. O(1): finding the oldest across priorities would
   * take a scan of the heap or a second index kept on every command.
   */
  readonly nextReadyAgeMs: number
}

export function tubeFigures(r: Registry, t: Tube, now: number): TubeFigures {
  const head = t.ready.peek()
  return {
    name: t.name,
    urgent: t.urgentCount,
    ready: t.ready.size + t.parked,
    reserved: t.reservedCount,
    delayed: t.delayed.size + t.held,
    buried: t.buried.size,
    totalJobs: t.totalJobs,
    using: t.usingCount,
    watching: t.watchingCount,
    waiting: r.waitingOn(t),
    cmdDelete: t.cmdDelete,
    cmdPause: t.cmdPause,
    pause: t.pauseSecs,
    pauseTimeLeft: t.paused ? Math.max(0, secsLeft(t.pauseUntil, now)) : 0,
    timeouts: t.timeouts,
    buries: t.buries,
    nextReadyAgeMs: head === undefined ? -1 : Math.max(0, now - head.createdAt),
  }
}

/**
 * What the registry tells a persistence engine (the binlog) about every
 * state change, synchronously, after the job's fields are updated. Declared
 * here so the queue does not depend on any engine.
 */
import type { Job } from './job.js'

export interface Journal {
  /** Whether a put would be accepted now (false: the disk is full -> OUT_OF_MEMORY). */
  canPut(): boolean
  /** A new job (ready or delayed). */
  put(job: Job): boolean
  /** Reserve, release, bury, kick, TTR timeout: state, priority or counters changed. */
  update(job: Job): void
  delete(job: Job): void
  /** A job restored from the journal now lives in the registry as `job`. */
  adopt(job: Job): void
  /** stats-job `file`. */
  fileOf(jobId: number): number
}

/** A job as a journal gives it back at start (times already on the monotonic clock). */
export interface RestoredJob {
  readonly id: number
  readonly tube: string
  readonly pri: number
  readonly delayMs: number
  readonly ttrMs: number
  /** Including the trailing CRLF. */
  readonly body: Buffer
  /** Reserved jobs come back ready, and so do delayed ones whose time has passed. */
  readonly state: 'ready' | 'delayed' | 'buried'
  /** Monotonic ms; negative for jobs older than this process. */
  readonly createdAt: number
  /** Delayed: when it becomes ready (monotonic ms); otherwise 0. */
  readonly deadline: number
  readonly reserves: number
  readonly timeouts: number
  readonly releases: number
  readonly buries: number
  readonly kicks: number
}

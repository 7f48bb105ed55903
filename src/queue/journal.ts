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
  /** --extensions fan-out: new jobs, consecutive ids, stored all or none (one record where the engine can). */
  putAll?(jobs: readonly Job[]): boolean
  /** Reserve, release, bury, kick, TTR timeout: state, priority or counters changed. */
  update(job: Job): void
  delete(job: Job): void
  /**
   * --extensions flush-tube/delete-tube: the jobs of one slice, already
   * deleted, stored as one record where the engine can (all or none); an
   * engine without it gets a `delete` per job.
   */
  deleteMany?(jobs: readonly Job[]): void
  /** --extensions: a tube name's policy was set, changed or cleared (all zeros). */
  policy?(p: RestoredPolicy): void
  /** stats-job `file`. */
  fileOf(jobId: number): number
}

/**
 * A job's fields as a journal hands them back at start (store.ts: the
 * ReplaySink's calls). One object may be reused for every call.
 */
export interface RestoredFields {
  id: number
  /** As stored: the JobState numbers READY, RESERVED (comes back ready), BURIED, DELAYED. */
  state: number
  pri: number
  delayMs: number
  ttrMs: number
  /** Monotonic ms; negative for jobs older than this process. */
  createdAt: number
  /** Delayed: when it becomes ready (monotonic ms); otherwise 0. */
  deadline: number
  reserves: number
  timeouts: number
  releases: number
  buries: number
  kicks: number
}

/**
 * A tagged job's extension tags as a journal hands them back (--extensions;
 * queue/extensions/). `after` is the group named by aft: at the put;
 * `afterDone` says it was satisfied (the job was ready once) and never holds
 * the job again.
 */
export interface RestoredTags {
  idpKey: string | null
  idpTtl: number
  group: string | null
  after: string | null
  afterDone: boolean
  conKey: string | null
  conLimit: number
}

/** A tube policy (tube-policy, --extensions) as a journal stores it and hands it back; zeros clear it. */
export interface RestoredPolicy {
  readonly tube: string
  readonly maxRetries: number
  readonly deadLetter: string | null
  readonly maxJobs: number
  /** fan-out targets; empty: none. */
  readonly fanOut: readonly string[]
}

/** A stored policy that sets nothing: the tube has no policy (any more). */
export const noPolicy = (p: RestoredPolicy): boolean => p.maxRetries === 0 && p.maxJobs === 0 && p.fanOut.length === 0

/** An idempotency key's cooldown after its job's delete (idp:<key>:<ttl>), as stored. */
export interface RestoredTombstone {
  readonly tube: string
  readonly key: string
  /** The deleted job's id, which the key keeps answering with. */
  readonly id: number
  readonly ttlSecs: number
  /** When it runs out, monotonic ms (already past: the journal skips it). */
  readonly expiresAt: number
}

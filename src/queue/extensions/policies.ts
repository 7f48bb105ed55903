/**
 * Tube policies (--extensions): `tube-policy` and the config file's
 * `[[tube_policy]]` tables. A policy belongs to a tube name, not to a tube
 * object: it outlives the tube's coming and going (a tube exists only while
 * something references it) and may be set before the tube exists.
 *
 * - max-retries n: when a job's timeouts + releases reach n, the release or
 *   TTR timeout that got it there buries it, or moves it to the dead-letter
 *   tube (a new job there, with the same body, priority, TTR and counters;
 *   the original is deleted in the same journal write, after the copy).
 * - max-jobs n: a put into the tube while it holds n jobs answers TUBE_FULL.
 * n = 0 turns either off.
 * - fan-out t1,t2...: a put into the tube puts one copy into each target
 *   instead (consecutive ids, all or none, one journal write); the source
 *   itself gets none.
 */
export class TubePolicy {
  readonly tube: string
  maxRetries = 0
  deadLetter: string | null = null
  maxJobs = 0
  /** fan-out targets, in order; empty: none. */
  fanOut: readonly string[] = []
  /** Jobs buried or moved by max-retries since start. */
  retired = 0
  /** Puts refused by max-jobs since start. */
  refused = 0
  constructor(tube: string) {
    this.tube = tube
  }
  /** Nothing is set: the policy can go. */
  get empty(): boolean {
    return this.maxRetries === 0 && this.maxJobs === 0 && this.fanOut.length === 0
  }
}

/** Where a dead-lettered job came from (stats-job with --extensions). */
export interface DeadLetterOrigin {
  readonly tube: string
  readonly id: number
}

/** A policy as the config file gives it (`[[tube_policy]]`, config-file.ts). */
export type { RestoredPolicy as TubePolicySpec } from '../journal.js'

/**
 * What a tagged job (--extensions) carries: its idempotency entry, the group
 * it belongs to, the group it waits for, and its concurrency key. Plain data;
 * the indexes in this folder keep the counts that hang off it.
 *
 * Invariants:
 * - `after` is the group the job still waits for: non-null from its put until
 *   it first becomes ready (or is deleted); once satisfied it stays null, so a
 *   group that fills up again never holds the job a second time.
 * - While `group` and `after` are both set, `group.waitsOn` counts this job
 *   once under `after` (the cycle check's edge).
 */
import type { ConKey } from './concurrency.js'
import type { Group } from './groups.js'
import type { IdpEntry } from './idempotency.js'

export class JobExt {
  idp: IdpEntry | null = null
  group: Group | null = null
  after: Group | null = null
  /** The aft: group as put, kept once satisfied (journals store it with `after === null` as done). */
  afterName: string | null = null
  con: ConKey | null = null
  /** con:<key>:<n>. */
  conLimit = 1
}

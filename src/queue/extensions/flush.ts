/**
 * flush-tube and delete-tube (--extensions): delete a tube's jobs (or those
 * in one state) a slice at a time, so a tube of millions never holds the
 * event loop: each `step` visits at most SLICE job slots and returns, and the
 * caller runs the next step on a later turn, after other clients' commands.
 *
 * Invariants:
 * - Only jobs that existed when the flush began are deleted (ids below the
 *   next id then): a producer putting into the tube meanwhile cannot keep a
 *   flush going forever, and its jobs stay.
 * - A slice's jobs are deleted together after its walk and journaled as one
 *   record (Journal.deleteMany; DELETE_MANY in the binlog, one statement in
 *   SQLite), in the turn they go: one record and one write per slice, not
 *   one per job.
 * - A job that changed state meanwhile is deleted only if it is still in the
 *   state flushed (any state for a whole-tube flush).
 */
import { ListState } from '../../protocol/admin-verbs.js'
import { JobState, type Job } from '../job.js'
import type { JobWalk } from '../job-table.js'
import type { Registry } from '../registry.js'
import type { Tube } from '../tube.js'

/** Job slots one step visits (a slot is an id; empty ones are cheap). */
export const SLICE = 2048

export class TubeFlush {
  private readonly r: Registry
  readonly tube: Tube
  private readonly state: ListState
  private readonly below: number
  private readonly walk: JobWalk
  /** Jobs deleted so far. */
  deleted = 0

  constructor(r: Registry, tube: Tube, state: ListState) {
    this.r = r
    this.tube = tube
    this.state = state
    this.below = r.nextId
    this.walk = r.jobs.walk()
  }

  /** The jobs of the slice being walked, deleted once it is. */
  private batch: Job[] = []

  /** Deletes the next slice; false once the whole table has been visited. */
  step(): boolean {
    const more = this.walk.step(SLICE, this.visit)
    const batch = this.batch
    this.batch = []
    // Mirroring a slice's removals into list-jobs' index would double a
    // flush's cost; a later page rebuilds the index from what is left.
    const s = this.state
    if (s === ListState.ALL || s === ListState.READY) this.tube.ready.dropBrowseIndex()
    if (s === ListState.ALL || s === ListState.DELAYED) this.tube.delayed.dropBrowseIndex()
    this.r.removeAll(batch)
    this.deleted += batch.length
    this.r.compactSome()
    return more
  }

  private readonly visit = (j: Job): void => {
    if (j.tube !== this.tube || j.id >= this.below) return
    const s = this.state
    // A held after-job reads as delayed (stats-job, stats-tube).
    if (s !== ListState.ALL && j.state !== s && !(s === ListState.DELAYED && j.state === JobState.HELD)) return
    this.batch.push(j)
  }
}

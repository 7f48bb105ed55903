/**
 * The queue side of the extensions (--extensions): tagged puts, and the
 * registry's hooks for tagged jobs (RegistryExtension), over the three
 * indexes of this folder: idempotency keys, groups, concurrency keys.
 * Installed as `registry.ext` by the server only with the switch on.
 *
 * Invariants (beyond those of each index):
 * - Every tagged job's JobExt is attached before the job enters the queue
 *   (Registry.admit), so every hook sees the job's counts from its start.
 * - An after-job's hold is decided in holdsBack, the one door to the ready
 *   state: a job becomes ready only when its group is complete, and is then
 *   satisfied for good.
 * - A held job's group completing releases it, journaled, in hold order.
 * - A satisfied after-job is journaled as such (so a restart never holds it
 *   again): at its put within the put's record, otherwise by an update right
 *   after it is placed, or, during a restore (no journal yet), once the
 *   server hands the registry its journal (journalRestored).
 */
import { MIN_TTR_MS, Reply } from '../../protocol/constants.js'
import type { PutTags } from '../../protocol/extensions.js'
import type { RestoredTags, RestoredTombstone } from '../journal.js'
import type { Slab } from '../body-arena.js'
import { Job, JobState } from '../job.js'
import type { Registry, RegistryExtension } from '../registry.js'
import type { Session } from '../session.js'
import { ConcurrencyKeys } from './concurrency.js'
import { Group, Groups } from './groups.js'
import { IdempotencyIndex, type IdpEntry } from './idempotency.js'
import { JobExt } from './job-ext.js'
import { weightedPick, type Random } from './weighted.js'

/** The reply word of a dedup hit, by the original job's state (HELD reads as DELAYED, as in tuber). */
const DUP_STATE = ['', 'READY', 'RESERVED', 'BURIED', 'DELAYED', 'DELAYED'] as const

/** What a tagged put came to. */
export type TaggedPut =
  | { readonly kind: 'inserted'; readonly job: Job }
  /** An idempotency key already taken: the original's id and its state word (or DELETED). */
  | { readonly kind: 'duplicate'; readonly id: number; readonly state: string }
  /** A refusal: OUT_OF_MEMORY (no room in the journal) or GROUP_CYCLE. */
  | { readonly kind: 'refused'; readonly reply: Buffer }

/** aft:<a> grp:<b> that would wait for itself through groups: nothing is kept. */
export const GROUP_CYCLE = Buffer.from('GROUP_CYCLE\r\n', 'latin1')

export class QueueExtensions implements RegistryExtension {
  readonly idempotency: IdempotencyIndex
  readonly groups = new Groups()
  readonly keys: ConcurrencyKeys
  private readonly r: Registry
  private readonly random: Random
  /** The job being put: its satisfaction is in its put's record. */
  private admitting: Job | null = null
  /** Satisfied in holdsBack, to be journaled once placed (placeReady comes right after). */
  private satisfiedNow: Job | null = null
  /** Satisfied while restoring, before there was a journal. */
  private unrecorded: Job[] = []

  constructor(registry: Registry, random: Random = Math.random) {
    this.r = registry
    this.random = random
    this.idempotency = new IdempotencyIndex(registry.wheel)
    this.keys = new ConcurrencyKeys((t) => registry.refreshTube(t))
  }

  /**
   * A put with tags whose body was read into `slab` at `off`. The slab space
   * is released unless a job keeps it.
   */
  put(s: Session, id: number, pri: number, delaySecs: number, ttrSecs: number, slab: Slab, off: number, len: number, tags: PutTags): TaggedPut {
    const r = this.r
    const now = r.clock.now()
    // A body that spanned reads had its job shown meanwhile (peek, stats-job): this is it.
    const early = r.endArriving(id)
    const refuse = (reply: Buffer): TaggedPut => {
      r.bodies.release(slab, len)
      return { kind: 'refused', reply }
    }
    if (tags.idpKey !== null) {
      const e = this.idempotency.find(s.used.name, tags.idpKey, now)
      if (e !== undefined) {
        r.bodies.release(slab, len)
        return { kind: 'duplicate', id: e.id, state: e.job === null ? 'DELETED' : DUP_STATE[e.job.state] }
      }
    }
    if (tags.after !== null && tags.group !== null && this.closesCycle(tags.after, tags.group, delaySecs > 0)) return refuse(GROUP_CYCLE)
    if (r.journal !== null && !r.journal.canPut()) return refuse(Reply.OUT_OF_MEMORY)
    const job = early ?? new Job(id, pri, delaySecs * 1000, Math.max(ttrSecs * 1000, MIN_TTR_MS), slab, off, len, s.used, now)
    this.attach(job, tags)
    this.admitting = job
    try {
      r.admit(job, now)
    } finally {
      this.admitting = null
    }
    return { kind: 'inserted', job }
  }

  /** A restored job's tags (Registry.restoreEnd, before it places the job). */
  restoreTags(job: Job, tags: RestoredTags): void {
    this.attach(job, tags)
    const x = job.ext!
    if (tags.afterDone && x.after !== null) this.unwait(x, x.after)
  }

  restoreTombstone(t: RestoredTombstone): void {
    this.idempotency.restoreTombstone(t.tube, t.key, t.id, t.ttlSecs, t.expiresAt, this.r.clock.now())
  }

  /** The registry has its journal now: the after-jobs a restore satisfied are recorded so. */
  journalRestored(): void {
    const journal = this.r.journal
    if (journal === null) return
    for (const j of this.unrecorded) if (j.state !== JobState.INVALID) journal.update(j)
    this.unrecorded = []
  }

  /** The group's figures for stats-group, or undefined for a name no job refers to. */
  group(name: string): Group | undefined {
    return this.groups.find(name)
  }

  // --- RegistryExtension ---------------------------------------------------------

  holdsBack(j: Job): boolean {
    const x = j.ext!
    const after = x.after
    if (after === null) return false
    if (!after.complete) {
      j.state = JobState.HELD
      after.held.append(j)
      j.tube.held++
      this.r.delayedCount++
      return true
    }
    // Satisfied for good: a later member of the group does not hold it again.
    this.unwait(x, after)
    if (j !== this.admitting) this.satisfiedNow = j
    return false
  }

  placeReady(j: Job): void {
    const x = j.ext!
    if (x.con === null) j.tube.ready.push(j)
    else this.keys.place(x.con, j)
    if (this.satisfiedNow === j) {
      this.satisfiedNow = null
      if (this.r.journal === null) this.unrecorded.push(j)
      else this.r.journal.update(j)
    }
  }

  unplaceReady(j: Job): void {
    const x = j.ext!
    if (x.con === null) j.tube.ready.remove(j)
    else this.keys.unplace(x.con, j)
  }

  reserved(j: Job): void {
    const k = j.ext!.con
    if (k !== null) this.keys.reserved(k)
  }

  unreserved(j: Job): void {
    const k = j.ext!.con
    if (k !== null) this.keys.unreserved(k)
  }

  buried(j: Job, on: boolean): void {
    const g = j.ext!.group
    if (g !== null) g.buried += on ? 1 : -1
  }

  unhold(j: Job): void {
    j.ext!.after!.held.unlink(j)
    j.tube.held--
    this.r.delayedCount--
  }

  deleted(j: Job): void {
    const x = j.ext!
    if (x.idp !== null) this.idempotency.jobDeleted(x.idp, this.r.clock.now())
    if (x.con !== null) this.keys.detach(x.con, x.conLimit)
    if (x.after !== null) this.unwait(x, x.after)
    const g = x.group
    if (g !== null) {
      g.members--
      if (g.complete) this.release(g)
      this.groups.dropIfIdle(g)
    }
  }

  mayReserve(j: Job): boolean {
    const x = j.ext!
    return j.state !== JobState.HELD && (x.con === null || !x.con.blocked)
  }

  weightedPick(s: Session): Job | undefined {
    return weightedPick(s, this.random)
  }

  // --- internals -------------------------------------------------------------------

  /**
   * aft:<after> grp:<group> waits for itself: its own group, or `after`
   * waits (through groups) for `group`, and the job will wait for `after`
   * (it is incomplete now, or the job is delayed and will be decided later).
   */
  private closesCycle(after: string, group: string, delayed: boolean): boolean {
    if (after === group) return true
    const a = this.groups.find(after)
    if (a === undefined || (a.complete && !delayed)) return false
    return Groups.closesCycle(after, group, (n) => this.groups.find(n))
  }

  private attach(job: Job, tags: Omit<PutTags, 'afterDone'>): void {
    const x = new JobExt()
    if (tags.idpKey !== null) x.idp = this.idempotency.add(job, tags.idpKey, tags.idpTtl)
    if (tags.conKey !== null) {
      x.con = this.keys.attach(tags.conKey, tags.conLimit)
      x.conLimit = tags.conLimit
    }
    if (tags.group !== null) {
      x.group = this.groups.get(tags.group)
      x.group.members++
    }
    if (tags.after !== null) {
      x.afterName = tags.after
      x.after = this.groups.get(tags.after)
      x.after.afterRefs++
      if (x.group !== null) Groups.edge(x.group, x.after, 1)
    }
    job.ext = x
  }

  /** The job no longer waits for `after` (satisfied, or deleted). */
  private unwait(x: JobExt, after: Group): void {
    x.after = null
    after.afterRefs--
    if (x.group !== null) Groups.edge(x.group, after, -1)
    this.groups.dropIfIdle(after)
  }

  /** `g` completed: its held after-jobs become ready, in hold order. */
  private release(g: Group): void {
    const r = this.r
    for (let j = g.held.head; j !== null; j = g.held.head) {
      this.unhold(j)
      r.releaseHeld(j)
      r.journal?.update(j)
    }
  }
}

export type { IdpEntry }

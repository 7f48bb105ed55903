/**
 * A job and its intrusive links. A job is in exactly one place at a time:
 * its tube's ready heap, its tube's delay heap, the reserving session's
 * deadline heap (all through `heapIndex`), or its tube's buried list (through
 * `prev`/`next`, which otherwise link the session's reserved jobs in reserve
 * order). Its one timer (delay end or TTR end) lives in the same object.
 * With the extensions a job may carry tags (JobExt, kept with the rarer
 * counters so an untagged job pays no field for them); a held after-job
 * (aft:, state HELD) sits in its group's list through `prev`/`next`, and a
 * ready job hidden behind its concurrency key sits in the key's lane heap
 * through `heapIndex` (queue/extensions/).
 */
import type { BodyHolder, Slab } from './body-arena.js'
import type { JobExt } from './extensions/job-ext.js'
import type { DeadLetterOrigin } from './extensions/policies.js'
import type { HeapItem } from './heap.js'
import type { TimerEntry } from './timing-wheel.js'
import type { Tube } from './tube.js'
import type { Session } from './session.js'

export const JobState = {
  INVALID: 0,
  READY: 1,
  RESERVED: 2,
  BURIED: 3,
  DELAYED: 4,
  /** Extensions: an after-job (aft:) waiting for its group; shown as delayed (tuber does the same). */
  HELD: 5,
} as const
export type JobState = (typeof JobState)[keyof typeof JobState]

export const STATE_NAMES = ['invalid', 'ready', 'reserved', 'buried', 'delayed', 'delayed'] as const

/** Called when a job's timer fires; the registry implements it. */
export interface JobTimerHandler {
  jobTimerFired(job: Job, nowMs: number): void
}

export class Job implements HeapItem, TimerEntry, BodyHolder {
  readonly id: number
  pri: number
  /** Last delay asked for (put or release), ms. */
  delayMs: number
  readonly ttrMs: number
  /** The body including its trailing CRLF, stored once in a shared slab. */
  slab: Slab
  bodyOff: number
  readonly bodyLen: number
  readonly tube: Tube
  readonly createdAt: number
  state: JobState = JobState.INVALID
  /** Delayed: when it becomes ready; reserved: when its TTR runs out (monotonic ms). */
  deadline = 0
  reserver: Session | null = null

  reserves = 0
  /** The rarer counters, allocated on first use: most jobs never need them (memory per job). */
  private history: JobHistory | null = null

  heapIndex = -1
  prev: Job | null = null
  next: Job | null = null

  timerAt = 0
  timerPrev: TimerEntry | null = null
  timerNext: TimerEntry | null = null
  timerSlot = -1

  constructor(
    id: number,
    pri: number,
    delayMs: number,
    ttrMs: number,
    slab: Slab,
    bodyOff: number,
    bodyLen: number,
    tube: Tube,
    now: number,
  ) {
    this.id = id
    this.pri = pri
    this.delayMs = delayMs
    this.ttrMs = ttrMs
    this.slab = slab
    this.bodyOff = bodyOff
    this.bodyLen = bodyLen
    this.tube = tube
    this.createdAt = now
  }

  get timeouts(): number {
    return this.history === null ? 0 : this.history.timeouts
  }
  set timeouts(n: number) {
    if (n !== 0 || this.history !== null) this.hist().timeouts = n
  }
  get releases(): number {
    return this.history === null ? 0 : this.history.releases
  }
  set releases(n: number) {
    if (n !== 0 || this.history !== null) this.hist().releases = n
  }
  get buries(): number {
    return this.history === null ? 0 : this.history.buries
  }
  set buries(n: number) {
    if (n !== 0 || this.history !== null) this.hist().buries = n
  }
  get kicks(): number {
    return this.history === null ? 0 : this.history.kicks
  }
  set kicks(n: number) {
    if (n !== 0 || this.history !== null) this.hist().kicks = n
  }

  /** The job's extension tags; null for an untagged job (every job without --extensions). */
  get ext(): JobExt | null {
    return this.history === null ? null : this.history.ext
  }
  set ext(x: JobExt | null) {
    if (x !== null || this.history !== null) this.hist().ext = x
  }

  /** Extensions: a job moved here by its tube's max-retries policy: where it was (extensions/policies.ts). */
  get origin(): DeadLetterOrigin | null {
    return this.history === null ? null : this.history.origin
  }
  set origin(o: DeadLetterOrigin | null) {
    if (o !== null || this.history !== null) this.hist().origin = o
  }

  private hist(): JobHistory {
    return (this.history ??= new JobHistory())
  }

  /**
   * The body with its CRLF, as a view (for stores and cold paths; replies
   * copy from the slab or settle their views, server/output.ts). The view may
   * outlive the job, so its slab is never reused (body-arena.ts).
   */
  get body(): Buffer {
    this.slab.shared = true
    return this.slab.buf.subarray(this.bodyOff, this.bodyOff + this.bodyLen)
  }

  /**
   * The body as a view for a store's write that is done with it when it
   * returns (store.ts `JobView.lendBody`): counted as pending on its slab
   * until the store settles it, instead of marking the slab shared for good.
   */
  lendBody(loans: Pick<Slab, 'viewsPending'>[]): Buffer {
    const s = this.slab
    s.viewsPending++
    loans.push(s)
    return s.buf.subarray(this.bodyOff, this.bodyOff + this.bodyLen)
  }

  onTimer(nowMs: number): void {
    this.tube.handler.jobTimerFired(this, nowMs)
  }
}

class JobHistory {
  timeouts = 0
  releases = 0
  buries = 0
  kicks = 0
  ext: JobExt | null = null
  origin: DeadLetterOrigin | null = null
}

/** Ready order: priority, then id (older first). */
export const byPriority = (a: Pick<Job, 'pri' | 'id'>, b: Pick<Job, 'pri' | 'id'>): boolean => a.pri < b.pri || (a.pri === b.pri && a.id < b.id)
/** Delay and TTR order: deadline, then id. */
export const byDeadline = (a: Pick<Job, 'deadline' | 'id'>, b: Pick<Job, 'deadline' | 'id'>): boolean =>
  a.deadline < b.deadline || (a.deadline === b.deadline && a.id < b.id)

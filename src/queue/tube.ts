/**
 * A tube: ready jobs by (priority, id), delayed jobs by (deadline, id),
 * buried jobs in bury order, the sessions waiting on it, its pause and its
 * counters. A tube lives while anything references it (REFERENCE.md 2.9):
 * sessions using or watching it and jobs in it; `default` lives forever.
 */
import type { HeapItem } from './heap.js'
import { byDeadline, byPriority, type Job, type JobTimerHandler } from './job.js'
import { JobList } from './job-list.js'
import { ReadyNode, nodeBefore } from './ready-index.js'
import { TubeHeap } from './tube-heap.js'
import type { Session } from './session.js'
import type { TimerEntry } from './timing-wheel.js'
import type { TubePolicy } from './extensions/policies.js'

/** What a tube calls back into: job timers and its own pause end. */
export interface TubeHandler extends JobTimerHandler {
  pauseEnded(tube: Tube, nowMs: number): void
}

export class Tube implements HeapItem, TimerEntry {
  readonly name: string
  readonly handler: TubeHandler
  /** Ready jobs; with list-jobs' index once browsed (tube-heap.ts). */
  readonly ready = new TubeHeap(byPriority)
  readonly delayed = new TubeHeap(byDeadline)
  readonly buried = new JobList()
  /**
   * Sessions waiting to reserve from this tube, with the reference's
   * swap-remove order and rotating take index (ref:ms.c; REFERENCE.md 2.7).
   */
  readonly waiting: Session[] = []
  waitTake = 0

  reservedCount = 0
  urgentCount = 0
  totalJobs = 0
  cmdDelete = 0
  cmdPause = 0
  /** Not in stats-tube (for /metrics): TTR timeouts and buries of this tube's jobs. */
  timeouts = 0
  buries = 0
  usingCount = 0
  watchingCount = 0
  /** Extensions: ready jobs hidden behind their concurrency key (not in `ready`; extensions/concurrency.ts). */
  parked = 0
  /** Extensions: after-jobs held for their group (extensions/groups.ts); counted as delayed. */
  held = 0
  /** Extensions: this tube name's policy (max-retries, max-jobs), or null. */
  policy: TubePolicy | null = null

  paused = false
  /** Whole seconds of the last pause-tube, for stats. */
  pauseSecs = 0
  pauseUntil = 0

  /** Position in the registry's tube list (creation order, swap-remove). */
  listIndex = -1
  /** Position in the registry's heap of tubes that can pair a waiter with a job now. */
  heapIndex = -1
  /** Membership in the registry's index of tubes with ready jobs. */
  readonly readyNode: ReadyNode = new ReadyNode(this)

  timerAt = 0
  timerPrev: TimerEntry | null = null
  timerNext: TimerEntry | null = null
  timerSlot = -1

  constructor(name: string, handler: TubeHandler) {
    this.name = name
    this.handler = handler
  }

  get jobCount(): number {
    return this.ready.size + this.delayed.size + this.buried.size + this.reservedCount + this.parked + this.held
  }

  /** Has waiters and a ready job and is not paused: the scheduler may pair them. */
  get eligible(): boolean {
    return this.waiting.length > 0 && this.ready.size > 0 && !this.paused
  }

  /** ref:ms.c ms_take: rotating index, swap-remove. */
  takeWaiter(): Session | undefined {
    const w = this.waiting
    if (w.length === 0) return undefined
    const i = this.waitTake % w.length
    const s = w[i]!
    w[i] = w[w.length - 1]!
    w.pop()
    this.waitTake = i + 1
    return s
  }

  /** ref:ms.c ms_remove: swap-remove, take index unchanged. */
  removeWaiter(s: Session): void {
    const w = this.waiting
    const i = w.indexOf(s)
    if (i === -1) return
    w[i] = w[w.length - 1]!
    w.pop()
  }

  onTimer(nowMs: number): void {
    this.handler.pauseEnded(this, nowMs)
  }
}

/**
 * Tubes that can hand out a job, best ready job first: by the (priority, id)
 * copy in each tube's ReadyNode. An eligible tube has ready jobs and no pause,
 * so it is in the ready index, whose refresh the registry runs before it
 * re-files the tube here: the copy is current.
 */
export const byTopJob = (a: Tube, b: Tube): boolean => nodeBefore(a.readyNode, b.readyNode)

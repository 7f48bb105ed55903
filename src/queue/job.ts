/**
 * A job and its intrusive links. A job is in exactly one place at a time:
 * its tube's ready heap, its tube's delay heap, the reserving session's
 * deadline heap (all through `heapIndex`), or its tube's buried list (through
 * `prev`/`next`, which otherwise link the session's reserved jobs in reserve
 * order). Its one timer (delay end or TTR end) lives in the same object.
 */
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
} as const
export type JobState = (typeof JobState)[keyof typeof JobState]

export const STATE_NAMES = ['invalid', 'ready', 'reserved', 'buried', 'delayed'] as const

/** Called when a job's timer fires; the registry implements it. */
export interface JobTimerHandler {
  jobTimerFired(job: Job, nowMs: number): void
}

export class Job implements HeapItem, TimerEntry {
  readonly id: number
  pri: number
  /** Last delay asked for (put or release), ms. */
  delayMs: number
  readonly ttrMs: number
  /** The body including its trailing CRLF, stored once. */
  readonly body: Buffer
  readonly tube: Tube
  readonly createdAt: number
  state: JobState = JobState.INVALID
  /** Delayed: when it becomes ready; reserved: when its TTR runs out (monotonic ms). */
  deadline = 0
  reserver: Session | null = null

  reserves = 0
  timeouts = 0
  releases = 0
  buries = 0
  kicks = 0

  heapIndex = -1
  prev: Job | null = null
  next: Job | null = null

  timerAt = 0
  timerPrev: TimerEntry | null = null
  timerNext: TimerEntry | null = null
  timerSlot = -1

  constructor(id: number, pri: number, delayMs: number, ttrMs: number, body: Buffer, tube: Tube, now: number) {
    this.id = id
    this.pri = pri
    this.delayMs = delayMs
    this.ttrMs = ttrMs
    this.body = body
    this.tube = tube
    this.createdAt = now
  }

  onTimer(nowMs: number): void {
    this.tube.handler.jobTimerFired(this, nowMs)
  }
}

/** Ready order: priority, then id (older first). */
export const byPriority = (a: Job, b: Job): boolean => a.pri < b.pri || (a.pri === b.pri && a.id < b.id)
/** Delay and TTR order: deadline, then id. */
export const byDeadline = (a: Job, b: Job): boolean =>
  a.deadline < b.deadline || (a.deadline === b.deadline && a.id < b.id)

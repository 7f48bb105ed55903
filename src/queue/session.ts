/**
 * The queue-side state of one client connection: the tube it uses, the tubes
 * it watches (in the reference's swap-remove order), the jobs it holds, and
 * whether it is waiting in a reserve. The queue reaches the connection only
 * through the Waiter interface it declares here.
 */
import { Heap } from './heap.js'
import { byDeadline, type Job } from './job.js'
import { JobList } from './job-list.js'
import type { Tube } from './tube.js'
import type { TimerEntry } from './timing-wheel.js'
import type { ListCursor } from './extensions/browse.js'

/** Watch lists longer than this get a Set beside the array. */
const SET_FROM = 8

/** How the queue answers a session that was waiting in reserve. */
export interface Waiter {
  /** A job was reserved for the waiting session. */
  jobReserved(job: Job): void
  /** The wait ended without a job: TIMED_OUT or DEADLINE_SOON. */
  waitEnded(reply: Buffer): void
}

/** Called when a session's wait timer fires; the registry implements it. */
export interface WaitTimerHandler {
  waitTimerFired(session: Session, nowMs: number): void
}

/** Session.waitUntil of a wait without a timeout. */
export const NO_WAIT_LIMIT = -1

export class Session implements TimerEntry {
  readonly id: number
  readonly waiter: Waiter
  private readonly handler: WaitTimerHandler
  used: Tube
  /**
   * Watched tubes in the reference's order (swap-remove). While short it is
   * replaced by an exact-size copy rather than grown: most sessions watch one
   * or two tubes, and an array grown by push (or spread) keeps 17 slots or
   * more (an idle connection's memory).
   */
  watching: Tube[] = []
  /** The same as a set, made once more than SET_FROM tubes are watched (below, a scan is as fast). */
  private watchSet: Set<Tube> | null = null
  /** Made on first use: an idle connection holds no jobs. */
  private heldByDeadline: Heap<Job> | null = null
  private heldInOrder: JobList | null = null
  waiting = false
  /**
   * Monotonic ms when a reserve-with-timeout gives up; NO_WAIT_LIMIT for a
   * reserve without one. Not Infinity: a field that ever holds a non-integer
   * costs every session a boxed number (16 bytes per connection).
   */
  waitUntil = NO_WAIT_LIMIT
  producer = false
  worker = false
  /** Extensions: `reserve-mode weighted` (queue/extensions/weighted.ts). */
  weighted = false
  /** Extensions: tube weights other than 1 (`watch <tube> <weight>`), by tube name; made on first use. */
  weights: Map<string, number> | null = null
  /** Extensions: where this session's last list-jobs page ended (extensions/browse.ts). */
  listCursor: ListCursor | null = null
  /**
   * Extensions: a command of this session runs over several turns (flush-tube,
   * delete-tube): its later commands wait, as behind a reserve, until the
   * Waiter hears the reply.
   */
  busy = false

  timerAt = 0
  timerPrev: TimerEntry | null = null
  timerNext: TimerEntry | null = null
  timerSlot = -1

  constructor(id: number, used: Tube, waiter: Waiter, handler: WaitTimerHandler) {
    this.id = id
    this.used = used
    this.waiter = waiter
    this.handler = handler
  }

  weightOf(tube: string): number {
    return this.weights?.get(tube) ?? 1
  }

  setWeight(tube: string, weight: number): void {
    if (weight !== 1) (this.weights ??= new Map()).set(tube, weight)
    else this.weights?.delete(tube)
  }

  /** Held jobs, soonest TTR deadline first (DEADLINE_SOON, wait timer). */
  get deadlines(): Heap<Job> {
    return (this.heldByDeadline ??= new Heap<Job>(byDeadline))
  }

  /** Held jobs in reserve order (returned to ready in this order on close). */
  get reserved(): JobList {
    return (this.heldInOrder ??= new JobList())
  }

  watches(tube: Tube): boolean {
    return this.watchSet !== null ? this.watchSet.has(tube) : this.watching.includes(tube)
  }

  addWatch(tube: Tube): void {
    const w = this.watching
    if (w.length < SET_FROM) {
      this.watching = w.concat(tube)
      // Short again after being long: scans serve it.
      this.watchSet = null
      return
    }
    w.push(tube)
    if (this.watchSet === null) this.watchSet = new Set(w)
    else this.watchSet.add(tube)
  }

  /** ref:ms.c ms_remove: swap-remove. */
  removeWatch(tube: Tube): void {
    const i = this.watching.indexOf(tube)
    this.watching[i] = this.watching[this.watching.length - 1]!
    this.watching.pop()
    this.watchSet?.delete(tube)
  }

  /** Watches nothing any more (the connection closed). */
  clearWatches(): void {
    this.watching = []
    this.watchSet = null
  }

  onTimer(nowMs: number): void {
    this.handler.waitTimerFired(this, nowMs)
  }
}

/**
 * Gives memory back to the operating system after a backlog drains. Jobs
 * and body slabs of deleted jobs are garbage, but V8 collects its old space
 * only when allocation pushes it to, so an idle server that has just
 * deleted a million jobs would keep their memory (and their 1 MiB slabs,
 * freed only with their Buffers) indefinitely (measured: 392 MB after
 * 1,000,000 deletes, against 52 MB idle).
 *
 * Invariants:
 * - Nothing here runs on the command path: a timer samples what the queue
 *   holds every CHECK_MS, unref'd so it never keeps the process alive.
 * - A collection runs only after a large drop that has settled: what the
 *   queue holds fell by at least MIN_DROP_BYTES and to at most a quarter of
 *   its peak since the last collection, and moved little over the last
 *   interval. So its pause is bounded by a quarter of the peak heap, which V8's
 *   own collections marked while the queue grew, and it runs once per drain.
 * - The same after the number of open connections changed by at least
 *   MIN_CONN_CHANGE since the last collection and then held steady for an
 *   interval: the garbage of thousands of accepts (and the young generation
 *   they grew), or thousands of closed sockets, would otherwise stay for as
 *   long as the server is idle (measured: 10,000 idle connections held 4.46
 *   KB each for as long as they stayed, 20 s and more).
 * - A second collection follows SHRINK_AFTER_MS later: V8 shrinks its young
 *   generation (32 MB once grown) only in a collection that sees a low
 *   allocation rate over the last 5 s (measured: the first one does not).
 */
import { runInNewContext } from 'node:vm'
import v8 from 'node:v8'

const CHECK_MS = 500
const SHRINK_AFTER_MS = 5500
const MIN_DROP_BYTES = 32 * 1024 * 1024
/** A change in open connections worth collecting for. */
const MIN_CONN_CHANGE = 2000
/** A job's memory beyond its body (the Job object, its slot in the job table and heaps), for the estimate. */
const JOB_BYTES = 250

/** What the queue holds now, in jobs and body bytes, and the connections open. */
export interface Held {
  readonly jobs: number
  readonly bodyBytes: number
  readonly connections: number
}

let exposed: (() => void) | null = null

/** V8's full collection, reachable without `node --expose-gc` (the flag only adds `gc` to new contexts). */
function fullGc(): void {
  if (exposed === null) {
    const g = (globalThis as { gc?: () => void }).gc
    if (typeof g === 'function') exposed = g
    else {
      v8.setFlagsFromString('--expose-gc')
      exposed = runInNewContext('gc') as () => void
    }
  }
  exposed()
}

export class MemoryReclaimer {
  private readonly held: () => Held
  private readonly gc: () => void
  private readonly beforeCollect: () => void
  private timer: NodeJS.Timeout | null = null
  private shrink: NodeJS.Timeout | null = null
  private peak = 0
  private last = 0
  /** Open connections at the last collection, and at the last sample. */
  private connMark = 0
  private lastConns = 0
  /** Collections run (stats, tests). */
  collections = 0

  /** `beforeCollect` lets go of memory kept for reuse (the body arena's spare slabs) before each collection. */
  constructor(held: () => Held, gc: () => void = fullGc, beforeCollect: () => void = () => {}) {
    this.held = held
    this.gc = gc
    this.beforeCollect = beforeCollect
  }

  start(): void {
    if (this.timer !== null) return
    this.timer = setInterval(() => this.check(), CHECK_MS)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer)
    if (this.shrink !== null) clearTimeout(this.shrink)
    this.timer = null
    this.shrink = null
  }

  /** One sample (the timer's; tests call it directly). */
  check(): void {
    const h = this.held()
    const now = h.jobs * JOB_BYTES + h.bodyBytes
    const settled = Math.abs(now - this.last) <= this.peak / 64
    this.last = now
    if (now > this.peak) this.peak = now
    const c = h.connections
    const connsSettled = Math.abs(c - this.lastConns) <= Math.max(16, c / 100)
    this.lastConns = c
    const drained = this.peak - now >= MIN_DROP_BYTES && now <= this.peak / 4 && settled
    const reconnected = Math.abs(c - this.connMark) >= MIN_CONN_CHANGE && connsSettled
    if (!drained && !reconnected) return
    this.peak = now
    this.connMark = c
    this.collect()
    if (this.shrink !== null) clearTimeout(this.shrink)
    this.shrink = setTimeout(() => {
      this.shrink = null
      this.collect()
    }, SHRINK_AFTER_MS)
    this.shrink.unref()
  }

  private collect(): void {
    this.beforeCollect()
    this.gc()
    this.collections++
  }
}

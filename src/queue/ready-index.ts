/**
 * Every tube that could hand out a job right now (has ready jobs, not
 * paused), best ready job first, and a best-first search over it for "the
 * best ready job among the tubes this session watches".
 *
 * A session watching a few tubes scans them directly; one watching many
 * (beanstalkd #561: 10,000 tubes make every reserve slow) walks this heap in
 * order from its root, which finds the answer after visiting only the tubes
 * with better jobs that it does not watch. The walk is bounded by the number
 * of watched tubes, so it is never worse than the scan.
 *
 * Each node carries a copy of its tube's best ready (priority, id), set by
 * `refresh`, and the heap orders nodes by that copy alone. Comparing through
 * the tube instead (node -> tube -> ready heap -> items -> job) made every
 * sift a chain of dependent loads across thousands of tubes: with one worker
 * watching 10,000 tubes it was the server's costliest JS function (bench
 * `tubes-10k`). The copy is exact because a ready job's priority never
 * changes (release and bury set it while the job is reserved) and every
 * change of a tube's ready heap is followed by `refresh`.
 */
import { Heap, type HeapItem } from './heap.js'
import { byPriority, type Job } from './job.js'
import type { Tube } from './tube.js'

/** A tube's membership in the index (a tube's own heapIndex serves another heap). */
export class ReadyNode implements HeapItem {
  heapIndex = -1
  /** (priority, id) of the tube's best ready job; current while the node is in the index. */
  pri = 0
  id = 0
  readonly tube: Tube
  constructor(tube: Tube) {
    this.tube = tube
  }
}

/** byPriority on the copied keys. Also the order of the registry's eligible heap (`byTopJob`). */
export const nodeBefore = (a: ReadyNode, b: ReadyNode): boolean => a.pri < b.pri || (a.pri === b.pri && a.id < b.id)

/** Below this many watched tubes a plain scan is cheaper than a heap walk. */
export const SCAN_LIMIT = 16

export class ReadyIndex {
  private readonly heap = new Heap<ReadyNode>(nodeBefore)
  /** Frontier of the best-first walk: heap positions, kept as a binary heap. Reused. */
  private readonly frontier: number[] = []

  /** Re-files a tube after its ready jobs or its pause changed. */
  refresh(t: Tube): void {
    const node = t.readyNode
    const top = t.ready.peek()
    if (top !== undefined && !t.paused) {
      if (node.heapIndex === -1) {
        node.pri = top.pri
        node.id = top.id
        this.heap.push(node)
      } else if (node.pri !== top.pri || node.id !== top.id) {
        node.pri = top.pri
        node.id = top.id
        this.heap.update(node)
      }
      // Else the best job is the same (a job queued behind it, or another left):
      // the node is in place, and re-sifting it would only touch its neighbours.
    } else if (node.heapIndex !== -1) {
      this.heap.remove(node)
    }
  }

  remove(t: Tube): void {
    this.heap.remove(t.readyNode)
  }

  /** The best ready job in an unpaused tube among `watching`, or undefined. */
  bestFor(watching: readonly Tube[], watches: (t: Tube) => boolean): Job | undefined {
    if (watching.length > SCAN_LIMIT) {
      const found = this.walk(watches, watching.length)
      if (found !== null) return found ?? undefined
    }
    let best: Job | undefined
    for (const t of watching) {
      if (t.paused) continue
      const j = t.ready.peek()
      if (j !== undefined && (best === undefined || byPriority(j, best))) best = j
    }
    return best
  }

  /**
   * Visits heap positions best-first. Returns the job, undefined when no
   * watched tube has one, or null when the budget ran out (caller scans).
   */
  private walk(watches: (t: Tube) => boolean, budget: number): Job | undefined | null {
    const size = this.heap.size
    if (size === 0) return undefined
    // The root first, without the frontier: a session that watches the tube
    // with the best job (one watching every tube always does) is answered by
    // one check, and the frontier array is not filled and emptied per reserve.
    const root = this.heap.at(0)!.tube
    if (watches(root)) return root.ready.peek()
    const f = this.frontier
    f.length = 0
    if (size > 1) this.pushFrontier(1)
    if (size > 2) this.pushFrontier(2)
    for (let visited = 1; f.length > 0; visited++) {
      if (visited >= budget) return null
      const i = this.popFrontier()
      const node = this.heap.at(i)!
      if (watches(node.tube)) return node.tube.ready.peek()
      const l = 2 * i + 1
      if (l < this.heap.size) this.pushFrontier(l)
      if (l + 1 < this.heap.size) this.pushFrontier(l + 1)
    }
    return undefined
  }

  private before(i: number, j: number): boolean {
    return nodeBefore(this.heap.at(i)!, this.heap.at(j)!)
  }

  private pushFrontier(pos: number): void {
    const f = this.frontier
    let k = f.length
    f.push(pos)
    while (k > 0) {
      const parent = (k - 1) >> 1
      if (!this.before(f[k]!, f[parent]!)) break
      ;[f[k], f[parent]] = [f[parent]!, f[k]!]
      k = parent
    }
  }

  private popFrontier(): number {
    const f = this.frontier
    const top = f[0]!
    const last = f.pop()!
    if (f.length > 0) {
      f[0] = last
      let k = 0
      for (;;) {
        const l = 2 * k + 1
        if (l >= f.length) break
        const c = l + 1 < f.length && this.before(f[l + 1]!, f[l]!) ? l + 1 : l
        if (!this.before(f[c]!, f[k]!)) break
        ;[f[k], f[c]] = [f[c]!, f[k]!]
        k = c
      }
    }
    return top
  }
}

/**
 * A tube's ready or delayed heap, with list-jobs' ordered index of the same
 * jobs beside it once a session has browsed that state (extensions/browse.ts).
 *
 * Every change to a tube's ready and delay heaps is a push or a remove (a
 * job's key changes only while it is out of them: release, reprioritize and
 * redelay remove, re-key, push), so mirroring those two keeps the index
 * exactly the heap's jobs in the heap's order. A heap no one browsed has no
 * index and pays two null checks per change (no index, no build); without
 * --extensions list-jobs cannot run and no index is ever built. The index goes when the heap
 * empties (the last job reserved, deleted, flushed or the tube deleted), and
 * with the tube when the tube is dropped; a flush drops it before each slice.
 *
 * A small heap's index is built at once, on its first page. A large one's is
 * built in the background, `indexBuild.step` jobs per turn of the event loop,
 * so the first page of a million-job tube does not stop the server for the
 * second a sort of them takes: the build inserts the jobs of a copy of the
 * heap's slots taken when it began, skipping those no longer in the heap or
 * already added, while pushes and removes are mirrored into the part built
 * so far. Until it is done, a page from the start is read best-first from
 * the heap's root and one after a cursor by a pass over the heap.
 */
import { Heap } from './heap.js'
import type { Job } from './job.js'
import { OrderedIndex } from './ordered-index.js'

/** What the heap's order compares. */
export type JobKey = Pick<Job, 'id' | 'pri' | 'deadline'>

/** How indexes are built (tests lower the sizes and take over the scheduling). */
export const indexBuild = {
  /** Heaps up to this many jobs are indexed at once (a sort of 16,384 jobs takes a few ms). */
  syncMax: 16_384,
  /** Jobs a background build adds per turn of the event loop (about 1 ms on a million-job heap). */
  step: 1024,
  defer: (fn: () => void): void => void setImmediate(fn),
}

/** A background build: the heap's slots when it began, the index of those added so far, the jobs pushed since it began. */
interface Build {
  readonly index: OrderedIndex<JobKey, Job>
  readonly snapshot: Job[]
  next: number
  readonly pushed: Set<Job>
}

export class TubeHeap extends Heap<Job> {
  readonly #less: (a: JobKey, b: JobKey) => boolean
  /** list-jobs' index of this heap's jobs, or null until one is asked for (or while it is being built). */
  #browse: OrderedIndex<JobKey, Job> | null = null
  #build: Build | null = null

  constructor(less: (a: JobKey, b: JobKey) => boolean) {
    super(less)
    this.#less = less
  }

  /** The index is complete: pages are read from it. */
  get browsed(): boolean {
    return this.#browse !== null
  }

  /** An index is being built in the background. */
  get indexing(): boolean {
    return this.#build !== null
  }

  /**
   * Up to `limit` jobs after `key` in the heap's order (from the first: key
   * null). The first page builds the index: at once for a small heap, else
   * in the background; until that is done, a page from the start is read
   * best-first from the root, O(limit log limit), and one after a cursor by
   * a pass over the heap, O(n).
   */
  page(key: JobKey | null, limit: number): Job[] {
    if (this.size === 0) return []
    if (this.#browse === null && this.#build === null) {
      if (this.size <= indexBuild.syncMax) this.#browse = this.#sorted()
      else this.#startBuild()
    }
    if (this.#browse !== null) return this.#browse.after(key, limit)
    return key === null ? this.#least(limit) : this.#scan(key, limit)
  }

  /** Drops the index (a flush about to remove most of the heap: rebuilding later is cheaper than mirroring each removal). */
  dropBrowseIndex(): void {
    this.#browse = null
    this.#build = null
  }

  override push(j: Job): void {
    super.push(j)
    if (this.#browse !== null) this.#browse.insert(j)
    else if (this.#build !== null) {
      this.#build.index.insert(j)
      this.#build.pushed.add(j)
    }
  }

  override remove(j: Job): void {
    if (j.heapIndex !== -1) {
      if (this.#browse !== null) {
        // Not found would mean the index drifted from the heap: drop it (the
        // next page rebuilds it) rather than list a job that is not here.
        if (!this.#browse.remove(j) || this.size === 1) this.#browse = null
      } else if (this.#build !== null) {
        // Not found: the build has not reached it, and now will not (it is gone).
        this.#build.index.remove(j)
        if (this.size === 1) this.#build = null
      }
    }
    super.remove(j)
  }

  override pop(): Job | undefined {
    const j = this.peek()
    if (j !== undefined) this.remove(j)
    return j
  }

  /** A key changed in place, so the index cannot find the job's old place: it is dropped and rebuilt on the next page. */
  override update(j: Job): void {
    this.dropBrowseIndex()
    super.update(j)
  }

  /** An index of the heap's jobs now, by one sort: O(n log n). */
  #sorted(): OrderedIndex<JobKey, Job> {
    const less = this.#less
    const sorted = this.slots.slice().sort((a, b) => (less(a, b) ? -1 : 1))
    return new OrderedIndex<JobKey, Job>(less, sorted)
  }

  #startBuild(): void {
    const build: Build = { index: new OrderedIndex<JobKey, Job>(this.#less), snapshot: this.slots.slice(), next: 0, pushed: new Set() }
    this.#build = build
    const step = (): void => {
      // Dropped meanwhile (the heap emptied, a flush, a key changed in place).
      if (this.#build !== build) return
      const { index, snapshot, pushed } = build
      const slots = this.slots
      const end = Math.min(snapshot.length, build.next + indexBuild.step)
      for (let i = build.next; i < end; i++) {
        const j = snapshot[i]!
        // Gone from this heap since the copy, or back in it (its push added it).
        if (j.heapIndex === -1 || slots[j.heapIndex] !== j || pushed.has(j)) continue
        index.insert(j)
      }
      build.next = end
      if (end < snapshot.length) return indexBuild.defer(step)
      this.#build = null
      this.#browse = index
    }
    indexBuild.defer(step)
  }

  /**
   * The heap's least `limit` jobs, best-first from the root: a job's
   * children are the next candidates once it is taken, so this reads
   * O(limit) slots, O(limit log limit) in all, however large the heap.
   */
  #least(limit: number): Job[] {
    const slots = this.slots
    const less = this.#less
    const out: Job[] = []
    // The candidates' slot numbers, a binary min-heap by their jobs.
    const cand: number[] = [0]
    const before = (a: number, b: number): boolean => less(slots[a]!, slots[b]!)
    while (cand.length > 0 && out.length < limit) {
      const top = cand[0]!
      out.push(slots[top]!)
      const last = cand.pop()!
      if (cand.length > 0) siftDown(cand, last, before)
      const left = 2 * top + 1
      if (left < slots.length) siftUp(cand, left, before)
      if (left + 1 < slots.length) siftUp(cand, left + 1, before)
    }
    return out
  }

  /** The page after `key` by one pass over the heap: the least `limit` jobs after it, kept in a buffer cut back to `limit` when it fills. */
  #scan(key: JobKey, limit: number): Job[] {
    const less = this.#less
    const cap = Math.max(4 * limit, 1024)
    let best: Job[] = []
    /** Every job kept is before this one (the last of a cut-back buffer), once there is one. */
    let bound: Job | null = null
    const byKey = (a: Job, b: Job): number => (less(a, b) ? -1 : 1)
    const slots = this.slots
    for (let i = 0; i < slots.length; i++) {
      const j = slots[i]!
      if (!less(key, j)) continue
      if (bound !== null && !less(j, bound)) continue
      best.push(j)
      if (best.length >= cap) {
        best.sort(byKey)
        best = best.slice(0, limit)
        bound = best[limit - 1]!
      }
    }
    best.sort(byKey)
    return best.length > limit ? best.slice(0, limit) : best
  }
}

/** Puts x into the min-heap `h` (under `before`) from its end. */
function siftUp(h: number[], x: number, before: (a: number, b: number) => boolean): void {
  let i = h.length
  h.push(x)
  while (i > 0) {
    const p = (i - 1) >>> 1
    if (!before(x, h[p]!)) break
    h[i] = h[p]!
    i = p
  }
  h[i] = x
}

/** Puts x into the hole at the root of the min-heap `h` (under `before`). */
function siftDown(h: number[], x: number, before: (a: number, b: number) => boolean): void {
  const n = h.length
  let i = 0
  for (;;) {
    let c = 2 * i + 1
    if (c >= n) break
    if (c + 1 < n && before(h[c + 1]!, h[c]!)) c++
    if (!before(h[c]!, x)) break
    h[i] = h[c]!
    i = c
  }
  h[i] = x
}

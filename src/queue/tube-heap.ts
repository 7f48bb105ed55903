/**
 * A tube's ready or delayed heap, with list-jobs' ordered index of the same
 * jobs beside it once a session has browsed that state (extensions/browse.ts).
 *
 * Every change to a tube's ready and delay heaps is a push or a remove (a
 * job's key changes only while it is out of them: release, reprioritize and
 * redelay remove, re-key, push), so mirroring those two keeps the index
 * exactly the heap's jobs in the heap's order. A heap no one browsed has no
 * index and pays one null check per change; without --extensions list-jobs
 * cannot run and no index is ever built. The index goes when the heap
 * empties (the last job reserved, deleted, flushed or the tube deleted), and
 * with the tube when the tube is dropped; a flush drops it before each slice.
 */
import { Heap } from './heap.js'
import type { Job } from './job.js'
import { OrderedIndex } from './ordered-index.js'

/** What the heap's order compares. */
export type JobKey = Pick<Job, 'id' | 'pri' | 'deadline'>

export class TubeHeap extends Heap<Job> {
  readonly #less: (a: JobKey, b: JobKey) => boolean
  /** list-jobs' index of this heap's jobs, or null until one is asked for. */
  #browse: OrderedIndex<JobKey, Job> | null = null

  constructor(less: (a: JobKey, b: JobKey) => boolean) {
    super(less)
    this.#less = less
  }

  get browsed(): boolean {
    return this.#browse !== null
  }

  /**
   * The index, built on first use by sorting the heap's slots: O(n log n)
   * once (about a second for 1,000,000 jobs, docs/EXTENSIONS.md), then kept
   * in step by push and remove.
   */
  browseIndex(): OrderedIndex<JobKey, Job> {
    if (this.#browse === null) {
      const less = this.#less
      const sorted = this.slots.slice().sort((a, b) => (less(a, b) ? -1 : 1))
      this.#browse = new OrderedIndex<JobKey, Job>(less, sorted)
    }
    return this.#browse
  }

  /** Drops the index (a flush about to remove most of the heap: rebuilding later is cheaper than mirroring each removal). */
  dropBrowseIndex(): void {
    this.#browse = null
  }

  override push(j: Job): void {
    super.push(j)
    if (this.#browse !== null) this.#browse.insert(j)
  }

  override remove(j: Job): void {
    if (this.#browse !== null && j.heapIndex !== -1) {
      // Not found would mean the index drifted from the heap: drop it (the
      // next page rebuilds it) rather than list a job that is not here.
      if (!this.#browse.remove(j) || this.size === 1) this.#browse = null
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
    this.#browse = null
    super.update(j)
  }
}

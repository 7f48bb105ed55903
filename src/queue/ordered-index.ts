/**
 * A sorted sequence of distinct items under a strict total order `less`,
 * kept as a list of sorted chunks: insert and remove cost a binary search
 * over the chunks' last items plus one within a chunk and a splice of at most
 * MAX_CHUNK slots; `after(key, limit)` seeks to the first item after `key`
 * and steps `limit` items. list-jobs pages through a tube's ready or delayed
 * jobs with it (extensions/browse.ts, tube-heap.ts), so a deep page costs
 * O(log n + limit) instead of the jobs before the cursor.
 *
 * Invariants:
 * - Every chunk is non-empty and sorted, and every item of a chunk is before
 *   every item of the next one: the concatenation is the sorted sequence.
 * - No chunk is longer than MAX_CHUNK (an insert splits a full chunk in two).
 *   A chunk that shrinks below MIN_CHUNK is merged into a neighbour when the
 *   two fit in one chunk, so n items take O(n / MIN_CHUNK) chunks however
 *   they churn, and the chunk search stays logarithmic.
 */

/** A full chunk is split in two halves of this size. */
const HALF_CHUNK = 512
const MAX_CHUNK = 2 * HALF_CHUNK
const MIN_CHUNK = HALF_CHUNK / 4

/** T: the items; K: what `less` compares (a key that is not an item can be sought with `after`). */
export class OrderedIndex<K, T extends K = K> {
  private readonly less: (a: K, b: K) => boolean
  private chunks: T[][] = []
  private count = 0

  /** `sorted` must already be in `less` order without duplicates; it is taken over, not copied. */
  constructor(less: (a: K, b: K) => boolean, sorted: T[] = []) {
    this.less = less
    for (let i = 0; i < sorted.length; i += HALF_CHUNK) this.chunks.push(sorted.slice(i, i + HALF_CHUNK))
    this.count = sorted.length
  }

  get size(): number {
    return this.count
  }

  insert(x: T): void {
    const chunks = this.chunks
    if (chunks.length === 0) {
      chunks.push([x])
      this.count = 1
      return
    }
    // The first chunk whose last item is after x, or the last chunk (x goes at its end).
    let c = this.chunkAfter(x)
    if (c === chunks.length) c--
    const chunk = chunks[c]!
    chunk.splice(this.firstAfter(chunk, x), 0, x)
    this.count++
    if (chunk.length > MAX_CHUNK) chunks.splice(c + 1, 0, chunk.splice(HALF_CHUNK))
  }

  /** Removes x (found by its key, which must not have changed since insert); false if it is not here. */
  remove(x: T): boolean {
    const chunks = this.chunks
    // x's chunk is the first whose last item is not before x.
    const c = this.chunkNotBefore(x)
    if (c === chunks.length) return false
    const chunk = chunks[c]!
    const i = this.firstNotBefore(chunk, x)
    if (chunk[i] !== x) return false
    chunk.splice(i, 1)
    this.count--
    if (chunk.length === 0) chunks.splice(c, 1)
    else if (chunk.length < MIN_CHUNK) this.mergeSmall(c)
    return true
  }

  /** Up to `limit` items after `key` in order (from the first item: key null). */
  after(key: K | null, limit: number): T[] {
    const out: T[] = []
    const chunks = this.chunks
    let c = key === null ? 0 : this.chunkAfter(key)
    if (c === chunks.length) return out
    let i = key === null ? 0 : this.firstAfter(chunks[c]!, key)
    while (out.length < limit && c < chunks.length) {
      const chunk = chunks[c]!
      const end = Math.min(chunk.length, i + limit - out.length)
      for (; i < end; i++) out.push(chunk[i]!)
      if (i === chunk.length) {
        c++
        i = 0
      }
    }
    return out
  }

  /** Every item in order (tests and checks). */
  toArray(): T[] {
    return this.chunks.flat()
  }

  /** Merges chunk c into a neighbour when the two fit in one chunk. */
  private mergeSmall(c: number): void {
    const chunks = this.chunks
    const chunk = chunks[c]!
    const prev = chunks[c - 1]
    if (prev !== undefined && prev.length + chunk.length <= MAX_CHUNK) {
      for (const x of chunk) prev.push(x)
      chunks.splice(c, 1)
      return
    }
    const next = chunks[c + 1]
    if (next !== undefined && next.length + chunk.length <= MAX_CHUNK) {
      for (const x of next) chunk.push(x)
      chunks.splice(c + 1, 1)
    }
  }

  /** The first chunk whose last item is after `key`; chunks.length if none. */
  private chunkAfter(key: K): number {
    const chunks = this.chunks
    let lo = 0
    let hi = chunks.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const chunk = chunks[mid]!
      if (this.less(key, chunk[chunk.length - 1]!)) hi = mid
      else lo = mid + 1
    }
    return lo
  }

  /** The first chunk whose last item is not before `key`; chunks.length if none. */
  private chunkNotBefore(key: T): number {
    const chunks = this.chunks
    let lo = 0
    let hi = chunks.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const chunk = chunks[mid]!
      if (this.less(chunk[chunk.length - 1]!, key)) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** The position of the first item after `key` in a sorted chunk. */
  private firstAfter(chunk: readonly T[], key: K): number {
    let lo = 0
    let hi = chunk.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.less(key, chunk[mid]!)) hi = mid
      else lo = mid + 1
    }
    return lo
  }

  /** The position of the first item not before `key` in a sorted chunk. */
  private firstNotBefore(chunk: readonly T[], key: T): number {
    let lo = 0
    let hi = chunk.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.less(chunk[mid]!, key)) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

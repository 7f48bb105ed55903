/*
 * Indexed binary min-heap, after beanstalkd heap.c.
 *
 * Invariants:
 *  - #items[0..size) is a binary heap under `less`: no item is less than its
 *    parent ((i - 1) >>> 1), so #items[0] is a least item. Ties are in no
 *    particular order; callers that need FIFO among equals put a sequence
 *    number (job id) into `less`.
 *  - For every item in this heap, #items[item.heapIndex] === item. Every move
 *    rewrites heapIndex, which is what makes remove()/update() O(log n)
 *    without a search. An item in no heap has heapIndex === -1.
 *  - An item is in at most one heap. remove()/update() check
 *    #items[heapIndex] === item, so handing an item to the wrong heap throws
 *    instead of silently corrupting both.
 *  - No operation allocates; the backing array only grows (amortised) on push.
 */

export interface HeapItem {
  /** Position in the heap's array; -1 when in no heap. Owned by the heap. */
  heapIndex: number
}

export class Heap<T extends HeapItem> {
  readonly #less: (a: T, b: T) => boolean
  readonly #items: T[] = []

  constructor(less: (a: T, b: T) => boolean) {
    this.#less = less
  }

  get size(): number {
    return this.#items.length
  }

  peek(): T | undefined {
    return this.#items[0]
  }

  /** The backing array, read-only (0 is the root; children of i are 2i+1, 2i+2), for walks over many slots. */
  get slots(): readonly T[] {
    return this.#items
  }

  /** Raw array slot i (0 is the root; children of i are 2i+1, 2i+2), for best-first traversals. */
  at(i: number): T | undefined {
    return this.#items[i]
  }

  push(item: T): void {
    const i = this.#items.length
    this.#items.push(item)
    this.#siftUp(i, item)
  }

  pop(): T | undefined {
    const items = this.#items
    const top = items[0]
    if (top === undefined) return undefined
    const last = items.pop()!
    if (last !== top) this.#siftDown(0, last)
    top.heapIndex = -1
    return top
  }

  /** O(log n) via heapIndex; no-op when the item is in no heap. */
  remove(item: T): void {
    const i = item.heapIndex
    if (i === -1) return
    const items = this.#items
    if (items[i] !== item) throw new Error(`Heap.remove: item (heapIndex ${i}) is not in this heap`)
    const last = items.pop()!
    // The last item fills the hole; it may belong above or below it (heap.c heapremove).
    if (last !== item) this.#restore(i, last)
    item.heapIndex = -1
  }

  /** The item's key changed: move it up or down to restore the order. No-op when in no heap. */
  update(item: T): void {
    const i = item.heapIndex
    if (i === -1) return
    if (this.#items[i] !== item) throw new Error(`Heap.update: item (heapIndex ${i}) is not in this heap`)
    this.#restore(i, item)
  }

  /** Place `item` into hole i, sifting whichever way the order needs. */
  #restore(i: number, item: T): void {
    if (i > 0 && this.#less(item, this.#items[(i - 1) >>> 1]!)) this.#siftUp(i, item)
    else this.#siftDown(i, item)
  }

  /** Move `item` from hole i towards the root: parents slide down into the hole. */
  #siftUp(i: number, item: T): void {
    const items = this.#items
    const less = this.#less
    while (i > 0) {
      const p = (i - 1) >>> 1
      const parent = items[p]!
      if (!less(item, parent)) break
      items[i] = parent
      parent.heapIndex = i
      i = p
    }
    items[i] = item
    item.heapIndex = i
  }

  /** Move `item` from hole i towards the leaves: the lesser child slides up into the hole. */
  #siftDown(i: number, item: T): void {
    const items = this.#items
    const less = this.#less
    const n = items.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      let c = l
      let child = items[l]!
      const r = l + 1
      if (r < n) {
        const right = items[r]!
        if (less(right, child)) {
          c = r
          child = right
        }
      }
      if (!less(child, item)) break
      items[i] = child
      child.heapIndex = i
      i = c
    }
    items[i] = item
    item.heapIndex = i
  }
}

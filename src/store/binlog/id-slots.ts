/**
 * A number per job id, 0 meaning none, in pages of PAGE slots: 8 bytes a
 * job where a Map costs about 40 and an object per job about 100 (ids are
 * handed out densely and in order, as the queue's JobTable relies on too).
 *
 * Invariants:
 * - A page exists while one of its slots is non-zero, except the newest page
 *   ever made, which new ids still fill (dropping it at every short-queue
 *   delete would allocate a page per put).
 * - `size` is the number of non-zero slots.
 */
const PAGE = 4096

export class IdSlots {
  private readonly pages = new Map<number, Float64Array>()
  private readonly used = new Map<number, number>()
  private newest = -1
  size = 0

  get(id: number): number {
    const page = this.pages.get(Math.floor(id / PAGE))
    return page === undefined ? 0 : page[id % PAGE]!
  }

  /** Sets the slot; 0 clears it. */
  set(id: number, v: number): void {
    if (v === 0) {
      this.delete(id)
      return
    }
    const p = Math.floor(id / PAGE)
    let page = this.pages.get(p)
    if (page === undefined) {
      page = new Float64Array(PAGE)
      this.pages.set(p, page)
      this.used.set(p, 0)
      if (p > this.newest) {
        if (this.used.get(this.newest) === 0) this.drop(this.newest)
        this.newest = p
      }
    }
    const i = id % PAGE
    if (page[i] === 0) {
      this.size++
      this.used.set(p, this.used.get(p)! + 1)
    }
    page[i] = v
  }

  delete(id: number): void {
    const p = Math.floor(id / PAGE)
    const page = this.pages.get(p)
    const i = id % PAGE
    if (page === undefined || page[i] === 0) return
    page[i] = 0
    this.size--
    const n = this.used.get(p)! - 1
    this.used.set(p, n)
    if (n === 0 && p !== this.newest) this.drop(p)
  }

  /** Pages held (memory: 32 KiB each). */
  get pageCount(): number {
    return this.pages.size
  }

  private drop(p: number): void {
    this.pages.delete(p)
    this.used.delete(p)
  }
}

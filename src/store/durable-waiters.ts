/**
 * Callbacks waiting for a commit sequence number to become durable, shared by
 * every store. Invariant: `items` is sorted by seq, so release takes a prefix.
 */
interface Waiter {
  readonly seq: number
  readonly cb: () => void
}

export class DurableWaiters {
  private items: Waiter[] = []

  /** Calls `cb` now if `seq` is already durable (`durableSeq`), else queues it. */
  add(seq: number, cb: () => void, durableSeq: number): void {
    if (seq <= durableSeq) {
      cb()
      return
    }
    let i = this.items.length
    while (i > 0 && this.items[i - 1]!.seq > seq) i--
    this.items.splice(i, 0, { seq, cb })
  }

  /** Calls every callback whose seq is now durable, in order; rethrows the first error after all ran. */
  release(durableSeq: number): void {
    let n = 0
    while (n < this.items.length && this.items[n]!.seq <= durableSeq) n++
    if (n === 0) return
    const due = this.items.splice(0, n)
    let first: unknown = null
    for (const w of due) {
      try {
        w.cb()
      } catch (err) {
        first ??= err
      }
    }
    if (first !== null) throw first
  }
}

/**
 * A warning that may fire thousands of times a second (accept failures under
 * a connection flood), said at most once per interval: the first occurrence
 * at once, then one line per interval with the count of what happened in it,
 * and silence again once an interval passes with none.
 *
 * Invariant: every hit is counted in exactly one emitted line (stop() drops
 * only the count of the interval under way).
 */
export class Throttled {
  private readonly intervalMs: number
  private readonly emit: (count: number, detail: unknown) => void
  private pending = 0
  private detail: unknown
  private timer: NodeJS.Timeout | null = null

  constructor(intervalMs: number, emit: (count: number, detail: unknown) => void) {
    this.intervalMs = intervalMs
    this.emit = emit
  }

  hit(detail?: unknown): void {
    if (this.timer === null) {
      this.emit(1, detail)
      this.arm()
      return
    }
    this.pending++
    this.detail = detail
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = null
      if (this.pending === 0) return
      const n = this.pending
      this.pending = 0
      this.emit(n, this.detail)
      this.arm()
    }, this.intervalMs)
    this.timer.unref()
  }
}

/**
 * A fixed-bucket latency histogram, the shape Prometheus scrapes: the stores
 * time each fsync into one (a few additions per fsync, nothing per command),
 * and /metrics reads it at scrape time.
 *
 * Invariants: `counts[i]` is the number of observations in
 * (BOUNDS[i-1], BOUNDS[i]] seconds, the last slot everything above the last
 * bound; `count` is their sum and `sum` the total of the observed seconds.
 */

/** Upper bounds in seconds: 50 us (a fast NVMe fsync) to 10 s (a stalled disk). */
export const LATENCY_BOUNDS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]

/** What a reader sees: bounds in seconds, per-bucket counts (not cumulative), sum and count. */
export interface HistogramView {
  readonly bounds: readonly number[]
  readonly counts: ArrayLike<number>
  readonly sum: number
  readonly count: number
}

export class LatencyHistogram implements HistogramView {
  readonly bounds = LATENCY_BOUNDS
  readonly counts = new Float64Array(LATENCY_BOUNDS.length + 1)
  sum = 0
  count = 0

  /** One observation, in milliseconds (performance.now() differences). */
  observeMs(ms: number): void {
    const s = ms / 1000
    let i = 0
    while (i < this.bounds.length && s > this.bounds[i]!) i++
    this.counts[i] = this.counts[i]! + 1
    this.sum += s
    this.count++
  }

  /** Times `fn` into the histogram. */
  time<T>(fn: () => T): T {
    const t0 = performance.now()
    try {
      return fn()
    } finally {
      this.observeMs(performance.now() - t0)
    }
  }
}

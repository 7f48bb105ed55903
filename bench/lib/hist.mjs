// @ts-check
/**
 * Log-linear latency histogram in nanoseconds (the C loadgen's layout, so the
 * two report the same percentiles): exact below 128 ns, then 64 sub-buckets
 * per power of two (about 1.6 % wide). Values of 2^32 ns (4.3 s) and above
 * land in the last bucket; `max` keeps the true maximum.
 */

export const HB = 2560

export class Hist {
  constructor() {
    this.c = new Float64Array(HB)
    this.n = 0
    this.max = 0
    this.sum = 0
  }

  /** @param {number} ns a non-negative duration in nanoseconds */
  add(ns) {
    let v = ns > 0 ? Math.round(ns) : 0
    if (v > this.max) this.max = v
    this.n++
    this.sum += v
    if (v >= 4294967296) v = 4294967295
    let i
    if (v < 128) i = v
    else {
      const sh = 25 - Math.clz32(v) // e - 6 with e = 31 - clz32(v)
      i = (sh << 6) + (v >>> sh)
    }
    this.c[i] = (this.c[i] ?? 0) + 1
  }

  reset() {
    this.c.fill(0)
    this.n = 0
    this.max = 0
    this.sum = 0
  }

  /** @param {{c: Float64Array, n: number, max: number, sum: number}} o */
  merge(o) {
    for (let i = 0; i < HB; i++) this.c[i] = (this.c[i] ?? 0) + (o.c[i] ?? 0)
    this.n += o.n
    this.sum += o.sum
    if (o.max > this.max) this.max = o.max
  }

  /** @returns {{c: Float64Array, n: number, max: number, sum: number}} */
  toJSON() {
    return { c: this.c, n: this.n, max: this.max, sum: this.sum }
  }

  /** Percentile in microseconds (q in 0..1), nearest-rank, bucket midpoint. @param {number} q */
  pctUs(q) {
    if (this.n === 0) return 0
    let rank = Math.ceil(q * this.n)
    if (rank < 1) rank = 1
    let acc = 0
    for (let i = 0; i < HB; i++) {
      acc += this.c[i] ?? 0
      if (acc >= rank) {
        const v = bucketValue(i)
        return (v > this.max ? this.max : v) / 1000
      }
    }
    return this.max / 1000
  }
}

/** Representative value (midpoint) of bucket i. @param {number} i */
function bucketValue(i) {
  if (i < 128) return i
  const sh = (i >> 6) - 1
  const m = i - (sh << 6)
  return m * 2 ** sh + Math.floor(2 ** sh / 2)
}

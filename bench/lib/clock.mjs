// @ts-check
/**
 * One monotonic clock in milliseconds shared by every thread of the generator:
 * performance.now() is uv_hrtime relative to a per-thread origin, so adding
 * the origin's offset against process.hrtime (computed once per thread) gives
 * a reading that threads can compare (the mixed scenario stamps a job in one
 * thread and measures its arrival in another).
 */
import { performance } from 'node:perf_hooks'

function offset() {
  let best = Infinity
  let off = 0
  for (let i = 0; i < 5; i++) {
    const a = performance.now()
    const h = process.hrtime()
    const b = performance.now()
    if (b - a < best) {
      best = b - a
      off = h[0] * 1e3 + h[1] / 1e6 - (a + b) / 2
    }
  }
  return off
}

const OFFSET = offset()

/** Monotonic milliseconds (fractional), comparable across threads. */
export function mono() {
  return performance.now() + OFFSET
}

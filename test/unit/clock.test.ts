/** The system clock: whole milliseconds, monotonic, never behind real time. */
import { describe, expect, it } from 'vitest'
import { systemClock } from '../../src/util/clock.js'

describe('systemClock', () => {
  it('gives whole ms, rounded up, that never go backwards', async () => {
    let last = systemClock.now()
    for (let i = 0; i < 1000; i++) {
      const before = performance.now()
      const t = systemClock.now()
      expect(Number.isInteger(t)).toBe(true)
      expect(t).toBeGreaterThanOrEqual(before) // rounded up, never behind
      expect(t).toBeLessThan(performance.now() + 1)
      expect(t).toBeGreaterThanOrEqual(last)
      last = t
    }
    // It moves with real time. Node's timers may fire a little early against
    // performance.now(), so wait until 5 ms have really passed.
    const start = performance.now()
    const t0 = systemClock.now()
    while (performance.now() < start + 5) await new Promise((r) => setTimeout(r, 1))
    // t0 < start + 1 (plus the tiny gap between the two calls); now >= start + 5.
    expect(systemClock.now() - t0).toBeGreaterThanOrEqual(4)
  })
})

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
    await new Promise((r) => setTimeout(r, 5))
    expect(systemClock.now() - last).toBeGreaterThanOrEqual(5)
  })
})

/** The system clock: whole milliseconds, one reading per callback, never behind real time. */
import { describe, expect, it } from 'vitest'
import { systemClock } from '../../src/util/clock.js'

describe('systemClock', () => {
  it('gives whole ms, the same value within one callback, and a fresh one in the next', async () => {
    const a = systemClock.now()
    const spin = performance.now() + 3
    while (performance.now() < spin) {
      // busy: real time moves on inside this callback
    }
    expect(systemClock.now()).toBe(a)
    expect(Number.isInteger(a)).toBe(true)
    await new Promise((r) => setTimeout(r, 5))
    const before = performance.now()
    const b = systemClock.now()
    expect(b).toBeGreaterThanOrEqual(before) // rounded up, never behind
    expect(b - a).toBeGreaterThanOrEqual(5)
  })
})

/**
 * When the reclaimer collects: only after a large drop in what the queue
 * holds, to a quarter of its peak or less, once the drop has settled, or
 * after the open connections changed by thousands and settled; then
 * once more SHRINK_AFTER_MS later; never while the queue just holds steady
 * or shrinks a little. Samples are taken by hand (check()); the follow-up
 * collection's timer runs on vitest's fake clock.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { MemoryReclaimer, type Held } from '../../src/server/memory-reclaim.js'

const MB = 1024 * 1024
let held: Held
let gcs: number
let m: MemoryReclaimer

beforeEach(() => {
  vi.useFakeTimers()
  held = { jobs: 0, bodyBytes: 0, connections: 0 }
  gcs = 0
  m = new MemoryReclaimer(
    () => held,
    () => gcs++,
  )
})
afterEach(() => {
  m.stop()
  vi.useRealTimers()
})

const hold = (jobs: number, bodyMb: number): void => {
  held = { jobs, bodyBytes: bodyMb * MB, connections: 0 }
  m.check()
}

describe('MemoryReclaimer', () => {
  it('collects once after a drained backlog has settled, and once more 5.5 s later', () => {
    hold(1_000_000, 100)
    hold(1_000_000, 100)
    hold(400_000, 40) // draining
    expect(gcs).toBe(0)
    hold(0, 0) // the drop is still moving on this sample
    expect(gcs).toBe(0)
    hold(0, 0) // settled
    expect(gcs).toBe(1)
    hold(0, 0)
    expect(gcs).toBe(1) // the peak was reset: no collection per sample
    vi.advanceTimersByTime(5500)
    expect(gcs).toBe(2)
  })

  it('lets go of what is kept for reuse (spare body slabs) before each of its collections', () => {
    const calls: string[] = []
    const r = new MemoryReclaimer(
      () => held,
      () => calls.push('gc'),
      () => calls.push('drop'),
    )
    try {
      held = { jobs: 1_000_000, bodyBytes: 100 * MB, connections: 0 }
      r.check()
      held = { jobs: 0, bodyBytes: 0, connections: 0 }
      r.check()
      r.check()
      vi.advanceTimersByTime(5500)
      expect(calls).toEqual(['drop', 'gc', 'drop', 'gc'])
    } finally {
      r.stop()
    }
  })

  it('leaves a steady queue, a small one and a partial drain alone', () => {
    for (let i = 0; i < 20; i++) hold(1_000_000, 100)
    for (let i = 0; i < 5; i++) hold(600_000, 60) // down 40 %: not drained
    for (let i = 0; i < 5; i++) hold(50_000, 5)
    expect(gcs).toBe(1) // 1,000,000 -> 50,000: drained
    const small = new MemoryReclaimer(
      () => held,
      () => gcs++,
    )
    for (const jobs of [60_000, 60_000, 0, 0, 0]) {
      held = { jobs, bodyBytes: 0, connections: 0 }
      small.check() // 15 MB of jobs: below the 32 MiB worth collecting for
    }
    expect(gcs).toBe(1)
  })

  it('collects once after thousands of connections came (or went) and their number settled; not for a few hundred', () => {
    const conns = (n: number): void => {
      held = { jobs: 0, bodyBytes: 0, connections: n }
      m.check()
    }
    for (const n of [0, 3000, 7000, 10_000]) conns(n) // arriving
    expect(gcs).toBe(0)
    conns(10_000) // settled
    expect(gcs).toBe(1)
    for (let i = 0; i < 10; i++) conns(10_000 + (i % 2) * 50)
    expect(gcs).toBe(1) // holding steady: nothing more
    vi.advanceTimersByTime(5500)
    expect(gcs).toBe(2) // the follow-up that lets V8 shrink its young generation
    for (const n of [10_500, 11_000, 11_000, 11_000]) conns(n)
    expect(gcs).toBe(2) // 1,000 more: not worth a collection
    for (const n of [6000, 2000, 2000]) conns(n)
    expect(gcs).toBe(3) // 9,000 closed
  })
})

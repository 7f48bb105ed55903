/**
 * Memory comes back after a backlog drains: a server that held 300,000 jobs
 * and deleted them all gets back near the RSS it had idle, on its own
 * (MemoryReclaimer), within a bounded wait. Without it V8 kept every
 * deleted job and body slab until allocation forced a collection, which
 * an idle server never does.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { memoryOf, pipelined } from '../helpers/bulk.js'
import { ensureBuilt, killAll, spawnCli } from '../helpers/process.js'

const JOBS = 300_000
const BODY = 'y'.repeat(200)

beforeAll(() => ensureBuilt())
afterEach(async () => {
  await killAll()
})

describe('after a backlog drains', () => {
  it('RSS returns to within 1.5x of the idle server', { timeout: 120_000 }, async () => {
    const proc = spawnCli(['-p0', '-l127.0.0.1'])
    const port = (await proc.listening(10_000)).port!
    const idle = memoryOf(proc.pid).rss
    await pipelined(port, JOBS, () => `put 0 0 60 ${BODY.length}\r\n${BODY}\r\n`, /^INSERTED \d+$/, 60_000)
    const full = memoryOf(proc.pid).rss
    expect(full).toBeGreaterThan(2 * idle) // the backlog was big enough to show
    await pipelined(port, JOBS, (i) => `delete ${i + 1}\r\n`, /^DELETED$/, 60_000)
    // Polled, not timed: the reclaimer collects within about a second of the drop settling, and again 5.5 s later.
    let rss = full
    for (const end = Date.now() + 30_000; Date.now() < end; ) {
      rss = memoryOf(proc.pid).rss
      if (rss <= 1.5 * idle) break
      await new Promise((r) => setTimeout(r, 250))
    }
    expect(rss, `idle ${idle.toFixed(0)} MiB, full ${full.toFixed(0)} MiB, after ${rss.toFixed(0)} MiB`).toBeLessThanOrEqual(1.5 * idle)
  })
})

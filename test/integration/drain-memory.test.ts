/**
 * Memory comes back after a backlog drains: a server that held 300,000 jobs
 * and deleted them all gets back near the RSS it had idle, on its own
 * (MemoryReclaimer), within a bounded wait. Without it V8 kept every
 * deleted job and body slab until allocation forced a collection, which
 * an idle server never does.
 *
 * The second drain runs with glibc's mmap threshold fixed, as
 * contrib/systemd/tsbeanstalkd.service sets it: by default glibc raises the
 * threshold when the first drain frees the 1 MiB body slabs, later slabs
 * come from the heap, and the second drain's memory stays (measured: 62
 * then 123 MiB against 57 idle). README, "Operating it".
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { memoryOf, pipelined } from '../helpers/bulk.js'
import { ensureBuilt, killAll, spawnCli, spawnScript } from '../helpers/process.js'

const JOBS = 300_000
const BODY = 'y'.repeat(200)

beforeAll(() => ensureBuilt())
afterEach(async () => {
  await killAll()
})

/** Fills the server with JOBS jobs (ids from firstId), deletes them all, and polls until RSS is back near idle. */
async function fillAndDrain(port: number, pid: number, idle: number, firstId: number): Promise<{ full: number; rss: number }> {
  await pipelined(port, JOBS, () => `put 0 0 60 ${BODY.length}\r\n${BODY}\r\n`, /^INSERTED \d+$/, 60_000)
  const full = memoryOf(pid).rss
  await pipelined(port, JOBS, (i) => `delete ${firstId + i}\r\n`, /^DELETED$/, 60_000)
  // Polled, not timed: the reclaimer collects within about a second of the drop settling, and again 5.5 s later.
  let rss = full
  for (const end = Date.now() + 30_000; Date.now() < end; ) {
    rss = memoryOf(pid).rss
    if (rss <= 1.5 * idle) break
    await new Promise((r) => setTimeout(r, 250))
  }
  return { full, rss }
}

describe('after a backlog drains', () => {
  it('RSS returns to within 1.5x of the idle server', { timeout: 120_000 }, async () => {
    const proc = spawnCli(['-p0', '-l127.0.0.1'])
    const port = (await proc.listening(10_000)).port!
    const idle = memoryOf(proc.pid).rss
    const { full, rss } = await fillAndDrain(port, proc.pid, idle, 1)
    expect(full).toBeGreaterThan(2 * idle) // the backlog was big enough to show
    expect(rss, `idle ${idle.toFixed(0)} MiB, full ${full.toFixed(0)} MiB, after ${rss.toFixed(0)} MiB`).toBeLessThanOrEqual(1.5 * idle)
  })

  it('and again after a second backlog, with the mmap threshold the systemd unit sets', { timeout: 180_000 }, async () => {
    const proc = spawnScript('bin/tsbeanstalkd.js', ['-p0', '-l127.0.0.1'], { MALLOC_MMAP_THRESHOLD_: '131072' })
    const port = (await proc.listening(10_000)).port!
    const idle = memoryOf(proc.pid).rss
    for (const firstId of [1, JOBS + 1]) {
      const { full, rss } = await fillAndDrain(port, proc.pid, idle, firstId)
      expect(rss, `drain from id ${firstId}: idle ${idle.toFixed(0)} MiB, full ${full.toFixed(0)} MiB, after ${rss.toFixed(0)} MiB`).toBeLessThanOrEqual(1.5 * idle)
    }
  })
})

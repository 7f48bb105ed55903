/**
 * Bounded disk (the reference's #622): fast put/delete traffic mixed with
 * long-delayed, buried and repeatedly released jobs. Without compaction the
 * log would grow by every record; with it, the directory stays within a small
 * multiple of the live data, and replay is still exact.
 */
import { describe, expect, it } from 'vitest'
import { prng } from '../helpers/prng.js'
import { Model, binlogBytes, binlogFiles, expectedAll, plain, tmpDir, type TestJob } from './helpers.js'

const FILE_SIZE = 16 * 1024

async function churn(m: Model, iterations: number, commitEvery: number): Promise<{ maxDisk: number; maxBound: number; written: number }> {
  const rnd = prng(622)
  const longDelayed: TestJob[] = []
  const buried: TestJob[] = []
  const bouncing: TestJob[] = []
  for (let i = 0; i < 100; i++) longDelayed.push(m.put('delayed '.repeat(25), { delayMs: 86_400_000 })!)
  for (let i = 0; i < 50; i++) {
    const j = m.put('buried '.repeat(30))!
    m.reserve(j)
    m.bury(j)
    buried.push(j)
  }
  for (let i = 0; i < 20; i++) bouncing.push(m.put('bounce '.repeat(20))!)
  const fast: TestJob[] = []
  let maxDisk = 0
  let maxBound = 0
  let written = 0
  for (let i = 0; i < iterations; i++) {
    const j = m.put('x'.repeat(100 + rnd.int(900)))!
    written += j.body.length
    fast.push(j)
    if (fast.length > 30) m.delete(fast.splice(rnd.int(fast.length), 1)[0]!)
    const b = bouncing[i % bouncing.length]!
    m.reserve(b)
    m.release(b, rnd.int(1000))
    if (i % commitEvery === commitEvery - 1) await m.commit()
    if (i % 200 === 0) {
      await m.commit()
      const s = m.bl.stats()
      const disk = binlogBytes(m.dir)
      expect(s.diskBytes).toBe(disk) // the accounting matches the directory
      maxDisk = Math.max(maxDisk, disk)
      const bound = 4 * s.liveBytes + 3 * FILE_SIZE
      maxBound = Math.max(maxBound, bound)
      expect(disk).toBeLessThanOrEqual(bound)
    }
  }
  return { maxDisk, maxBound, written }
}

describe('churn keeps the disk bounded', () => {
  it('-F: 20k puts and deletes among long-delayed, buried and bouncing jobs', async () => {
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncNever: true })
    m.open()
    const r = await churn(m, 20_000, 10)
    const s = m.bl.stats()
    expect(r.written).toBeGreaterThan(200 * r.maxDisk / 10) // the log saw far more than it keeps
    expect(s.recordsMigrated).toBeGreaterThan(0)
    expect(binlogFiles(m.dir).length).toBeLessThanOrEqual(Math.ceil(r.maxBound / FILE_SIZE) + 2)
    const want = expectedAll(m)
    expect(plain(m.restart())).toEqual(want)
  })

  it('-f 0 with real fsync: removals wait for fsyncs, and the bound still holds', async () => {
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0 })
    m.open()
    await churn(m, 4_000, 40)
    const want = expectedAll(m)
    expect(plain(m.restart())).toEqual(want)
  })
})

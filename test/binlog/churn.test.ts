/**
 * Bounded disk (the reference's #622): fast put/delete traffic mixed with
 * long-delayed, buried and repeatedly released jobs. Without compaction the
 * log would grow by every record; with it, the directory stays within a small
 * multiple of the live data, and replay is still exact.
 */
import { describe, expect, it } from 'vitest'
import { Model, binlogBytes, binlogFiles, churn, expectedAll, plain, tmpDir } from './helpers.js'

const FILE_SIZE = 16 * 1024

/** The shared churn mix, checking the disk against its bound every 200 iterations. */
async function churnBounded(m: Model, iterations: number, commitEvery: number): Promise<{ maxDisk: number; maxBound: number; written: number }> {
  let maxDisk = 0
  let maxBound = 0
  const written = await churn(m, iterations, {
    commitEvery,
    sampleEvery: 200,
    sample: () => {
      const s = m.bl.stats()
      const disk = binlogBytes(m.dir)
      expect(s.diskBytes).toBe(disk) // the accounting matches the directory
      maxDisk = Math.max(maxDisk, disk)
      const bound = 4 * s.liveBytes + 3 * FILE_SIZE
      maxBound = Math.max(maxBound, bound)
      expect(disk).toBeLessThanOrEqual(bound)
    },
  })
  return { maxDisk, maxBound, written }
}

describe('churn keeps the disk bounded', () => {
  it('-F: 20k puts and deletes among long-delayed, buried and bouncing jobs', async () => {
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncNever: true })
    await m.open()
    const r = await churnBounded(m, 20_000, 10)
    const s = m.bl.stats()
    expect(r.written).toBeGreaterThan(200 * r.maxDisk / 10) // the log saw far more than it keeps
    expect(s.recordsMigrated).toBeGreaterThan(0)
    expect(binlogFiles(m.dir).length).toBeLessThanOrEqual(Math.ceil(r.maxBound / FILE_SIZE) + 2)
    const want = expectedAll(m)
    expect(plain(await m.restart())).toEqual(want)
  })

  it('-f 0 with real fsync: removals wait for fsyncs, and the bound still holds', async () => {
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0 })
    await m.open()
    await churnBounded(m, 4_000, 40)
    const want = expectedAll(m)
    expect(plain(await m.restart())).toEqual(want)
  })
})

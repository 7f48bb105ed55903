/**
 * What a replay shows while it runs, for each engine: the Readiness says
 * `replaying` with progress counts, the event loop keeps turning (timers
 * and I/O run between batches of records), and progress lines go to the
 * log with files, records, jobs, rate and time left.
 */
import { describe, expect, it } from 'vitest'
import { Readiness, ReadyState } from '../../src/util/readiness.js'
import { Model, type LogLine } from '../binlog/helpers.js'
import { ENGINES } from './engines.js'

const JOBS = 6000

describe.each(ENGINES)('$name', (engine) => {
  it('reports progress to the Readiness and the log, and yields to the event loop while it replays', async () => {
    const readiness = new Readiness()
    const states: string[] = []
    readiness.onChange((s) => states.push(s))
    // yieldMs 0: a pause every 256 records (the binlog) or page of rows (SQLite), whatever the machine's speed.
    const m = new Model(undefined, { readiness, progressMs: 0, yieldMs: 0, fileSize: 64 * 1024 }, engine)
    await m.open()
    for (let i = 0; i < JOBS; i++) m.put(`job ${i}`, { tube: i % 3 === 0 ? 'other' : 'default' })
    await m.commit()
    m.bl.close()

    let turns = 0
    let turning = true
    const tick = (): void => {
      turns++
      if (turning) setImmediate(tick)
    }
    setImmediate(tick)
    const before = m.lines.length
    const again = new Model(m.dir, m.overrides, engine)
    await again.open()
    turning = false

    expect(again.recovered).toHaveLength(JOBS)
    expect(states).toContain(ReadyState.REPLAYING)
    expect(readiness.progress).toMatchObject({ records: expect.any(Number), jobs: JOBS })
    expect(readiness.progress!.records).toBeGreaterThanOrEqual(JOBS)
    expect(turns).toBeGreaterThan(1)
    const progress = again.lines.filter((l: LogLine) => / replaying$/.test(l.msg))
    expect(progress.length, JSON.stringify(m.lines.slice(before))).toBeGreaterThan(1)
    const last = progress[progress.length - 1]!
    expect(last).toMatchObject({ records: expect.any(Number), jobs: expect.any(Number), recordsPerSec: expect.any(Number), seconds: expect.any(Number) })
    expect(last['percent']).toBeGreaterThan(0)
    expect(last['secondsLeft']).toBeGreaterThanOrEqual(0)
    if (engine.name === 'binlog') expect(last).toMatchObject({ files: expect.any(Number), filesTotal: again.bl.stats().currentIndex - 1 })
    else expect(last['recordsTotal']).toBe(JOBS)
  })
})

describe('a replay after SIGUSR1 came during the start', () => {
  it('leaves the Readiness at draining (not ready either way), and still reports progress', async () => {
    const m = new Model(undefined, { fileSize: 64 * 1024 })
    await m.open()
    for (let i = 0; i < 1000; i++) m.put(`job ${i}`)
    await m.commit()
    m.bl.close()
    const readiness = new Readiness()
    readiness.set(ReadyState.DRAINING)
    const again = new Model(m.dir, { ...m.overrides, readiness, yieldMs: 0 })
    await again.open()
    expect(readiness.state).toBe(ReadyState.DRAINING)
    expect(readiness.progress).toMatchObject({ jobs: 1000 })
  })
})

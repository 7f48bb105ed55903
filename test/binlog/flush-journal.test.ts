/**
 * flush-tube's journaling through the registry into a real binlog: with an
 * engine that has deleteMany, one record per slice; with one that has not
 * (the PostgreSQL store), a DELETE per job through the same registry path.
 * Either way, after a restart the flushed tube's jobs (a reserved one among
 * them) are gone and the other tube's are all there.
 */
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { ListState } from '../../src/protocol/admin-verbs.js'
import { TubeFlush } from '../../src/queue/extensions/flush.js'
import { Registry } from '../../src/queue/registry.js'
import type { Journal } from '../../src/queue/journal.js'
import { TimingWheel } from '../../src/queue/timing-wheel.js'
import { Binlog } from '../../src/store/binlog/binlog.js'
import { ManualClock } from '../../src/util/clock.js'
import { RecordingWaiter } from '../helpers/queue.js'
import { putBody } from '../helpers/put-body.js'
import { tmpDir } from './helpers.js'

const N = 5000

async function open(dir: string): Promise<{ r: Registry; b: Binlog }> {
  const clock = new ManualClock(1_000_000)
  const r = new Registry(clock, new TimingWheel(clock.now()))
  const b = await Binlog.open(
    { dir, fileSize: 8 << 20, fsyncMs: 0, fsyncNever: true, maxJobSize: 65535, log: pino({ level: 'silent' }), clock, yieldMs: 0 },
    r,
  )
  return { r, b }
}

/** The binlog as the registry sees an engine without deleteMany. */
function withoutDeleteMany(b: Binlog): Journal {
  return {
    canPut: () => b.canPut(),
    put: (j) => b.put(j),
    update: (j) => b.update(j),
    delete: (j) => b.delete(j),
    fileOf: (id) => b.fileOf(id),
  }
}

describe.each([
  { name: 'an engine with deleteMany', batched: true },
  { name: 'an engine without it', batched: false },
])('flush-tube journaled by $name', ({ batched }) => {
  it('deletes the tube in slices, every job journaled; the other tube stays', async () => {
    const dir = tmpDir()
    let { r, b } = await open(dir)
    r.journal = batched ? b : withoutDeleteMany(b)
    const s = r.openSession(new RecordingWaiter())
    for (let i = 0; i < N; i++) {
      r.use(s, i % 3 === 0 ? 'keep' : 'gone')
      putBody(r, s, i % 7, 0, 60, Buffer.from(`j${i}\r\n`))
    }
    r.watch(s, 'gone')
    r.ignore(s, 'default')
    expect((r.reserveOrWait(s, 0) as { tube: { name: string } }).tube.name).toBe('gone')
    b.flush()
    const before = b.stats().recordsWritten
    const tube = r.tubes.get('gone')!
    const flush = new TubeFlush(r, tube, ListState.ALL)
    let steps = 1
    while (flush.step()) steps++
    b.flush()
    const gone = N - Math.ceil(N / 3)
    expect(flush.deleted).toBe(gone)
    expect(b.stats().recordsWritten - before).toBe(batched ? Math.ceil(N / 2048) : gone)
    expect(steps).toBeGreaterThanOrEqual(Math.ceil(N / 2048))
    expect(tube.jobCount).toBe(0)
    b.close()

    ;({ r, b } = await open(dir))
    expect(r.tubes.get('gone')?.ready.size ?? 0).toBe(0)
    expect(r.tubes.get('keep')!.ready.size).toBe(Math.ceil(N / 3))
    expect(b.stats().liveJobs).toBe(Math.ceil(N / 3))
    b.close()
  })
})

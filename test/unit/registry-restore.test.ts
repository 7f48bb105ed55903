/**
 * The registry as a store's ReplaySink: records come in file order, jobs
 * wait outside their heaps until restoreEnd files them, and the result is
 * the queue the records describe (reserved and past-due delayed jobs ready,
 * bury order kept across tubes, empty tubes gone, ids continuing).
 */
import { beforeEach, describe, expect, it } from 'vitest'
import { JobState } from '../../src/queue/job.js'
import { Registry } from '../../src/queue/registry.js'
import type { Waiter } from '../../src/queue/session.js'
import { TimingWheel } from '../../src/queue/timing-wheel.js'
import type { ReplaySink, RestoredFields } from '../../src/store/store.js'
import { ManualClock } from '../../src/util/clock.js'

const NOW = 1_000_000
let clock: ManualClock
let wheel: TimingWheel
let r: Registry

beforeEach(() => {
  clock = new ManualClock(NOW)
  wheel = new TimingWheel(clock.now())
  r = new Registry(clock, wheel)
})

/** Compile time: the registry is what the stores replay into. */
export const registryIsASink = (x: Registry): ReplaySink => x

const fields = (id: number, over: Partial<RestoredFields> = {}): RestoredFields => ({
  id,
  state: JobState.READY,
  pri: 10,
  delayMs: 0,
  ttrMs: 60_000,
  createdAt: NOW - 5000,
  deadline: 0,
  reserves: 0,
  timeouts: 0,
  releases: 0,
  buries: 0,
  kicks: 0,
  ...over,
})

/** A body inside a larger buffer, as a read buffer holds it: `[start, end)` without the CRLF. */
function restore(id: number, tube: string, body: string, over: Partial<RestoredFields> = {}): void {
  const buf = Buffer.from(`garbage${body}more`, 'latin1')
  r.restoreJob(fields(id, over), tube, buf, 7, 7 + body.length)
}

const noWaiter: Waiter = { jobReserved: () => undefined, waitEnded: () => undefined }

describe('restore', () => {
  it('copies the body once with its CRLF, and files every state where it belongs', () => {
    restore(1, 'a', 'one')
    restore(2, 'a', 'two', { state: JobState.RESERVED, reserves: 3 })
    restore(3, 'b', 'three', { state: JobState.DELAYED, deadline: NOW + 10_000, delayMs: 20_000 })
    restore(4, 'b', 'four', { state: JobState.DELAYED, deadline: NOW - 1, delayMs: 5_000 })
    restore(5, 'c', 'five', { state: JobState.BURIED, buries: 1 })
    restore(6, 'a', 'six', { state: JobState.BURIED, buries: 2, kicks: 1 })
    r.restoreEnd([6, 5], 40)
    expect(r.peek(1)!.body.toString()).toBe('one\r\n')
    expect([1, 2, 4].map((id) => r.peek(id)!.state)).toEqual([JobState.READY, JobState.READY, JobState.READY])
    expect(r.peek(2)!.reserves).toBe(3)
    expect(r.peek(3)!.state).toBe(JobState.DELAYED)
    expect(r.peek(6)).toMatchObject({ state: JobState.BURIED, buries: 2, kicks: 1 })
    expect([r.readyCount, r.delayedCount, r.buriedCount, r.totalJobs]).toEqual([3, 1, 2, 0]) // no counter bumped
    expect(r.tubes.get('a')!.buried.head!.id).toBe(6)
    const s = r.openSession(noWaiter)
    expect(r.allocateId()).toBe(40)
    // The delayed job's timer is set: it becomes ready when its time comes.
    clock.advance(10_000)
    wheel.advance(clock.now())
    expect(r.peek(3)!.state).toBe(JobState.READY)
    r.closeSession(s)
  })

  it('applies later records: updates, deletes (body released), a job stored again; stale ones report false', () => {
    restore(1, 'a', 'one')
    restore(2, 'a', 'two')
    expect(r.restoreUpdate(fields(1, { state: JobState.BURIED, pri: 3, buries: 1 }))).toBe(true)
    expect(r.restoreUpdate(fields(9))).toBe(false)
    expect(r.restoreDelete(9)).toBe(false)
    const live = r.bodies.live
    expect(r.restoreDelete(2)).toBe(true)
    expect(r.bodies.live).toBe(live - 5)
    // The same job again (a compaction's copy): only its fields change, its body stays where it is.
    const slab = r.peek(1)!.slab
    restore(1, 'a', 'one', { state: JobState.READY, pri: 7, buries: 1, kicks: 1 })
    expect(r.peek(1)).toMatchObject({ pri: 7, kicks: 1 })
    expect(r.peek(1)!.slab).toBe(slab)
    // A different job under the id replaces it whole.
    restore(1, 'z', 'other')
    r.restoreEnd([], 3)
    expect(r.peek(1)!.body.toString()).toBe('other\r\n')
    expect(r.peek(1)!.tube.name).toBe('z')
    expect(r.peek(2)).toBeUndefined()
    // Tube a lost its jobs during the replay: it is gone; z and default stay.
    expect([...r.tubes.keys()].sort()).toEqual(['default', 'z'])
  })

  it('refuses a bury order that does not match the buried jobs', () => {
    restore(1, 'a', 'one', { state: JobState.BURIED })
    restore(2, 'a', 'two')
    expect(() => r.restoreEnd([2], 3)).toThrow(/not buried/)
  })
})

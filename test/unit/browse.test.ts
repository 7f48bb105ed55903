/**
 * list-jobs' ordered index (queue/ordered-index.ts, queue/tube-heap.ts)
 * against models: the index alone against a sorted array under random
 * inserts and removes (enough items to split and merge chunks) and random
 * seeks; then through a registry with the extensions on, under random puts,
 * reserves, releases, deletes, buries, kicks, reprioritize, redelay and
 * concurrency keys, every page read with list-jobs is the heap's jobs in the
 * heap's order, and the index is dropped when its heap empties (a flush);
 * the same with the index built in the background, the churn run between
 * its steps and pages read meanwhile without it.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ListState } from '../../src/protocol/admin-verbs.js'
import { PutTags } from '../../src/protocol/extensions.js'
import { listJobs } from '../../src/queue/extensions/browse.js'
import { TubeFlush } from '../../src/queue/extensions/flush.js'
import { QueueExtensions } from '../../src/queue/extensions/queue-extensions.js'
import { byDeadline, byPriority, JobState, type Job } from '../../src/queue/job.js'
import { OrderedIndex } from '../../src/queue/ordered-index.js'
import type { Session } from '../../src/queue/session.js'
import type { Tube } from '../../src/queue/tube.js'
import { indexBuild, type JobKey } from '../../src/queue/tube-heap.js'
import { prng } from '../helpers/prng.js'
import { TestQueue } from '../helpers/queue.js'

const fake = (id: number, pri: number, deadline: number): Job => ({ id, pri, deadline, heapIndex: -1 }) as unknown as Job
const byPriorityCmp = (a: JobKey, b: JobKey): number => a.pri - b.pri || a.id - b.id
const byDeadlineCmp = (a: JobKey, b: JobKey): number => a.deadline - b.deadline || a.id - b.id
const ids = (jobs: readonly Job[]): number[] => jobs.map((j) => j.id)

describe.each([
  ['ready order', byPriority, byPriorityCmp],
  ['delay order', byDeadline, byDeadlineCmp],
] as const)('OrderedIndex in %s', (_name, less, cmp) => {
  it('stays the sorted sequence under inserts and removes, and seeks after any key', () => {
    const r = prng(20261216)
    for (let round = 0; round < 6; round++) {
      const start: Job[] = []
      let id = 1
      for (const n = r.int(3000); id <= n; id++) start.push(fake(id, r.int(8), r.int(50)))
      const live = [...start]
      const index = new OrderedIndex<JobKey, Job>(less, start.sort(cmp))
      for (let op = 0; op < 6000; op++) {
        // Bursts of inserts and of removes, so chunks both split and run low and merge.
        const inserting = Math.floor(op / 1000) % 2 === 0 ? r.chance(0.8) : r.chance(0.2)
        if (inserting || live.length === 0) {
          const j = fake(id++, r.int(8), r.int(50))
          index.insert(j)
          live.push(j)
        } else {
          const j = live.splice(r.int(live.length), 1)[0]!
          expect(index.remove(j)).toBe(true)
        }
      }
      const sorted = [...live].sort(cmp)
      expect(index.size).toBe(sorted.length)
      expect(ids(index.toArray())).toEqual(ids(sorted))
      expect(index.remove(fake(id + 1, 0, 0))).toBe(false)
      for (let q = 0; q < 50; q++) {
        const limit = 1 + r.int(700)
        // The start, a live job, or a key no job has (a job deleted since).
        const pick = r.int(3)
        const key: JobKey | null =
          pick === 0 || sorted.length === 0 ? null : pick === 1 ? r.pick(sorted) : { id: id + r.int(5), pri: r.int(9), deadline: r.int(51) }
        const want = sorted.filter((j) => key === null || cmp(key, j) < 0).slice(0, limit)
        expect(ids(index.after(key, limit))).toEqual(ids(want))
      }
    }
  })
})

describe('list-jobs through the registry', () => {
  /** Every job list-jobs shows for the state, a page of `limit` at a time. */
  function pageAll(q: TestQueue, s: Session, t: Tube, state: ListState, limit: number): Job[] {
    const all: Job[] = []
    let after = 0
    for (;;) {
      const page = listJobs(q.r, s, t, state, after, limit)
      if (page === null) throw new Error(`cursor ${after} unknown`)
      if (page.length === 0) return all
      all.push(...page)
      after = page[page.length - 1]!.id
    }
  }

  const defaults = { ...indexBuild }
  afterEach(() => Object.assign(indexBuild, defaults))
  /** Background builds' steps, run when the test says (the 'in the background' case). */
  let steps: (() => void)[] = []
  const runSteps = (n: number): void => {
    for (let k = 0; k < n && steps.length > 0; k++) steps.shift()!()
  }

  it.each([
    ['built at once', false],
    ['built in the background, pages meanwhile read by a pass over the heap', true],
  ] as const)('pages are the heap in its order under random churn of every kind (index %s)', (_name, background) => {
    steps = []
    if (background) Object.assign(indexBuild, { syncMax: 0, step: 37, defer: (fn: () => void) => steps.push(fn) })
    const q = new TestQueue()
    const r = q.r
    const x = new QueueExtensions(r, prng(7).next)
    r.ext = x
    const rnd = prng(16)
    const [producer] = q.session()
    const workers = [q.session()[0], q.session()[0], q.session()[0]]
    const [browser] = q.session()
    const t = r.tube('default')
    const held: [Session, Job][] = []
    const put = (): void => {
      const pri = rnd.int(20)
      const delay = rnd.chance(0.3) ? 1 + rnd.int(5) : 0
      const { slab, off } = r.bodies.copyIn(Buffer.from('x\r\n'))
      if (rnd.chance(0.2)) {
        const tags = new PutTags()
        ;[tags.conKey, tags.conLimit] = [`c${rnd.int(3)}`, 1]
        x.put(producer, r.allocateId(), pri, delay, 60, slab, off, 3, tags)
      } else {
        r.put(producer, r.allocateId(), pri, delay, 60, slab, off, 3)
      }
    }
    for (let i = 0; i < 1500; i++) put()
    let keptR = false
    let keptD = false
    let scanned = 0
    let indexed = 0
    for (let step = 0; step < 4000; step++) {
      const op = rnd.int(11)
      const jobs = [...t.ready.slots, ...t.delayed.slots]
      if (op <= 2) put()
      else if (op === 3) {
        const s = rnd.pick(workers)
        const j = r.reserveOrWait(s, 0)
        if (j !== null && !Buffer.isBuffer(j)) held.push([s, j])
      } else if (op === 4 && held.length > 0) {
        const [s, j] = held.splice(rnd.int(held.length), 1)[0]!
        r.release(s, j.id, rnd.int(20), rnd.chance(0.3) ? 1 + rnd.int(3) : 0)
      } else if (op === 5 && held.length > 0) {
        const [s, j] = held.splice(rnd.int(held.length), 1)[0]!
        if (rnd.chance(0.5)) r.delete(s, j.id)
        else r.bury(s, j.id, rnd.int(20))
      } else if (op === 6 && jobs.length > 0) r.reprioritize(rnd.pick(jobs).id, rnd.int(20))
      else if (op === 7 && jobs.length > 0) r.redelay(rnd.pick(jobs).id, rnd.int(3))
      else if (op === 8) r.kick(producer, 1 + rnd.int(5))
      else if (op === 9) q.advance(500)
      else if (op === 10 && jobs.length > 0) {
        const j = rnd.pick(jobs)
        const s = rnd.pick(workers)
        if (r.reserveById(s, j.id) !== null) held.push([s, j])
      }
      // The churn runs between a background build's steps, so they see every kind of change.
      if (background && rnd.chance(0.4)) runSteps(1 + rnd.int(3))
      // An index (or a build) is dropped only when its heap empties (a removal it could not find would drop it too: drift).
      if (t.ready.size === 0) keptR = false
      if (t.delayed.size === 0) keptD = false
      if (keptR) expect(t.ready.browsed || t.ready.indexing).toBe(true)
      if (keptD) expect(t.delayed.browsed || t.delayed.indexing).toBe(true)
      if (step % 50 === 0 || step < 20) {
        for (const h of [t.ready, t.delayed]) {
          if (h.indexing) scanned++
          else if (h.browsed) indexed++
        }
        const readyWant = [...t.ready.slots].sort(byPriorityCmp)
        const delayedWant = [...t.delayed.slots].sort(byDeadlineCmp)
        expect(ids(pageAll(q, browser, t, ListState.READY, 1 + rnd.int(200)))).toEqual(ids(readyWant))
        expect(ids(pageAll(q, browser, t, ListState.DELAYED, 1 + rnd.int(200)))).toEqual(ids(delayedWant))
        keptR = t.ready.size > 0
        keptD = t.delayed.size > 0
        // Parked jobs (behind a concurrency key) are not in the heap and not listed.
        expect(readyWant.every((j) => j.state === JobState.READY)).toBe(true)
      }
    }
    expect(t.parked).toBeGreaterThan(0)
    pageAll(q, browser, t, ListState.READY, 100)
    pageAll(q, browser, t, ListState.DELAYED, 100)
    expect(t.ready.size > 0 && t.delayed.size > 0).toBe(true)
    if (background) {
      // Pages were read by the pass over the heap while builds ran, and builds finished and served pages too.
      expect(scanned).toBeGreaterThan(5)
      expect(indexed).toBeGreaterThan(5)
      runSteps(Infinity)
      expect(t.ready.indexing || t.delayed.indexing).toBe(false)
    }
    expect(t.ready.browsed && t.delayed.browsed).toBe(true)
    // A finished build is the heap in its order, kept in step from then on.
    expect(ids(pageAll(q, browser, t, ListState.READY, 1000))).toEqual(ids([...t.ready.slots].sort(byPriorityCmp)))
    expect(ids(pageAll(q, browser, t, ListState.DELAYED, 1000))).toEqual(ids([...t.delayed.slots].sort(byDeadlineCmp)))
    // A flush empties both heaps: the indexes go with the last job.
    const flush = new TubeFlush(r, t, ListState.ALL)
    while (flush.step());
    expect(t.ready.size + t.delayed.size).toBe(0)
    expect(t.ready.browsed || t.delayed.browsed).toBe(false)
    // Browsing an empty heap builds nothing; the next put is not mirrored into anything.
    expect(listJobs(r, browser, t, ListState.READY, 0, 10)).toEqual([])
    expect(t.ready.browsed).toBe(false)
  })

  it('keeps its place when the cursor job goes away, and never builds an index for a tube not browsed', () => {
    const q = new TestQueue()
    const r = q.r
    r.ext = new QueueExtensions(r, prng(3).next)
    const [s] = q.session()
    const [w] = q.session()
    const t = r.tube('default')
    for (let i = 0; i < 10; i++) {
      const { slab, off } = r.bodies.copyIn(Buffer.from('x\r\n'))
      r.put(s, r.allocateId(), 5, 0, 60, slab, off, 3)
    }
    expect(t.ready.browsed).toBe(false)
    const first = listJobs(r, s, t, ListState.READY, 0, 4)!
    expect(t.ready.browsed).toBe(true)
    expect(t.delayed.browsed).toBe(false)
    const cursor = first[3]!
    expect(r.reserveById(w, cursor.id)).not.toBeNull()
    r.delete(w, cursor.id)
    expect(ids(listJobs(r, s, t, ListState.READY, cursor.id, 100)!)).toEqual([5, 6, 7, 8, 9, 10])
    for (let j = r.reserveOrWait(w, 0); j !== null && !Buffer.isBuffer(j); j = r.reserveOrWait(w, 0));
    expect(t.ready.size).toBe(0)
    expect(t.ready.browsed).toBe(false)
  })
})

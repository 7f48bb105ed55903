/**
 * list-jobs' heap walk (queue/extensions/browse.ts heapPage) against a
 * model: for random heaps (with churn, so the heap's shape is not the
 * insertion order) and random cursors, a page is exactly the sorted order's
 * slice after the cursor, in ready order (priority, id) and delay order
 * (due time, id).
 */
import { describe, expect, it } from 'vitest'
import { heapPage } from '../../src/queue/extensions/browse.js'
import { Heap } from '../../src/queue/heap.js'
import { byDeadline, byPriority, type Job } from '../../src/queue/job.js'
import { prng } from '../helpers/prng.js'

type Key = Pick<Job, 'id' | 'pri' | 'deadline'>
const fake = (id: number, pri: number, deadline: number): Job => ({ id, pri, deadline, heapIndex: -1 }) as unknown as Job

describe.each([
  ['ready order', byPriority, (a: Key, b: Key) => a.pri - b.pri || a.id - b.id],
  ['delay order', byDeadline, (a: Key, b: Key) => a.deadline - b.deadline || a.id - b.id],
] as const)('heapPage in %s', (_name, less, cmp) => {
  it('is the sorted slice after any cursor, for any limit, after churn', () => {
    const r = prng(20261216)
    for (let round = 0; round < 40; round++) {
      const heap = new Heap<Job>(less)
      const live: Job[] = []
      const n = 1 + r.int(400)
      for (let id = 1; id <= n; id++) {
        const j = fake(id, r.int(8), r.int(50))
        heap.push(j)
        live.push(j)
        // Churn: removals from the middle reshape the heap.
        if (r.chance(0.2) && live.length > 1) {
          const k = live.splice(r.int(live.length), 1)[0]!
          heap.remove(k)
        }
      }
      const sorted = [...live].sort(cmp)
      for (let q = 0; q < 20; q++) {
        const limit = 1 + r.int(30)
        // A cursor: the start, a live job, or a key no job has (a job deleted since).
        const pick = r.int(3)
        const key: Key | null = pick === 0 ? null : pick === 1 ? r.pick(live) : { id: n + 1 + r.int(5), pri: r.int(9), deadline: r.int(51) }
        const want = sorted.filter((j) => key === null || cmp(key, j) < 0).slice(0, limit)
        const got = heapPage(heap, less as (a: Key, b: Key) => boolean, key, limit)
        if (got.length !== want.length || got.some((j, i) => j !== want[i])) {
          expect(got.map((j) => j.id)).toEqual(want.map((j) => j.id))
        }
      }
    }
  })

  it('pages through the whole heap without gaps or repeats', () => {
    const heap = new Heap<Job>(less)
    const all: Job[] = []
    for (let id = 1; id <= 1000; id++) {
      const j = fake(id, (id * 7919) % 13, (id * 104729) % 17)
      heap.push(j)
      all.push(j)
    }
    const seen: number[] = []
    let key: Key | null = null
    for (;;) {
      const page = heapPage(heap, less as (a: Key, b: Key) => boolean, key, 64)
      if (page.length === 0) break
      seen.push(...page.map((j) => j.id))
      key = page[page.length - 1]!
    }
    expect(seen).toEqual([...all].sort(cmp).map((j) => j.id))
  })
})

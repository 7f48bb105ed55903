/** JobTable against a Map model: dense and sparse ids, deletes, page release. */
import { expect, it } from 'vitest'
import type { Job } from '../../src/queue/job.js'
import { JobTable } from '../../src/queue/job-table.js'
import { prng } from '../helpers/prng.js'

const fakeJob = (id: number): Job => ({ id }) as Job

it('behaves like a Map of ids to jobs', () => {
  const rnd = prng(3)
  const t = new JobTable()
  const model = new Map<number, Job>()
  for (let step = 0; step < 20000; step++) {
    const id = rnd.chance(0.9) ? 1 + rnd.int(20000) : 1 + rnd.int(2 ** 40)
    if (rnd.chance(0.6)) {
      const j = fakeJob(id)
      t.set(id, j)
      model.set(id, j)
    } else {
      t.delete(id)
      model.delete(id)
    }
    expect(t.get(id)).toBe(model.get(id))
    expect(t.size).toBe(model.size)
  }
  expect([...t.values()].map((j) => j.id).sort((a, b) => a - b)).toEqual([...model.keys()].sort((a, b) => a - b))
  expect(t.get(18446744073709551615)).toBeUndefined()
})

it('keeps the page new ids go to, even empty, and drops the ones behind it', () => {
  const t = new JobTable()
  // A short queue: each job deleted before the next put. Making and dropping
  // a 4096-slot page per put would be 32 KiB of garbage per job.
  for (let id = 1; id <= 4000; id++) {
    t.set(id, fakeJob(id))
    t.delete(id)
    expect(t.pageCount).toBe(1)
  }
  // Ids move on to the next page: the empty one behind is dropped.
  for (let id = 4001; id <= 20000; id++) {
    t.set(id, fakeJob(id))
    t.delete(id)
  }
  expect(t.pageCount).toBe(1)
  // A page behind with a live job stays until that job goes.
  t.set(20001, fakeJob(20001))
  t.set(30000, fakeJob(30000))
  expect(t.pageCount).toBe(2)
  t.delete(20001)
  expect(t.pageCount).toBe(1)
  expect(t.get(30000)?.id).toBe(30000)
})

it('walks in steps over the jobs present when the walk began, while jobs come and go', () => {
  const rnd = prng(5)
  const t = new JobTable()
  for (let id = 1; id <= 30000; id++) if (rnd.chance(0.5)) t.set(id, fakeJob(id))
  const before = new Set([...t.values()].map((j) => j.id))
  const walk = t.walk()
  const seen = new Map<number, number>()
  const deleted = new Set<number>()
  let next = 30001
  let steps = 0
  while (walk.step(1 + rnd.int(3000), (j) => seen.set(j.id, (seen.get(j.id) ?? 0) + 1))) {
    steps++
    // Between steps: some jobs go (whole pages among them), new ones come.
    for (let k = 0; k < 200; k++) {
      const id = 1 + rnd.int(30000)
      if (t.get(id) !== undefined) {
        t.delete(id)
        deleted.add(id)
      }
      t.set(next, fakeJob(next++))
    }
  }
  expect(steps).toBeGreaterThan(10)
  for (const n of seen.values()) expect(n).toBe(1)
  // Every job there at the start and never deleted was visited.
  for (const id of before) if (!deleted.has(id)) expect(seen.has(id)).toBe(true)
})

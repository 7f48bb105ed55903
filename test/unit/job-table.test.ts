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

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

/**
 * The scheduling rules of the extensions with an injected clock and a seeded
 * random source: idempotency keys and their cooldown, concurrency keys,
 * groups and their holds, cycles, weighted reserve, reserve-batch. The
 * registry is driven exactly as the server drives it; time moves only by
 * advance().
 */
import { beforeEach, describe, expect, it } from 'vitest'
import { PutTags } from '../../src/protocol/extensions.js'
import { JobState, type Job } from '../../src/queue/job.js'
import { QueueExtensions, type TaggedPut } from '../../src/queue/extensions/queue-extensions.js'
import type { Registry } from '../../src/queue/registry.js'
import type { Session } from '../../src/queue/session.js'
import { TestQueue, type RecordingWaiter } from '../helpers/queue.js'
import type { TimingWheel } from '../../src/queue/timing-wheel.js'
import { queueTotals, tubeFigures } from '../../src/queue/snapshot.js'
import type { ManualClock } from '../../src/util/clock.js'
import { prng } from '../helpers/prng.js'
import { putBody } from '../helpers/put-body.js'

let q: TestQueue
let clock: ManualClock
let wheel: TimingWheel
let r: Registry
let x: QueueExtensions

beforeEach(() => {
  q = new TestQueue()
  ;({ clock, wheel, r } = q)
  x = new QueueExtensions(r, prng(7).next)
  r.ext = x
})

const advance = (ms: number): void => q.advance(ms)
const session = (): [Session, RecordingWaiter] => q.session()

/** `put` with tags written as on the wire, e.g. 'idp:k:60 con:c'. */
function put(s: Session, tags: string, opts: { pri?: number; delay?: number; ttr?: number } = {}): TaggedPut {
  const t = new PutTags()
  for (const tag of tags.split(' ').filter(Boolean)) {
    const [kind, name, n] = tag.split(':') as [string, string, string | undefined]
    if (kind === 'idp') [t.idpKey, t.idpTtl] = [name, Number(n ?? 0)]
    else if (kind === 'con') [t.conKey, t.conLimit] = [name, Number(n ?? 1)]
    else if (kind === 'grp') t.group = name
    else t.after = name
  }
  const body = Buffer.from('x\r\n')
  const { slab, off } = r.bodies.copyIn(body)
  return x.put(s, r.allocateId(), opts.pri ?? 0, opts.delay ?? 0, opts.ttr ?? 60, slab, off, body.length, t)
}

function inserted(res: TaggedPut): Job {
  if (res.kind !== 'inserted') throw new Error(`not inserted: ${JSON.stringify(res)}`)
  return res.job
}

/** reserve-with-timeout 0: the job's id, or the reply (TIMED_OUT: nothing to take). */
const reserve = (s: Session): number | string | null => {
  const res = r.reserveOrWait(s, 0)
  return res === null ? null : Buffer.isBuffer(res) ? res.toString('latin1').trim() : res.id
}

describe('idempotency keys', () => {
  it('answer a live key with the original id and its state, in every state', () => {
    const [s] = session()
    const j = inserted(put(s, 'idp:k'))
    expect(put(s, 'idp:k')).toEqual({ kind: 'duplicate', id: j.id, state: 'READY' })
    expect(reserve(s)).toBe(j.id)
    expect(put(s, 'idp:k')).toMatchObject({ id: j.id, state: 'RESERVED' })
    r.bury(s, j.id, 0)
    expect(put(s, 'idp:k')).toMatchObject({ state: 'BURIED' })
    const d = inserted(put(s, 'idp:later', { delay: 10 }))
    expect(put(s, 'idp:later')).toMatchObject({ id: d.id, state: 'DELAYED' })
    // Nothing was added by the duplicates.
    expect(r.totalJobs).toBe(2)
  })

  it('are per tube', () => {
    const [s] = session()
    const a = inserted(put(s, 'idp:k'))
    r.use(s, 'other')
    const b = inserted(put(s, 'idp:k'))
    expect(b.id).not.toBe(a.id)
  })

  it('free the key at delete without a ttl; with one, answer DELETED until it runs out', () => {
    const [s] = session()
    const a = inserted(put(s, 'idp:plain'))
    r.delete(s, a.id)
    expect(put(s, 'idp:plain').kind).toBe('inserted')

    const b = inserted(put(s, 'idp:cool:2'))
    r.delete(s, b.id)
    expect(put(s, 'idp:cool')).toEqual({ kind: 'duplicate', id: b.id, state: 'DELETED' })
    advance(1999)
    expect(put(s, 'idp:cool')).toMatchObject({ id: b.id, state: 'DELETED' })
    advance(1)
    expect(x.idempotency.size).toBe(1) // the tombstone is gone; `plain`'s new job remains
    const c = inserted(put(s, 'idp:cool'))
    expect(c.id).toBeGreaterThan(b.id)
  })

  it('expire a tombstone at its time even before the timer fires', () => {
    const [s] = session()
    const a = inserted(put(s, 'idp:k:1'))
    r.delete(s, a.id)
    clock.advance(1000) // the wheel has not run
    expect(put(s, 'idp:k').kind).toBe('inserted')
  })
})

describe('concurrency keys', () => {
  it('let at most n jobs of a key be reserved; the rest wait hidden, in order', () => {
    const [w1] = session()
    const [w2] = session()
    const [w3] = session()
    const a = inserted(put(w1, 'con:api:2'))
    const b = inserted(put(w1, 'con:api:2'))
    const c = inserted(put(w1, 'con:api:2'))
    const plain = putBody(r, w1, 5, 0, 60, Buffer.from('y\r\n'))!
    expect(reserve(w1)).toBe(a.id)
    expect(reserve(w2)).toBe(b.id)
    // api is at its limit: c is hidden, the worse plain job comes first.
    expect(reserve(w3)).toBe(plain.id)
    expect(reserve(w3)).toBe('TIMED_OUT')
    // Still counted as ready where stats look.
    expect(tubeFigures(r, r.defaultTube, clock.now()).ready).toBe(1)
    expect(queueTotals(r).ready).toBe(1)
    expect(r.peekReady(w1)).toBeUndefined()
    r.delete(w1, a.id)
    expect(reserve(w3)).toBe(c.id)
  })

  it('free a slot on delete, release, bury, TTR timeout and disconnect, and hand it to a waiter', () => {
    const [w1] = session()
    const [waiter, heard] = session()
    const jobs = [0, 1, 2, 3, 4, 5].map(() => inserted(put(w1, 'con:one', { ttr: 1 })))
    expect(reserve(w1)).toBe(jobs[0]!.id)
    expect(r.reserveOrWait(waiter, -1)).toBeNull()
    r.delete(w1, jobs[0]!.id)
    expect(heard.events).toEqual([`RESERVED ${jobs[1]!.id}`])
    r.release(waiter, jobs[1]!.id, 0, 0)
    expect(reserve(w1)).toBe(jobs[1]!.id)
    r.bury(w1, jobs[1]!.id, 0)
    expect(reserve(w1)).toBe(jobs[2]!.id)
    expect(r.reserveOrWait(waiter, -1)).toBeNull()
    advance(1000) // TTR of 1 s: the job goes back, and the waiter gets the best one
    expect(heard.events.at(-1)).toBe(`RESERVED ${jobs[2]!.id}`)
    r.closeSession(waiter) // disconnect: back to ready, slot free
    expect(reserve(w1)).toBe(jobs[2]!.id)
  })

  it('span tubes, with each tube keeping its own order', () => {
    const [s] = session()
    const a = inserted(put(s, 'con:k', { pri: 9 }))
    r.use(s, 'b')
    const b = inserted(put(s, 'con:k', { pri: 1 }))
    r.watch(s, 'b')
    expect(reserve(s)).toBe(b.id)
    expect(reserve(s)).toBe('TIMED_OUT')
    r.delete(s, b.id)
    expect(reserve(s)).toBe(a.id)
  })

  it('take the largest n of their live jobs as the limit', () => {
    const [s] = session()
    const one = inserted(put(s, 'con:k:1'))
    const three = inserted(put(s, 'con:k:3'))
    const last = inserted(put(s, 'con:k:1'))
    expect([reserve(s), reserve(s), reserve(s)]).toEqual([one.id, three.id, last.id])
    expect(reserve(s)).toBe('TIMED_OUT')
    // The 3 goes with its job: the limit falls back to 1, and two are still reserved.
    r.delete(s, three.id)
    r.release(s, last.id, 0, 0)
    expect(reserve(s)).toBe('TIMED_OUT')
    r.delete(s, one.id)
    expect(reserve(s)).toBe(last.id)
  })

  it('keep reserve-job from a job whose key is at its limit', () => {
    const [s] = session()
    const a = inserted(put(s, 'con:k'))
    const b = inserted(put(s, 'con:k'))
    expect(reserve(s)).toBe(a.id)
    expect(r.reserveById(s, b.id)).toBeNull()
    r.delete(s, a.id)
    expect(r.reserveById(s, b.id)?.id).toBe(b.id)
  })

  it('hand out exactly the best job whose key is below its limit (a model of the lanes, 1500 random steps)', () => {
    const [s] = session()
    const rnd = prng(3)
    const live = new Set<Job>()
    const putOne = (): void => {
      live.add(inserted(put(s, `con:k${rnd.int(3)}:${1 + rnd.int(2)}`, { pri: rnd.int(4) })))
    }
    for (let i = 0; i < 60; i++) putOne()
    for (let step = 0; step < 1500; step++) {
      const all = [...live]
      const key = (j: Job): string => j.ext!.con!.name
      const limit = new Map<string, number>()
      const reserved = new Map<string, number>()
      for (const j of all) {
        limit.set(key(j), Math.max(limit.get(key(j)) ?? 0, j.ext!.conLimit))
        if (j.state === JobState.RESERVED) reserved.set(key(j), (reserved.get(key(j)) ?? 0) + 1)
      }
      const held = all.filter((j) => j.state === JobState.RESERVED)
      const dice = rnd.int(4)
      if (dice === 0) putOne()
      else if (dice === 1 && held.length > 0) {
        const j = held[rnd.int(held.length)]!
        if (rnd.chance(0.5)) r.release(s, j.id, rnd.int(4), 0)
        else {
          r.delete(s, j.id)
          live.delete(j)
        }
      } else {
        const want = all
          .filter((j) => j.state === JobState.READY && (reserved.get(key(j)) ?? 0) < limit.get(key(j))!)
          .sort((a, b) => a.pri - b.pri || a.id - b.id)[0]
        const res = r.reserveOrWait(s, 0)
        expect(Buffer.isBuffer(res) ? undefined : res?.id, `step ${step}`).toBe(want?.id)
      }
    }
    expect(r.readyCount + r.reservedCount).toBe(live.size)
  })
})

describe('groups', () => {
  it('hold an after-job until every member is deleted; buried members block', () => {
    const [s] = session()
    const m1 = inserted(put(s, 'grp:import'))
    const m2 = inserted(put(s, 'grp:import'))
    const after = inserted(put(s, 'aft:import'))
    expect(after.state).toBe(JobState.HELD)
    expect(tubeFigures(r, r.defaultTube, clock.now()).delayed).toBe(1)
    expect(x.group('import')).toMatchObject({ members: 2, complete: false })
    expect(reserve(s)).toBe(m1.id)
    r.bury(s, m1.id, 0)
    expect(x.group('import')!.buried).toBe(1)
    expect(reserve(s)).toBe(m2.id)
    r.delete(s, m2.id)
    expect(reserve(s)).toBe('TIMED_OUT') // the buried member still blocks
    r.kickJob(m1.id)
    expect(reserve(s)).toBe(m1.id)
    r.delete(s, m1.id)
    expect(after.state).toBe(JobState.READY)
    expect(reserve(s)).toBe(after.id)
    expect(x.group('import')).toBeUndefined()
  })

  it('do not hold an after-job of a complete group, nor one already released when the group refills', () => {
    const [s] = session()
    expect(inserted(put(s, 'aft:empty')).state).toBe(JobState.READY)
    const m = inserted(put(s, 'grp:g'))
    const a = inserted(put(s, 'aft:g'))
    r.delete(s, m.id)
    expect(a.state).toBe(JobState.READY)
    inserted(put(s, 'grp:g')) // the group fills again
    expect(reserve(s)).toBe(1) // aft:empty
    expect(reserve(s)).toBe(a.id)
    r.release(s, a.id, 0, 0)
    expect(a.state).toBe(JobState.READY)
  })

  it('decide a delayed after-job when its delay ends, and kick cannot skip the group', () => {
    const [s] = session()
    const m = inserted(put(s, 'grp:g'))
    const a = inserted(put(s, 'aft:g', { delay: 5 }))
    expect(a.state).toBe(JobState.DELAYED)
    advance(5000)
    expect(a.state).toBe(JobState.HELD)
    expect(r.kickJob(a.id)).toBe(false)
    expect(r.kick(s, 10)).toBe(0)
    expect(r.reserveById(s, a.id)).toBeNull()
    r.delete(s, m.id)
    expect(a.state).toBe(JobState.READY)
  })

  it('release a held job to a waiting worker', () => {
    const [s] = session()
    const [w, heard] = session()
    const m = inserted(put(s, 'grp:g'))
    const a = inserted(put(s, 'aft:g'))
    expect(reserve(s)).toBe(m.id)
    expect(r.reserveOrWait(w, -1)).toBeNull()
    r.delete(s, m.id)
    expect(heard.events).toEqual([`RESERVED ${a.id}`])
  })

  it('chain stages: aft:a grp:b joins b once a completes', () => {
    const [s] = session()
    const e = inserted(put(s, 'grp:extract'))
    const t = inserted(put(s, 'aft:extract grp:transform'))
    const l = inserted(put(s, 'aft:transform'))
    expect([t.state, l.state]).toEqual([JobState.HELD, JobState.HELD])
    r.delete(s, e.id)
    expect([t.state, l.state]).toEqual([JobState.READY, JobState.HELD])
    r.delete(s, t.id)
    expect(l.state).toBe(JobState.READY)
  })

  it('refuse a put that closes a cycle, and keep nothing of it', () => {
    const [s] = session()
    expect(put(s, 'aft:a grp:a')).toMatchObject({ kind: 'refused' })
    inserted(put(s, 'grp:a'))
    inserted(put(s, 'aft:a grp:b')) // b waits for a
    inserted(put(s, 'aft:b grp:c')) // c waits for b
    expect(put(s, 'aft:c grp:a')).toMatchObject({ kind: 'refused' }) // a would wait for c
    // A delayed after-job is already a dependency.
    inserted(put(s, 'grp:d'))
    inserted(put(s, 'aft:d grp:e', { delay: 60 }))
    expect(put(s, 'aft:e grp:d')).toMatchObject({ kind: 'refused' })
    // No cycle: fine.
    expect(put(s, 'aft:c grp:z').kind).toBe('inserted')
    expect(r.totalJobs).toBe(6)
  })

  it('delete a held job cleanly', () => {
    const [s] = session()
    const m = inserted(put(s, 'grp:g'))
    const a = inserted(put(s, 'aft:g'))
    expect(r.delete(s, a.id)).toBe(true)
    expect(x.group('g')!.held.size).toBe(0)
    expect(queueTotals(r).delayed).toBe(0)
    r.delete(s, m.id)
    expect(x.group('g')).toBeUndefined()
    expect(x.groups.size).toBe(0)
  })
})

describe('weighted reserve', () => {
  it('draws tubes in proportion to their weights, among those with a job', () => {
    const [p] = session()
    const [w] = session()
    for (const t of ['a', 'b', 'c']) {
      r.use(p, t)
      for (let i = 0; i < 4000; i++) putBody(r, p, 0, 0, 60, Buffer.from('x\r\n'))
      r.watch(w, t)
    }
    w.setWeight('b', 2)
    w.setWeight('c', 6)
    r.ignore(w, 'default')
    w.weighted = true
    const n: Record<string, number> = { a: 0, b: 0, c: 0 }
    for (let i = 0; i < 3000; i++) {
      const j = r.reserveOrWait(w, 0) as Job
      n[j.tube.name]!++
      r.delete(w, j.id)
    }
    expect(n.a! / 3000).toBeCloseTo(1 / 9, 1)
    expect(n.b! / 3000).toBeCloseTo(2 / 9, 1)
    expect(n.c! / 3000).toBeCloseTo(6 / 9, 1)
  })

  it('takes the best job of the drawn tube, skips empty and paused tubes, and fifo mode is the reference order', () => {
    const [p] = session()
    const [w] = session()
    r.use(p, 'a')
    const a1 = putBody(r, p, 5, 0, 60, Buffer.from('x\r\n'))!
    const a0 = putBody(r, p, 1, 0, 60, Buffer.from('x\r\n'))!
    r.use(p, 'b')
    const b = putBody(r, p, 0, 0, 60, Buffer.from('x\r\n'))!
    r.watch(w, 'a')
    r.watch(w, 'b')
    r.watch(w, 'empty')
    w.weighted = true
    r.pause('b', 60)
    expect(reserve(w)).toBe(a0.id)
    expect(reserve(w)).toBe(a1.id)
    w.weighted = false
    advance(60_000)
    expect(reserve(w)).toBe(b.id)
  })
})

describe('reserve-batch', () => {
  it('takes what is ready now, best first, and never waits', () => {
    const [s] = session()
    const jobs = [3, 1, 2].map((pri) => putBody(r, s, pri, 0, 60, Buffer.from('x\r\n'))!)
    const got: number[] = []
    for (let j; got.length < 5 && (j = r.reserveReady(s)) !== undefined; ) got.push(j.id)
    expect(got).toEqual([jobs[1]!.id, jobs[2]!.id, jobs[0]!.id])
    expect(r.reserveReady(s)).toBeUndefined()
    expect(r.waitingCount).toBe(0)
  })
})

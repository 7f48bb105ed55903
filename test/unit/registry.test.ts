/**
 * Registry scheduling and timers with an injected clock: no sleeping, the
 * wheel is advanced by hand exactly as the server's Node timer would.
 */
import { beforeEach, describe, expect, it } from 'vitest'
import { Reply } from '../../src/protocol/constants.js'
import { JobState, type Job } from '../../src/queue/job.js'
import { Registry } from '../../src/queue/registry.js'
import type { Session } from '../../src/queue/session.js'
import { RecordingWaiter } from '../helpers/queue.js'
import { TimingWheel } from '../../src/queue/timing-wheel.js'
import { ManualClock } from '../../src/util/clock.js'
import { prng } from '../helpers/prng.js'
import { putBody } from '../helpers/put-body.js'


let clock: ManualClock
let wheel: TimingWheel
let r: Registry

beforeEach(() => {
  clock = new ManualClock(1_000_000)
  wheel = new TimingWheel(clock.now())
  r = new Registry(clock, wheel)
})

/** Moves time forward and fires what is due, as the server's timer does. */
function advance(ms: number): void {
  clock.advance(ms)
  wheel.advance(clock.now())
}

function session(): [Session, RecordingWaiter] {
  const w = new RecordingWaiter()
  return [r.openSession(w), w]
}

function put(s: Session, pri = 0, delay = 0, ttr = 60, body = 'x'): Job {
  return putBody(r, s, pri, delay, ttr, Buffer.from(`${body}\r\n`))!
}

const reservedId = (res: Job | Buffer | null): number | string | null =>
  res === null ? null : Buffer.isBuffer(res) ? res.toString('latin1').trim() : res.id

describe('ready order', () => {
  it('hands out by priority, then by id', () => {
    const [s] = session()
    put(s, 10)
    put(s, 5)
    put(s, 5)
    expect([0, 1, 2].map(() => reservedId(r.reserveOrWait(s, 0)))).toEqual([2, 3, 1])
  })

  it('picks the best job across watched tubes (pri 5 id 7 in B before pri 5 id 8 in A)', () => {
    const [p] = session()
    const [w] = session()
    r.use(p, 'a')
    put(p, 10) // id 1 in a
    r.use(p, 'b')
    put(p, 5) // id 2 in b
    r.use(p, 'a')
    put(p, 5) // id 3 in a
    r.watch(w, 'a')
    r.watch(w, 'b')
    expect([0, 1, 2].map(() => reservedId(r.reserveOrWait(w, 0)))).toEqual([2, 3, 1])
  })

  it('a released job keeps its id and outranks newer jobs of equal priority', () => {
    const [s] = session()
    put(s)
    put(s)
    expect(reservedId(r.reserveOrWait(s, 0))).toBe(1)
    expect(r.release(s, 1, 0, 0)).toBe(true)
    expect(reservedId(r.reserveOrWait(s, 0))).toBe(1)
  })
})

describe('waiting', () => {
  it('wakes a waiting session on put, release, kick and delay expiry', () => {
    const [p] = session()
    const [w, ww] = session()
    expect(r.reserveOrWait(w, -1)).toBeNull()
    put(p)
    expect(ww.events).toEqual(['RESERVED 1'])
    expect(r.release(w, 1, 0, 1)).toBe(true) // delayed 1 s
    expect(r.reserveOrWait(w, -1)).toBeNull()
    advance(999)
    expect(ww.events).toEqual(['RESERVED 1'])
    advance(2)
    expect(ww.events).toEqual(['RESERVED 1', 'RESERVED 1'])
    expect(r.bury(w, 1, 0)).toBe(true)
    expect(r.reserveOrWait(w, -1)).toBeNull()
    expect(r.kick(p, 10)).toBe(1)
    expect(ww.events.at(-1)).toBe('RESERVED 1')
  })

  it('serves several waiters of one tube in the reference order (1, 2, 4, 3)', () => {
    const [p] = session()
    const waiters = [session(), session(), session(), session()]
    for (const [s] of waiters) expect(r.reserveOrWait(s, -1)).toBeNull()
    const order: number[] = []
    for (let i = 0; i < 4; i++) {
      const before = waiters.map(([, w]) => w.events.length)
      put(p)
      order.push(waiters.findIndex(([, w], k) => w.events.length > before[k]!) + 1)
    }
    expect(order).toEqual([1, 2, 4, 3])
  })

  it('a reserve served at once moves the take index as the reference’s enqueue-then-take does', () => {
    // The reproducer: c2 takes job 1 at once, c1 and c3 wait, c2 puts job 2: c3 gets it.
    const [c1, w1] = session()
    const [c2] = session()
    const [c3, w3] = session()
    put(c1, 65535)
    expect(reservedId(r.reserveOrWait(c2, 0))).toBe(1)
    expect(r.reserveOrWait(c1, -1)).toBeNull()
    expect(r.reserveOrWait(c3, -1)).toBeNull()
    put(c2)
    expect([w1.events, w3.events]).toEqual([[], ['RESERVED 2']])
    put(c2)
    expect(w1.events).toEqual(['RESERVED 3'])
  })

  it('a reserve-with-timeout 0 that finds nothing leaves the waiting lists as they were', () => {
    const [p] = session()
    const waiters = [session(), session(), session()]
    for (const [s] of waiters) expect(r.reserveOrWait(s, -1)).toBeNull()
    const [q] = session()
    expect(r.reserveOrWait(q, 0)).toBe(Reply.TIMED_OUT)
    const order: number[] = []
    for (let i = 0; i < 3; i++) {
      const before = waiters.map(([, w]) => w.events.length)
      put(p)
      order.push(waiters.findIndex(([, w], k) => w.events.length > before[k]!) + 1)
    }
    expect(order).toEqual([1, 2, 3])
  })

  it('times out a reserve-with-timeout on time, not before', () => {
    const [s, w] = session()
    expect(r.reserveOrWait(s, 2)).toBeNull()
    advance(1999)
    expect(w.events).toEqual([])
    advance(1)
    expect(w.events).toEqual(['TIMED_OUT'])
    expect(r.waitingCount).toBe(0)
  })

  it('answers reserve-with-timeout 0 at once (the reference: on its next tick, before any other command)', () => {
    const [s, w] = session()
    expect(r.reserveOrWait(s, 0)).toBe(Reply.TIMED_OUT)
    expect(r.waitingCount).toBe(0)
    advance(1)
    expect(w.events).toEqual([])
  })

  it('a paused tube hands out nothing until the pause ends, then wakes its waiter', () => {
    const [s, w] = session()
    put(s)
    expect(r.pause('default', 2)).toBe(true)
    expect(r.reserveOrWait(s, -1)).toBeNull()
    advance(1999)
    expect(w.events).toEqual([])
    advance(2)
    expect(w.events).toEqual(['RESERVED 1'])
  })

  it('pause 0 ends the pause at once and wakes waiters (the reference: 1 ns, lifted on its next tick)', () => {
    const [s, w] = session()
    const [o] = session()
    put(s)
    r.pause('default', 86400)
    expect(r.reserveOrWait(s, -1)).toBeNull()
    expect(r.pause('default', 0)).toBe(true)
    expect(w.events).toEqual(['RESERVED 1'])
    const t = r.tubes.get('default')!
    expect([t.paused, t.pauseSecs, t.cmdPause]).toEqual([false, 0, 2])
    // pheanstalk's testPauseTube: pause, reserve-with-timeout 0, unpause, reserve-with-timeout 0 at once.
    put(o)
    r.pause('default', 60)
    expect(r.reserveOrWait(o, 0)).toBe(Reply.TIMED_OUT)
    r.pause('default', 0)
    expect(reservedId(r.reserveOrWait(o, 0))).toBe(2)
  })

  // Same length, same millisecond: the one set first ends first (the reference
  // sets them nanoseconds apart), however the wheel's slots line up.
  const sameLength = (what: string, set: (s: Session, secs: number) => void): void => {
    it(`${what} and a reserve timeout of the same length set in the same millisecond: ${what} ends first`, () => {
      for (const secs of [1, 2, 100]) {
        for (let offset = 0; offset < 4096; offset += 97) {
          clock = new ManualClock(1_000_000 + offset)
          wheel = new TimingWheel(clock.now())
          r = new Registry(clock, wheel)
          const [s, w] = session()
          set(s, secs)
          expect(r.reserveOrWait(s, secs)).toBeNull()
          advance(secs * 1000)
          expect(w.events, `${secs} s at offset ${offset}`).toEqual(['RESERVED 1'])
        }
      }
    })
  }
  sameLength('a pause', (s, secs) => {
    put(s)
    r.pause('default', secs)
  })
  sameLength('a delay', (s, secs) => {
    put(s, 0, secs)
  })
})

describe('TTR and DEADLINE_SOON', () => {
  it('returns a reserved job to ready when its TTR passes, though its holder is silent', () => {
    const [p] = session()
    const [s] = session()
    const j = put(p, 0, 0, 2)
    expect(reservedId(r.reserveOrWait(s, 0))).toBe(1)
    advance(1999)
    expect(j.state).toBe(JobState.RESERVED)
    advance(2)
    expect(j.state).toBe(JobState.READY)
    expect(j.timeouts).toBe(1)
    expect(r.timeouts).toBe(1)
  })

  it('a TTR-1 job makes the next reserve answer DEADLINE_SOON at once', () => {
    const [s] = session()
    put(s, 0, 0, 1)
    expect(reservedId(r.reserveOrWait(s, 0))).toBe(1)
    expect(reservedId(r.reserveOrWait(s, -1))).toBe('DEADLINE_SOON')
  })

  it('a waiting session hears DEADLINE_SOON when a held job enters the safety margin', () => {
    const [s, w] = session()
    put(s, 0, 0, 3)
    expect(reservedId(r.reserveOrWait(s, -1))).toBe(1)
    expect(r.reserveOrWait(s, -1)).toBeNull()
    advance(1999)
    expect(w.events).toEqual([])
    advance(1)
    expect(w.events).toEqual(['DEADLINE_SOON'])
  })

  it('touch pushes the deadline back', () => {
    const [s] = session()
    const j = put(s, 0, 0, 2)
    r.reserveOrWait(s, 0)
    advance(1500)
    expect(r.touch(s, 1)).toBe(true)
    advance(1500)
    expect(j.state).toBe(JobState.RESERVED)
    advance(600)
    expect(j.state).toBe(JobState.READY)
  })

  it('ttr 0 becomes 1 s and a ttr of 2**32-1 s works', () => {
    const [s] = session()
    expect(put(s, 0, 0, 0).ttrMs).toBe(1000)
    const big = put(s, 0, 4294967295, 4294967295)
    expect(big.state).toBe(JobState.DELAYED)
    advance(86400_000)
    expect(big.state).toBe(JobState.DELAYED)
  })
})

describe('kick, bury and delete', () => {
  it('kick takes buried jobs (in bury order) before delayed ones', () => {
    const [s] = session()
    put(s, 0, 10) // 1 delayed
    put(s) // 2
    put(s) // 3
    r.reserveOrWait(s, 0)
    r.reserveOrWait(s, 0)
    r.bury(s, 3, 0)
    r.bury(s, 2, 0)
    expect(r.peekBuried(s)?.id).toBe(3)
    expect(r.kick(s, 1)).toBe(1)
    expect(r.peekBuried(s)?.id).toBe(2)
    expect(r.kick(s, 5)).toBe(1)
    expect(r.kick(s, 5)).toBe(1) // now the delayed one
    expect(r.peekDelayed(s)).toBeUndefined()
  })

  it('delete works on ready, delayed, buried and own reserved jobs, not on another session’s', () => {
    const [a] = session()
    const [b] = session()
    put(a)
    put(a, 0, 5)
    put(a)
    put(a)
    r.reserveOrWait(a, 0) // 1
    r.reserveOrWait(a, 0) // 3
    r.bury(a, 3, 0)
    expect(r.reserveOrWait(b, 0)).not.toBeNull() // 4 held by b
    expect(r.delete(a, 4)).toBe(false)
    expect(r.delete(a, 1)).toBe(true)
    expect(r.delete(a, 2)).toBe(true)
    expect(r.delete(a, 3)).toBe(true)
    expect(r.delete(b, 4)).toBe(true)
    expect(r.jobs.size).toBe(0)
    expect([r.readyCount, r.reservedCount, r.delayedCount, r.buriedCount]).toEqual([0, 0, 0, 0])
  })

  it('closing a session returns its jobs to ready at once, without counting timeouts', () => {
    const [a] = session()
    const [b, bw] = session()
    put(a)
    r.reserveOrWait(a, 0)
    expect(r.reserveOrWait(b, -1)).toBeNull()
    r.closeSession(a)
    expect(bw.events).toEqual(['RESERVED 1'])
    expect(r.timeouts).toBe(0)
  })
})

describe('tubes', () => {
  it('vanish when unreferenced (default never) and list in swap-remove order', () => {
    const [s] = session()
    r.watch(s, 't1')
    r.watch(s, 't2')
    r.watch(s, 't3')
    expect(r.tubeList.map((t) => t.name)).toEqual(['default', 't1', 't2', 't3'])
    r.ignore(s, 't1')
    expect(r.tubeList.map((t) => t.name)).toEqual(['default', 't3', 't2'])
    expect(r.ignore(s, 'default')).toBe(3 - 1)
    r.ignore(s, 't2')
    expect(r.ignore(s, 't3')).toBe(-1)
    expect(r.tubes.has('default')).toBe(true)
  })

  it('a closing session drops its watched tubes first, then last to second (ms_clear), then its used tube', () => {
    const [a] = session()
    const [x] = session()
    const [y] = session()
    r.watch(a, 'a')
    r.watch(a, 'b')
    r.use(x, 'x')
    r.use(y, 'y')
    const names = (): string[] => r.tubeList.map((t) => t.name)
    expect(names()).toEqual(['default', 'a', 'b', 'x', 'y'])
    r.closeSession(a)
    // b goes first ([default, a, y, x]), then a ([default, x, y]), as in the reference.
    expect(names()).toEqual(['default', 'x', 'y'])
    const [u] = session()
    r.use(u, 'u')
    r.watch(u, 'p')
    r.watch(u, 'q')
    r.ignore(u, 'default')
    const [z] = session()
    r.watch(z, 'z')
    expect(names()).toEqual(['default', 'x', 'y', 'u', 'p', 'q', 'z'])
    r.closeSession(u)
    expect(names()).toEqual(['default', 'x', 'y', 'z'])
  })

  it('a tube with jobs outlives its users', () => {
    const [s] = session()
    r.use(s, 'jobs')
    put(s)
    r.use(s, 'default')
    expect(r.tubes.has('jobs')).toBe(true)
    expect(r.delete(s, 1)).toBe(true)
    expect(r.tubes.has('jobs')).toBe(false)
  })
})

describe('a put whose body is still arriving', () => {
  it('is seen by peek (state invalid, bytes not yet in read as zeros) and by nothing else until stored', () => {
    const [s] = session()
    const [o] = session()
    r.use(s, 'foo')
    const id = r.allocateId()
    const slab = r.bodies.slabFor(7)
    const off = slab.take(7)
    slab.buf.write('abXXXXX', off, 'latin1')
    r.beginArriving(s, id, 7, 3, 10, slab, off, 7, 2)
    r.beginArriving(s, id, 7, 3, 10, slab, off, 7, 2) // idempotent
    const j = r.peek(id)!
    expect([j.state, j.tube.name, j.pri, j.delayMs, j.ttrMs]).toEqual([JobState.INVALID, 'foo', 7, 3000, 10000])
    expect(j.body.toString('latin1')).toBe('ab\0\0\0\0\0')
    expect([r.delete(o, id), r.kickJob(id), r.reserveById(o, id), r.touch(o, id)]).toEqual([false, false, null, false])
    expect(r.jobs.size).toBe(0)
    slab.buf.write('cde\r\n', off + 2, 'latin1')
    clock.advance(1500)
    const stored = r.put(s, id, 7, 3, 10, slab, off, 7)!
    // The same job, its age counted from the put line.
    expect(stored).toBe(j)
    expect([stored.state, stored.createdAt]).toEqual([JobState.DELAYED, 1_000_000])
    expect(r.peek(id)).toBe(stored)
  })

  it('is gone once the put ends another way', () => {
    const [s] = session()
    const id = r.allocateId()
    const slab = r.bodies.slabFor(3)
    r.beginArriving(s, id, 0, 0, 10, slab, slab.take(3), 3, 0)
    expect(r.peek(id)).toBeDefined()
    expect(r.endArriving(id)).toBeDefined()
    expect(r.peek(id)).toBeUndefined()
  })
})

it('DEADLINE_SOON reply constant is what reserve returns', () => {
  const [s] = session()
  put(s, 0, 0, 1)
  r.reserveOrWait(s, 0)
  expect(r.reserveOrWait(s, 0)).toBe(Reply.DEADLINE_SOON)
})

/** The model: the best ready job over every watched, unpaused tube, by a plain scan. */
function bestByScan(w: Session): Job | undefined {
  let best: Job | undefined
  for (const t of w.watching) {
    const j = t.paused ? undefined : t.ready.peek()
    if (j !== undefined && (best === undefined || j.pri < best.pri || (j.pri === best.pri && j.id < best.id))) best = j
  }
  return best
}

describe('sessions watching many tubes', () => {
  it('reserve picks the same job a scan of every watched tube would', () => {
    const rnd = prng(7)
    const [p] = session()
    const [w] = session()
    const names = Array.from({ length: 60 }, (_, i) => `t${i}`)
    // Watch 40 of the 60 tubes; the others hold better jobs the walk must skip.
    for (const n of names.slice(0, 40)) r.watch(w, n)
    for (let i = 0; i < 400; i++) {
      r.use(p, names[Math.floor(rnd.next() * names.length)]!)
      put(p, Math.floor(rnd.next() * 50))
    }
    r.pause('t3', 100)
    for (let i = 0; i < 300; i++) {
      const expected = bestByScan(w)
      const got = r.reserveOrWait(w, 0)
      if (expected === undefined) {
        expect(got).toBe(Reply.TIMED_OUT)
        break
      }
      expect(reservedId(got)).toBe(expected.id)
      r.delete(w, expected.id)
    }
  })

  it('stays exact while jobs come back with new priorities, are buried and kicked, and tubes pause', () => {
    // The ready index orders tubes by a copy of each tube's best (priority,
    // id); this mixes every way a tube's best job changes under it.
    const rnd = prng(11)
    const [p] = session()
    const [w] = session()
    const names = Array.from({ length: 60 }, (_, i) => `t${i}`)
    for (const n of names.slice(0, 40)) r.watch(w, n)
    const buried: number[] = []
    let reserves = 0
    for (let step = 0; step < 3000; step++) {
      const op = rnd.int(10)
      if (op < 4) {
        r.use(p, rnd.pick(names))
        put(p, rnd.int(20))
      } else if (op === 4 && buried.length > 0) {
        r.kickJob(buried.splice(rnd.int(buried.length), 1)[0]!)
      } else if (op === 5) {
        r.pause(rnd.pick(names), rnd.int(3))
      } else if (op === 6) {
        advance(500)
      } else {
        const expected = bestByScan(w)
        const got = r.reserveOrWait(w, 0)
        if (expected === undefined) {
          expect(got).toBe(Reply.TIMED_OUT)
          continue
        }
        expect(reservedId(got)).toBe(expected.id)
        reserves++
        const next = rnd.int(3)
        if (next === 0) r.delete(w, expected.id)
        else if (next === 1) r.release(w, expected.id, rnd.int(20), 0)
        else {
          r.bury(w, expected.id, rnd.int(20))
          buried.push(expected.id)
        }
      }
    }
    expect(reserves).toBeGreaterThan(500)
  })
})

describe('waiting while watching many tubes', () => {
  it('waits without entering every tube, yet gets the best job put into any of them', () => {
    const [p] = session()
    const [w, ww] = session()
    for (let i = 0; i < 100; i++) r.watch(w, `t${i}`)
    expect(r.reserveOrWait(w, -1)).toBeNull()
    expect(r.tubeList.every((t) => t.waiting.length === 0)).toBe(true)
    expect(r.waitingOn(r.tubes.get('t42')!)).toBe(1)
    expect(r.waitingOn(r.tubes.get('default')!)).toBe(1)
    r.use(p, 'elsewhere')
    put(p) // job 1: not watched
    expect(ww.events).toEqual([])
    r.use(p, 't42')
    put(p) // job 2
    expect(ww.events).toEqual(['RESERVED 2'])
    expect(r.waitingCount).toBe(0)
    expect(r.waitingOn(r.tubes.get('t42')!)).toBe(0)
  })

  it('a job both could take goes to the tube’s own waiter; one only the wide waiter watches goes to it', () => {
    const [p] = session()
    const [wide, wideW] = session()
    const [narrow, narrowW] = session()
    for (let i = 0; i < 40; i++) r.watch(wide, `t${i}`)
    r.watch(narrow, 't1')
    r.ignore(narrow, 'default')
    expect(r.reserveOrWait(wide, -1)).toBeNull()
    expect(r.reserveOrWait(narrow, -1)).toBeNull()
    r.use(p, 't1')
    put(p, 5) // 1: both watch t1
    expect(narrowW.events).toEqual(['RESERVED 1'])
    expect(wideW.events).toEqual([])
    r.use(p, 't2')
    put(p, 5) // 2: only the wide waiter watches t2
    expect(wideW.events).toEqual(['RESERVED 2'])
  })

})

describe('watch lists past the length where a session adds a set', () => {
  it('watches, ignores and reserves as a plain list would, growing and shrinking across it', () => {
    const [producer] = session()
    const [s] = session()
    const model = ['default']
    const rnd = prng(18)
    for (let step = 0; step < 400; step++) {
      const name = `t${rnd.int(20)}`
      if (rnd.chance(0.6)) {
        const n = r.watch(s, name)
        if (!model.includes(name)) model.push(name)
        expect(n).toBe(model.length)
      } else {
        const n = r.ignore(s, name)
        const i = model.indexOf(name)
        if (i === -1) expect(n).toBe(model.length)
        else if (model.length === 1) expect(n).toBe(-1)
        else {
          // ref:ms.c ms_remove: swap-remove
          model[i] = model[model.length - 1]!
          model.pop()
          expect(n).toBe(model.length)
        }
      }
      expect(s.watching.map((t) => t.name)).toEqual(model)
      for (let k = 0; k < 20; k++) expect(s.watches(r.tube(`t${k}`))).toBe(model.includes(`t${k}`))
      // A job in the last tube watched is found, whichever side of the set the list is.
      const last = model[model.length - 1]!
      r.use(producer, last)
      const j = put(producer)
      expect(r.reserveReady(s)?.id).toBe(j.id)
      expect(r.delete(s, j.id)).toBe(true)
    }
  })
})

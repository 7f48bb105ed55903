import { describe, expect, it } from 'vitest'
import { TimingWheel, newTimerFields, type TimerEntry } from '../../src/queue/timing-wheel.js'
import { ManualClock } from '../../src/util/clock.js'
import { prng, type Prng } from '../helpers/prng.js'

const SECOND = 1000
const YEAR = 365.25 * 24 * 3600 * SECOND
/** protocol.txt: delay and ttr are 32-bit unsigned seconds. */
const MAX_DELAY = (2 ** 32 - 1) * SECOND
/** Entries due further out than this may be parked (the wheel's top ring holds 63 blocks of 64**6 ms). */
const PARK_HORIZON = 62 * 64 ** 6
/** Slot moves: a schedule links once, each cascade relinks once, a fire unlinks once. */
const MAX_LEVELS = 7

/** Counts every write of timerSlot (link, relink on cascade, unlink): the wheel's per-entry work. */
const work = { slotWrites: 0 }

class Entry implements TimerEntry {
  timerAt = 0
  timerPrev: TimerEntry | null = null
  timerNext: TimerEntry | null = null
  #slot = -1
  readonly id: number
  fire: (self: Entry, nowMs: number) => void

  constructor(id: number, fire: (self: Entry, nowMs: number) => void = () => {}) {
    this.id = id
    this.fire = fire
  }

  get timerSlot(): number {
    return this.#slot
  }

  set timerSlot(slot: number) {
    this.#slot = slot
    work.slotWrites++
  }

  onTimer(nowMs: number): void {
    this.fire(this, nowMs)
  }
}

/** Records (id, due tick, nowMs) of every fire. */
function recorder(): { log: [number, number, number][]; fire: (e: Entry, nowMs: number) => void } {
  const log: [number, number, number][] = []
  return { log, fire: (e, nowMs) => log.push([e.id, e.timerAt, nowMs]) }
}

describe('TimingWheel basics', () => {
  it('rounds due times up, clamps the past to the next tick and never fires inside schedule', () => {
    const { log, fire } = recorder()
    const wheel = new TimingWheel(1000.7)
    const a = new Entry(1, fire)
    const b = new Entry(2, fire)
    const c = new Entry(3, fire)
    wheel.schedule(a, 1000.2)
    wheel.schedule(b, 5)
    wheel.schedule(c, 1002.01)
    expect([a.timerAt, b.timerAt, c.timerAt]).toEqual([1001, 1001, 1003])
    expect(log).toEqual([])
    expect(wheel.size).toBe(3)
    expect(wheel.nextWake()).toBe(1001)
    wheel.advance(1000.99)
    expect(log).toEqual([])
    wheel.advance(1001.5)
    expect(log.map(([id]) => id).sort()).toEqual([1, 2])
    expect(log.every(([, , now]) => now === 1001.5)).toBe(true)
    wheel.advance(1002.999)
    expect(log).toHaveLength(2)
    wheel.advance(1003)
    expect(log[2]).toEqual([3, 1003, 1003])
    expect(wheel.size).toBe(0)
    expect(wheel.nextWake()).toBeNull()
    expect(wheel.isScheduled(a)).toBe(false)
  })

  it('moves a rescheduled entry, and cancel is a no-op when not scheduled', () => {
    const { log, fire } = recorder()
    const wheel = new TimingWheel(0)
    const a = new Entry(1, fire)
    wheel.cancel(a)
    wheel.schedule(a, 100_000)
    wheel.schedule(a, 50)
    expect(wheel.size).toBe(1)
    expect(wheel.isScheduled(a)).toBe(true)
    wheel.schedule(a, 70)
    wheel.advance(69)
    expect(log).toEqual([])
    wheel.advance(100_000)
    expect(log).toEqual([[1, 70, 100_000]])
    wheel.schedule(a, 200_000)
    wheel.cancel(a)
    wheel.cancel(a)
    expect(wheel.size).toBe(0)
    expect(wheel.isScheduled(a)).toBe(false)
    expect(a.timerPrev).toBeNull()
    expect(a.timerNext).toBeNull()
    wheel.advance(1e9)
    expect(log).toHaveLength(1)
  })

  it('newTimerFields() initialises an object-literal entry', () => {
    const wheel = new TimingWheel(0)
    let fired = 0
    const entry: TimerEntry = { ...newTimerFields(), onTimer: () => void fired++ }
    expect(wheel.isScheduled(entry)).toBe(false)
    wheel.schedule(entry, 10)
    wheel.advance(10)
    expect(fired).toBe(1)
  })

  it('reports wake-ups through onWake: earlier schedules, and the end of every advance', () => {
    const wakes: (number | null)[] = []
    const wheel = new TimingWheel(0)
    wheel.onWake = (tick) => wakes.push(tick)
    const a = new Entry(1)
    const b = new Entry(2)
    const c = new Entry(3)
    wheel.schedule(a, 30)
    wheel.schedule(b, 40) // later than known: no call
    wheel.schedule(c, 20)
    expect(wakes).toEqual([30, 20])
    wheel.cancel(c) // never calls: the armed timer may fire early, harmlessly
    expect(wakes).toEqual([30, 20])
    wheel.advance(20)
    expect(wakes).toEqual([30, 20, 30])
    wheel.advance(35)
    expect(wakes).toEqual([30, 20, 30, 40])
    wheel.advance(40)
    expect(wakes).toEqual([30, 20, 30, 40, null])
    // Far ahead, the wake-up is the first cascade, never later than the due tick.
    wheel.schedule(a, 10 * 60 * SECOND)
    const wake = wakes[wakes.length - 1]!
    expect(wake).toBeLessThanOrEqual(a.timerAt)
    expect(wake).toBeGreaterThan(40)
  })

  it('rejects NaN, a negative start, and advance() from inside onTimer; ignores going backwards', () => {
    expect(() => new TimingWheel(-1)).toThrow(RangeError)
    const wheel = new TimingWheel(100)
    expect(() => wheel.schedule(new Entry(1), Number.NaN)).toThrow(RangeError)
    expect(() => wheel.advance(Number.NaN)).toThrow(RangeError)
    let inner: unknown = null
    const a = new Entry(1, () => {
      try {
        wheel.advance(500)
      } catch (err) {
        inner = err
      }
    })
    wheel.schedule(a, 200)
    wheel.advance(50) // backwards: nothing
    expect(wheel.isScheduled(a)).toBe(true)
    wheel.advance(300)
    expect(inner).toBeInstanceOf(Error)
    wheel.schedule(a, 250) // 250 <= current tick 300: clamped to 301
    expect(a.timerAt).toBe(301)
  })
})

describe('TimingWheel callbacks', () => {
  it('cancel from inside onTimer stops another entry due the same tick', () => {
    const fired: number[] = []
    const wheel = new TimingWheel(0)
    const pair: Entry[] = []
    const fire = (e: Entry): void => {
      fired.push(e.id)
      for (const other of pair) if (other !== e) wheel.cancel(other)
    }
    pair.push(new Entry(1, fire), new Entry(2, fire))
    const later = new Entry(3, fire)
    for (const e of pair) wheel.schedule(e, 64 * 64 + 5) // reached through a cascade
    pair.push(later)
    wheel.schedule(later, 64 * 64 + 9)
    wheel.advance(1e6)
    expect(fired).toHaveLength(1)
    expect(wheel.size).toBe(0)
  })

  it('an entry scheduled from onTimer fires in the same advance when due by then, in order', () => {
    const log: [string, number][] = []
    const wheel = new TimingWheel(0)
    const past = new Entry(1, (e) => log.push(['past', e.timerAt]))
    const soon = new Entry(2, (e) => log.push(['soon', e.timerAt]))
    const after = new Entry(3, (e) => log.push(['after', e.timerAt]))
    const other = new Entry(4, (e) => log.push(['other', e.timerAt]))
    const first = new Entry(5, (e, now) => {
      log.push(['first', e.timerAt])
      wheel.schedule(past, now - 1000) // in the past: clamped to firing tick + 1
      wheel.schedule(soon, 150)
      wheel.schedule(after, now + 1) // after this advance's target
    })
    wheel.schedule(first, 100)
    wheel.schedule(other, 120)
    wheel.advance(200.5)
    expect(log).toEqual([
      ['first', 100],
      ['past', 101],
      ['other', 120],
      ['soon', 150],
    ])
    expect(after.timerAt).toBe(202)
    wheel.advance(202)
    expect(log[4]).toEqual(['after', 202])
  })

  it('an entry scheduled from onTimer for now fires at the next tick when the advance ends here', () => {
    const fired: number[] = []
    const wheel = new TimingWheel(0)
    const b = new Entry(2, (e) => fired.push(e.timerAt))
    const a = new Entry(1, (_e, now) => wheel.schedule(b, now))
    wheel.schedule(a, 10)
    wheel.advance(10)
    expect(fired).toEqual([])
    expect(b.timerAt).toBe(11)
    expect(wheel.nextWake()).toBe(11)
    wheel.advance(11)
    expect(fired).toEqual([11])
  })

  it('a periodic entry rescheduling itself from onTimer fires once per period within one advance', () => {
    const fired: number[] = []
    const wheel = new TimingWheel(0)
    const tickTock = new Entry(1, (e) => {
      fired.push(e.timerAt)
      wheel.schedule(e, e.timerAt + 10)
    })
    wheel.schedule(tickTock, 10)
    wheel.advance(100)
    expect(fired).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    expect(tickTock.timerAt).toBe(110)
  })

  it('a throwing onTimer leaves the wheel consistent: the rest of the tick fires on the next advance', () => {
    const wakes: (number | null)[] = []
    const wheel = new TimingWheel(0)
    wheel.onWake = (tick) => wakes.push(tick)
    let thrown = false
    const fired: number[] = []
    const fire = (e: Entry): void => {
      if (!thrown) {
        thrown = true
        throw new Error('boom')
      }
      fired.push(e.id)
    }
    const a = new Entry(1, fire)
    const b = new Entry(2, fire)
    const c = new Entry(3, fire)
    wheel.schedule(a, 5000)
    wheel.schedule(b, 5000)
    wheel.schedule(c, 5001)
    expect(() => wheel.advance(6000)).toThrow('boom')
    expect(wheel.size).toBe(2)
    expect(wheel.nextWake()).toBe(5000)
    expect(wakes[wakes.length - 1]).toBe(5000)
    wheel.advance(6000)
    // The thrower is unscheduled before its call; the other entry of tick 5000 and c remain.
    expect(fired).toHaveLength(2)
    expect(fired[1]).toBe(3)
    expect(wheel.size).toBe(0)
  })
})

describe('TimingWheel long gaps', () => {
  for (const start of [0, 123_456_789.25, 2 ** 42 - 1000, 2 ** 36 * 63 + 17, 5 * 2 ** 42 + 2 ** 41]) {
    it(`fires a delay of 2**32 - 1 s exactly on time (start ${start})`, () => {
      const { log, fire } = recorder()
      const wheel = new TimingWheel(start)
      const e = new Entry(1, fire)
      work.slotWrites = 0
      wheel.schedule(e, start + MAX_DELAY)
      const due = Math.ceil(start + MAX_DELAY)
      expect(e.timerAt).toBe(due)
      expect(wheel.nextWake()).toBeLessThanOrEqual(due)
      wheel.advance(due - 1)
      expect(log).toEqual([])
      expect(wheel.nextWake()).toBe(due)
      wheel.advance(due + 0.5)
      expect(log).toEqual([[1, due, due + 0.5]])
      expect(work.slotWrites).toBeLessThanOrEqual(MAX_LEVELS + 1)
    })
  }

  it('advances over 100 years in one call with work bounded by the entries, not the ticks', () => {
    const rand = prng(7)
    const { log, fire } = recorder()
    const start = 987_654.5
    const wheel = new TimingWheel(start)
    const n = 5000
    work.slotWrites = 0
    for (let i = 0; i < n; i++) wheel.schedule(new Entry(i, fire), start + rand.next() * 100 * YEAR)
    const end = start + 100 * YEAR + 1
    wheel.advance(end)
    expect(log).toHaveLength(n)
    for (let i = 1; i < n; i++) expect(log[i]![1]).toBeGreaterThanOrEqual(log[i - 1]![1])
    expect(log.every(([, , now]) => now === end)).toBe(true)
    // Link, at most one relink per level passed on the way down, unlink.
    expect(work.slotWrites).toBeLessThanOrEqual(n * (MAX_LEVELS + 1))
    expect(wheel.nextWake()).toBeNull()
  })

  it('advances an empty wheel over 100 years and then schedules relative to the new time', () => {
    const wheel = new TimingWheel(0)
    wheel.advance(100 * YEAR)
    const fired: number[] = []
    const e = new Entry(1, (x) => fired.push(x.timerAt))
    wheel.schedule(e, 5)
    expect(e.timerAt).toBe(Math.floor(100 * YEAR) + 1)
    wheel.advance(100 * YEAR + 1)
    expect(fired).toEqual([Math.floor(100 * YEAR) + 1])
  })

  it('never fires early past the 2**42 ms horizon (parked entries), and Infinity never fires', () => {
    const { log, fire } = recorder()
    const clock = new ManualClock(3.5)
    const wheel = new TimingWheel(clock.now())
    const far = new Entry(1, fire)
    const never = new Entry(2, fire)
    const at = clock.now() + 400 * YEAR
    wheel.schedule(far, at)
    wheel.schedule(never, Number.POSITIVE_INFINITY)
    expect(far.timerAt).toBe(Math.ceil(at))
    expect(never.timerAt).toBe(Number.MAX_SAFE_INTEGER) // capped so tick arithmetic stays exact
    work.slotWrites = 0
    for (let year = 0; year < 400; year++) {
      clock.advance(YEAR)
      wheel.advance(clock.now())
      expect(log).toEqual([])
      expect(wheel.nextWake()).toBeLessThanOrEqual(far.timerAt)
    }
    wheel.advance(far.timerAt - 1)
    expect(log).toEqual([])
    wheel.advance(far.timerAt)
    expect(log).toEqual([[1, far.timerAt, far.timerAt]])
    expect(work.slotWrites).toBeLessThan(40)
    expect(wheel.isScheduled(never)).toBe(true)
    wheel.advance(1e15)
    expect(log).toHaveLength(1)
  })
})

/**
 * Drives a wheel and a model (entry -> due tick) side by side. Checks every
 * fire against the model: exactly once, never early, in due order within an
 * advance, with advance()'s own nowMs.
 */
class Harness {
  readonly clock: ManualClock
  readonly wheel: TimingWheel
  readonly due = new Map<Entry, number>()
  /** The wheel's current tick, as the model sees it. */
  tick: number
  /** Last onWake value: the server's Node timer must never be armed later than the earliest due. */
  armed: number | null = null
  fires = 0
  #firing: Entry | null = null
  #target = 0
  #nowMs = 0
  #lastDue = 0
  /** Order of the last schedule() of each entry: entries due the same tick fire in this order. */
  readonly #order = new Map<Entry, number>()
  #scheduled = 0
  #lastOrder = 0

  constructor(start: number) {
    this.clock = new ManualClock(start)
    this.wheel = new TimingWheel(start)
    this.tick = Math.floor(start)
    this.wheel.onWake = (tick) => {
      this.armed = tick
    }
  }

  schedule(e: Entry, atMs: number): void {
    // Inside onTimer the wheel is at the firing entry's tick.
    const base = this.#firing === null ? this.tick : this.#firing.timerAt
    const due = Math.max(Math.ceil(atMs), base + 1)
    this.wheel.schedule(e, atMs)
    if (e.timerAt !== due) throw new Error(`entry ${e.id}: timerAt ${e.timerAt}, model ${due}`)
    this.due.set(e, due)
    // Beyond the horizon (past the protocol's limits) an entry is parked and
    // placed again later: its order among same-tick entries is not kept.
    this.#order.set(e, due - base > PARK_HORIZON ? -1 : ++this.#scheduled)
  }

  cancel(e: Entry): void {
    this.wheel.cancel(e)
    this.due.delete(e)
  }

  advanceTo(nowMs: number): void {
    this.clock.set(nowMs)
    this.#target = Math.floor(nowMs)
    this.#nowMs = nowMs
    this.#lastDue = -Infinity
    this.wheel.advance(nowMs)
    for (const [e, due] of this.due) {
      if (due <= this.#target) throw new Error(`entry ${e.id} due ${due} missed by advance to ${this.#target}`)
    }
    this.tick = Math.max(this.tick, this.#target)
    this.check()
  }

  /** Entry.fire for harness-driven entries; `then` runs the entry's own reaction. */
  onFire(e: Entry, nowMs: number, then: (e: Entry, nowMs: number) => void): void {
    const due = this.due.get(e)
    if (due === undefined) throw new Error(`entry ${e.id} fired but is not scheduled (twice, or after cancel)`)
    if (due !== e.timerAt) throw new Error(`entry ${e.id} fired with timerAt ${e.timerAt}, model ${due}`)
    if (due > this.#target) throw new Error(`entry ${e.id} due ${due} fired early, advance to ${this.#target}`)
    if (due < this.#lastDue) throw new Error(`entry ${e.id} due ${due} fired after one due ${this.#lastDue}`)
    const order = this.#order.get(e)!
    if (due === this.#lastDue && order !== -1 && order < this.#lastOrder) {
      throw new Error(`entry ${e.id} due ${due} fired after one scheduled later for the same tick`)
    }
    if (order !== -1 || due !== this.#lastDue) this.#lastOrder = order
    if (nowMs !== this.#nowMs) throw new Error(`onTimer got ${nowMs}, advance got ${this.#nowMs}`)
    if (this.wheel.isScheduled(e)) throw new Error(`entry ${e.id} still scheduled inside its onTimer`)
    this.#lastDue = due
    this.due.delete(e)
    this.fires++
    this.#firing = e
    then(e, nowMs)
    this.#firing = null
  }

  check(): void {
    const { wheel } = this
    if (wheel.size !== this.due.size) throw new Error(`size ${wheel.size}, model ${this.due.size}`)
    let min = Infinity
    for (const [e, due] of this.due) {
      if (!wheel.isScheduled(e)) throw new Error(`entry ${e.id} not scheduled`)
      min = Math.min(min, due)
    }
    const wake = wheel.nextWake()
    if (this.due.size === 0) {
      if (wake !== null) throw new Error(`nextWake ${wake} on an empty wheel`)
      return
    }
    if (wake === null || wake > min || wake <= this.tick) {
      throw new Error(`nextWake ${wake}, tick ${this.tick}, earliest due ${min}`)
    }
    if (this.armed === null || this.armed > min) throw new Error(`onWake armed ${this.armed}, earliest due ${min}`)
  }
}

/** A delay in ms from a mix of scales, including the past, slot boundaries and the protocol maximum. */
function randomDelay(rand: Prng, now: number): number {
  const r = rand.next()
  if (r < 0.3) return rand.next() * 300 - 30
  if (r < 0.5) return rand.int(2_000_000)
  if (r < 0.65) return rand.int(2 ** 32) * SECOND * rand.next()
  if (r < 0.7) return MAX_DELAY
  // Just around the start of a later slot at some level.
  const unit = 64 ** (1 + rand.int(6))
  const boundary = (Math.floor(now / unit) + 1 + rand.int(3)) * unit
  return boundary - now + rand.int(3) - 1
}

function randomGap(rand: Prng, h: Harness): number {
  const r = rand.next()
  if (r < 0.35) return rand.next() * 100
  if (r < 0.55) return rand.next() * 100_000
  if (r < 0.65) return rand.next() * 2 ** 32 * SECOND
  // Exactly to the earliest due tick or the announced wake-up, or one short of it.
  let min = Infinity
  for (const due of h.due.values()) min = Math.min(min, due)
  const wake = h.wheel.nextWake()
  const goal = r < 0.85 ? min : (wake ?? Infinity)
  if (goal === Infinity) return rand.next() * 1000
  return Math.max(0, goal - h.clock.now() - rand.int(2))
}

describe('TimingWheel against a model', () => {
  for (const seed of [1, 2, 3, 42, 0xc0ffee, 977, 31337, 8675309]) {
    it(`random schedule/cancel/reschedule/advance (seed ${seed})`, () => {
      const rand = prng(seed)
      const start = rand.chance(0.5) ? rand.next() * 1000 : rand.int(2 ** 44) + rand.next()
      const h = new Harness(start)
      const pool: Entry[] = []
      let reacting = true
      const react = (self: Entry, nowMs: number): void => {
        if (!reacting) return
        const r = rand.next()
        if (r < 0.25) h.schedule(rand.pick(pool), nowMs + rand.next() * 400 - 100)
        else if (r < 0.35) h.schedule(self, nowMs + randomDelay(rand, nowMs))
        else if (r < 0.5) {
          const scheduled = [...h.due.keys()]
          if (scheduled.length > 0) h.cancel(rand.pick(scheduled))
        }
      }
      for (let i = 0; i < 150; i++) pool.push(new Entry(i, (e, now) => h.onFire(e, now, react)))

      for (let step = 0; step < 3000; step++) {
        const r = rand.next()
        const now = h.clock.now()
        if (r < 0.45) h.schedule(rand.pick(pool), now + randomDelay(rand, now))
        else if (r < 0.55) h.cancel(rand.pick(pool))
        else h.advanceTo(now + randomGap(rand, h))
        h.check()
      }
      // Drain: everything left fires, in order, in one advance.
      reacting = false
      const firesBefore = h.fires
      const left = h.due.size
      h.advanceTo(h.clock.now() + 2 * MAX_DELAY)
      expect(h.fires - firesBefore).toBe(left)
      expect(h.wheel.size).toBe(0)
      expect(h.fires).toBeGreaterThan(500)
    })
  }
})

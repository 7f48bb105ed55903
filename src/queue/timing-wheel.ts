/*
 * Hierarchical timing wheel: every deadline of the server (job delay, TTR,
 * reserve timeout, pause end) with O(1) schedule/cancel and no allocation.
 *
 * Time is an integer tick (1 ms) on a monotonic clock. Read a tick as base-64
 * digits, digit_L(t) = floor(t / 64**L) % 64, over LEVELS = 7 levels (2**42 ms,
 * about 139 years; the protocol maximum of 2**32 - 1 s is 4.29e12 ms).
 * Ticks pass 2**32, so this file uses arithmetic, never 32-bit bitwise ops on
 * ticks; values stay below 2**53 and only powers of two divide them, so every
 * floor(t / 64**L) is exact. (Bitwise ops only touch slot numbers < 448.)
 *
 * Invariants, with `tick` the wheel's current tick:
 *  1. Every scheduled entry has timerAt > tick, except entries due at `tick`
 *     itself while advance() fires them (or left over when an onTimer threw),
 *     which sit in the level-0 slot tick % 64.
 *  2. Absolute slot indexing: an entry sits at the lowest level L at which
 *     timerAt and tick agree on every digit above L, in slot digit_L(timerAt).
 *     A level-0 slot thus holds a single due tick; a level-L slot holds the
 *     64**L ticks from its start tick. The top level is a ring holding the 63
 *     top-level blocks after tick's own; an entry further out (only possible
 *     past the protocol limits) is parked in the farthest ring slot and placed
 *     again when that slot cascades, so no entry ever fires early.
 *  3. So at every level >= 1 the slot of tick's own digit is empty and each
 *     occupied slot starts after tick. A slot's "event" is its start tick: fire
 *     at level 0, cascade (re-place every entry one or more levels down) above.
 *     Every event at level L precedes every event at level L + 1, so the next
 *     event is the first occupied slot of the lowest non-empty level, found via
 *     a 64-bit occupancy bitmap per level; advance() jumps event to event.
 *  4. #occupied has bit s set iff #slots[s] !== null.
 *  5. A scheduled entry has timerSlot = L * 64 + slot and is linked through
 *     timerPrev/timerNext into the null-terminated list headed at
 *     #slots[timerSlot] and ending at #tails[timerSlot]. An unscheduled entry
 *     has timerSlot -1 and null links.
 *  6. Every slot list is in the order its entries were (last) scheduled
 *     (entries parked beyond the horizon aside): schedule() and cascades append. A cascade empties a higher slot in
 *     order into lower slots that are empty at that moment (they belong to
 *     the block just begun), and anything scheduled later is appended after.
 *     So entries due the same tick fire in the order they were scheduled,
 *     which for equal durations is the order of their exact deadlines: a
 *     `pause-tube T 1` ends before a `reserve-with-timeout 1` sent after it
 *     in the same millisecond times out, as in the reference.
 *
 * Entries scheduled from inside onTimer while advance(nowMs) runs are due no
 * earlier than (firing tick + 1), and fire in that same advance() call when
 * their due tick <= floor(nowMs): the wheel steps through ticks in order, so
 * this is as if advance() had been called at every tick.
 */

const SLOTS = 64
const LEVELS = 7
const TOP = LEVELS - 1
/** Due ticks are capped here to keep arithmetic exact (2**53 ms is ~285,000 years). */
const MAX_TICK = Number.MAX_SAFE_INTEGER

/** The intrusive fields a scheduled object carries; owned by the wheel. */
export interface TimerFields {
  /** Due tick (integer ms), set by schedule(). Still readable inside onTimer. */
  timerAt: number
  /** Links of the intrusive doubly-linked slot list. */
  timerPrev: TimerEntry | null
  timerNext: TimerEntry | null
  /** Slot number while scheduled; -1 when not scheduled. */
  timerSlot: number
}

export interface TimerEntry extends TimerFields {
  /** Called by advance() once the due tick is reached, with advance()'s real nowMs. */
  onTimer(nowMs: number): void
}

/**
 * Initial values for the timer fields. Owners that are classes should declare
 * the same values as field initialisers (timerAt = 0, timerPrev = null,
 * timerNext = null, timerSlot = -1) so every instance has one shape; this
 * helper is for object literals: `{ ...newTimerFields(), onTimer() {} }`.
 */
export function newTimerFields(): TimerFields {
  return { timerAt: 0, timerPrev: null, timerNext: null, timerSlot: -1 }
}

/** Index of the lowest set bit of a non-zero 32-bit word. */
function ctz(x: number): number {
  return 31 - Math.clz32(x & -x)
}

export class TimingWheel {
  /**
   * Called when the earliest time advance() must run moves earlier (a new
   * timer due sooner than any known), and at the end of advance() with the
   * next wake-up tick, or null when empty. The server uses it to (re)arm its
   * single Node timer. cancel() never calls it, so an armed timer may fire
   * with nothing due: advance() then just reports the real next wake-up.
   */
  onWake: ((tick: number | null) => void) | null = null

  #tick: number
  #size = 0
  /** Last value given to onWake (or found by advance): no later than the real next event. */
  #armed: number | null = null
  #advancing = false
  /** Slot list heads, LEVELS * 64; slot number = level * 64 + digit. */
  readonly #slots: (TimerEntry | null)[] = new Array<TimerEntry | null>(LEVELS * SLOTS).fill(null)
  readonly #tails: (TimerEntry | null)[] = new Array<TimerEntry | null>(LEVELS * SLOTS).fill(null)
  /** Two 32-bit words per level; bit s of word s >>> 5 marks slot s non-empty. */
  readonly #occupied = new Uint32Array((LEVELS * SLOTS) / 32)

  constructor(nowMs: number) {
    if (!(nowMs >= 0) || !Number.isFinite(nowMs)) {
      throw new RangeError(`TimingWheel: nowMs ${nowMs} is not a finite ms >= 0`)
    }
    this.#tick = Math.floor(nowMs)
  }

  get size(): number {
    return this.#size
  }

  /**
   * Due tick = ceil(atMs), at least current tick + 1, so it never fires inside
   * schedule(). Rescheduling a scheduled entry moves it.
   */
  schedule(entry: TimerEntry, atMs: number): void {
    if (Number.isNaN(atMs)) throw new RangeError('TimingWheel.schedule: atMs is NaN')
    let due = Math.ceil(atMs)
    if (due <= this.#tick) due = this.#tick + 1
    else if (due > MAX_TICK) due = MAX_TICK
    if (entry.timerSlot === -1) this.#size++
    else this.#unlink(entry)
    entry.timerAt = due
    const event = this.#place(entry)
    // Inside advance() the wheel reports once, at the end.
    if (!this.#advancing && (this.#armed === null || event < this.#armed)) {
      this.#armed = event
      this.onWake?.(event)
    }
  }

  /** O(1); no-op if not scheduled. Safe from inside onTimer, even for an entry due the same tick. */
  cancel(entry: TimerEntry): void {
    if (entry.timerSlot === -1) return
    this.#unlink(entry)
    this.#size--
  }

  isScheduled(entry: TimerEntry): boolean {
    return entry.timerSlot !== -1
  }

  /**
   * Move the current tick to floor(nowMs), firing every entry due at or
   * before it in due-tick order (same tick: schedule order, invariant 6), each with this nowMs.
   * Jumps from event to event, so an idle gap of years costs a few cascades,
   * not one step per tick. Going backwards is a no-op. Not reentrant.
   * Entries scheduled from inside onTimer fire in this same call when their
   * due tick <= floor(nowMs) (see the header).
   */
  advance(nowMs: number): void {
    if (Number.isNaN(nowMs)) throw new RangeError('TimingWheel.advance: nowMs is NaN')
    if (this.#advancing) throw new Error('TimingWheel.advance called from inside onTimer')
    const target = Math.floor(nowMs)
    this.#advancing = true
    try {
      for (;;) {
        const next = this.#nextEvent()
        if (next === null || next > target) break
        if (next > this.#tick) {
          this.#tick = next
          this.#cascade(next)
          this.#fire(next, nowMs)
        } else if (this.#fire(next, nowMs) === 0) {
          // next === #tick only when an onTimer threw and left entries due now;
          // firing none means a corrupt bitmap, which would otherwise spin forever.
          throw new Error(`TimingWheel: occupancy bit set for an empty slot at tick ${next}`)
        }
      }
      if (target > this.#tick) this.#tick = target
    } finally {
      // Also after a throwing onTimer, so the server's timer stays armed.
      this.#advancing = false
      this.#armed = this.#nextEvent()
      this.onWake?.(this.#armed)
    }
  }

  /** The earliest tick at which advance() has work (a due entry or a cascade), or null if empty. */
  nextWake(): number | null {
    return this.#nextEvent()
  }

  /**
   * Link `entry` (timerAt > #tick, or === #tick only in a cascade) into its
   * slot (invariant 2); returns the slot's event tick.
   */
  #place(entry: TimerEntry): number {
    const at = entry.timerAt
    const now = this.#tick
    let level = 0
    let unit = 1
    while (level < TOP) {
      const up = unit * SLOTS
      if (Math.floor(at / up) === Math.floor(now / up)) break
      unit = up
      level++
    }
    let block = Math.floor(at / unit)
    if (level === TOP) {
      // Ring: at most 63 top-level blocks ahead; park anything beyond in the farthest.
      const last = Math.floor(now / unit) + (SLOTS - 1)
      if (block > last) block = last
    }
    this.#link(entry, level * SLOTS + (block % SLOTS))
    return block * unit
  }

  /** Appends (invariant 6). */
  #link(entry: TimerEntry, slot: number): void {
    const tail = this.#tails[slot] ?? null
    entry.timerSlot = slot
    entry.timerPrev = tail
    entry.timerNext = null
    if (tail !== null) tail.timerNext = entry
    else {
      this.#slots[slot] = entry
      this.#occupied[slot >>> 5]! |= 1 << (slot & 31)
    }
    this.#tails[slot] = entry
  }

  #unlink(entry: TimerEntry): void {
    const slot = entry.timerSlot
    const prev = entry.timerPrev
    const next = entry.timerNext
    if (prev !== null) prev.timerNext = next
    else {
      this.#slots[slot] = next
      if (next === null) this.#occupied[slot >>> 5]! &= ~(1 << (slot & 31))
    }
    if (next !== null) next.timerPrev = prev
    else this.#tails[slot] = prev
    entry.timerPrev = null
    entry.timerNext = null
    entry.timerSlot = -1
  }

  /** First non-empty slot (digit) of `level` at or after digit `from`, without wrapping; -1 if none. */
  #firstOccupied(level: number, from: number): number {
    const w = level * 2
    if (from < 32) {
      const lo = this.#occupied[w]! & (-1 << from)
      if (lo !== 0) return ctz(lo)
      const hi = this.#occupied[w + 1]!
      return hi !== 0 ? 32 + ctz(hi) : -1
    }
    if (from >= SLOTS) return -1
    const hi = this.#occupied[w + 1]! & (-1 << (from - 32))
    return hi !== 0 ? 32 + ctz(hi) : -1
  }

  /** Invariant 3: the first occupied slot of the lowest non-empty level. */
  #nextEvent(): number | null {
    const occupied = this.#occupied
    let unit = 1
    for (let level = 0; level < LEVELS; level++, unit *= SLOTS) {
      if ((occupied[level * 2]! | occupied[level * 2 + 1]!) === 0) continue
      const block = Math.floor(this.#tick / unit)
      const digit = block % SLOTS
      // Level 0 includes the current slot (entries due now); above it is empty.
      let d = this.#firstOccupied(level, level === 0 ? digit : digit + 1)
      if (d >= 0) return (block - digit + d) * unit
      // Only the top-level ring has slots "behind" the current digit.
      d = this.#firstOccupied(level, 0)
      return (block - digit + SLOTS + d) * unit
    }
    return null
  }

  /** `tick` just became current: empty the slot that starts here at each level it starts one. */
  #cascade(tick: number): void {
    let unit = SLOTS
    for (let level = 1; level < LEVELS; level++, unit *= SLOTS) {
      if (tick % unit !== 0) return
      const slot = level * SLOTS + (Math.floor(tick / unit) % SLOTS)
      let entry = this.#slots[slot] ?? null
      if (entry === null) continue
      this.#slots[slot] = null
      this.#tails[slot] = null
      this.#occupied[slot >>> 5]! &= ~(1 << (slot & 31))
      // Each entry lands strictly lower (due == tick lands in level-0 slot tick % 64,
      // fired next); none lands in a slot being emptied, and no callback runs here.
      while (entry !== null) {
        const next: TimerEntry | null = entry.timerNext
        this.#place(entry)
        entry = next
      }
    }
  }

  /**
   * Fire level-0 slot tick % 64 (all due exactly at `tick`). Unlink before each
   * call, and re-read the head after it: onTimer may cancel or move entries
   * still in this slot, while anything it schedules is due after `tick` and so
   * lands elsewhere. Returns how many fired.
   */
  #fire(tick: number, nowMs: number): number {
    const slot = tick % SLOTS
    let fired = 0
    let entry: TimerEntry | null
    while ((entry = this.#slots[slot] ?? null) !== null) {
      this.#unlink(entry)
      this.#size--
      fired++
      entry.onTimer(nowMs)
    }
    return fired
  }
}

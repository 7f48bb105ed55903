/** Monotonic milliseconds. Never goes backwards. */
export interface Clock {
  now(): number
}

/**
 * Process-wide monotonic clock; unaffected by wall-clock (NTP, settimeofday)
 * jumps. Whole milliseconds, rounded up (the timing wheel's resolution; a
 * deadline is never early): integers stay small integers inside V8, where a
 * fractional time costs every job a 16-byte heap number per time field
 * (until about 24.8 days of uptime, when the values outgrow that range).
 * Read afresh each call: caching a reading per callback needs a microtask
 * per callback, whose allocations cost more than the clock call.
 */
export const systemClock: Clock = {
  now(): number {
    return Math.ceil(performance.now())
  },
}

/** A clock that only moves when told to: tests drive time with advance(), never sleep. */
export class ManualClock implements Clock {
  #now: number

  constructor(start = 0) {
    if (!Number.isFinite(start)) throw new RangeError(`ManualClock: start ${start} is not finite`)
    this.#now = start
  }

  now(): number {
    return this.#now
  }

  advance(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) {
      throw new RangeError(`ManualClock.advance: ${ms} is not a finite ms >= 0`)
    }
    this.#now += ms
  }

  /** Jump to an absolute time; going backwards would break monotonicity, so it throws. */
  set(ms: number): void {
    if (!(ms >= this.#now) || !Number.isFinite(ms)) {
      throw new RangeError(`ManualClock.set: ${ms} is before now (${this.#now}) or not finite`)
    }
    this.#now = ms
  }
}

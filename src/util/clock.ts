/** Monotonic milliseconds (float). Never goes backwards. */
export interface Clock {
  now(): number
}

/** Process-wide monotonic clock; unaffected by wall-clock (NTP, settimeofday) jumps. */
export const systemClock: Clock = {
  now(): number {
    return performance.now()
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

/**
 * Idempotency keys (put tag `idp:<key>[:<ttl>]`): per tube, a key names at
 * most one live job, and after that job's delete, for `ttl` seconds, a
 * tombstone that still answers with its id (`INSERTED <id> DELETED`).
 *
 * Invariants:
 * - `entries` maps `<tube>:<key>` (':' is in neither, so the pair is
 *   unambiguous) to the key's live job or its tombstone, never both.
 * - A tombstone is scheduled on the timing wheel at its expiry and removed
 *   when it fires; a lookup after the expiry but before the wheel's tick
 *   treats it as gone too, so expiry never depends on timer latency.
 * - Expiry is on the monotonic clock in memory; the journal stores wall-clock
 *   times and converts at replay, like every other deadline.
 */
import type { Job } from '../job.js'
import type { TimerEntry, TimingWheel } from '../timing-wheel.js'

export class IdpEntry implements TimerEntry {
  readonly tube: string
  readonly key: string
  /** The live job; null once it is a tombstone. */
  job: Job | null
  /** The job's id (the tombstone keeps answering with it). */
  readonly id: number
  /** Seconds the key outlives its job's delete; 0: removed with it. */
  readonly ttlSecs: number
  /** Tombstone: when it expires (monotonic ms). */
  expiresAt = 0
  private readonly index: IdempotencyIndex

  timerAt = 0
  timerPrev: TimerEntry | null = null
  timerNext: TimerEntry | null = null
  timerSlot = -1

  constructor(index: IdempotencyIndex, tube: string, key: string, job: Job | null, id: number, ttlSecs: number) {
    this.index = index
    this.tube = tube
    this.key = key
    this.job = job
    this.id = id
    this.ttlSecs = ttlSecs
  }

  onTimer(): void {
    this.index.expire(this)
  }
}

const mapKey = (tube: string, key: string): string => `${tube}:${key}`

export class IdempotencyIndex {
  private readonly entries = new Map<string, IdpEntry>()
  private readonly wheel: TimingWheel

  constructor(wheel: TimingWheel) {
    this.wheel = wheel
  }

  /** Live keys and tombstones (for tests and figures). */
  get size(): number {
    return this.entries.size
  }

  /** The key's live job or unexpired tombstone in `tube`, if any. */
  find(tube: string, key: string, now: number): IdpEntry | undefined {
    const e = this.entries.get(mapKey(tube, key))
    if (e !== undefined && e.job === null && now >= e.expiresAt) {
      this.expire(e)
      return undefined
    }
    return e
  }

  /** A new job takes the key (find() said it is free). */
  add(job: Job, key: string, ttlSecs: number): IdpEntry {
    const e = new IdpEntry(this, job.tube.name, key, job, job.id, ttlSecs)
    this.entries.set(mapKey(e.tube, key), e)
    return e
  }

  /** A tombstone read back from the journal; `expiresAt` is monotonic ms. */
  restoreTombstone(tube: string, key: string, id: number, ttlSecs: number, expiresAt: number, now: number): void {
    if (expiresAt <= now) return
    const e = new IdpEntry(this, tube, key, null, id, ttlSecs)
    this.entries.set(mapKey(tube, key), e)
    this.entomb(e, expiresAt)
  }

  /** The entry's job was deleted: the key is free now, or a tombstone for ttl seconds. */
  jobDeleted(e: IdpEntry, now: number): void {
    e.job = null
    if (e.ttlSecs === 0) this.entries.delete(mapKey(e.tube, e.key))
    else this.entomb(e, now + e.ttlSecs * 1000)
  }

  expire(e: IdpEntry): void {
    this.wheel.cancel(e)
    const k = mapKey(e.tube, e.key)
    if (this.entries.get(k) === e) this.entries.delete(k)
  }

  /** Unexpired tombstones, for the journal's snapshot of them. */
  *tombstones(): Iterable<IdpEntry> {
    for (const e of this.entries.values()) if (e.job === null) yield e
  }

  private entomb(e: IdpEntry, expiresAt: number): void {
    e.expiresAt = expiresAt
    this.wheel.schedule(e, expiresAt)
  }
}

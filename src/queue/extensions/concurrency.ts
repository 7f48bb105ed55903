/**
 * Concurrency keys (put tag `con:<key>[:<n>]`): at most `limit` jobs with
 * the key are reserved at once; while that many are, the key's other ready
 * jobs are hidden from reserve. Keys are global, across tubes (as in tuber).
 *
 * A key's limit is the largest n among its live jobs (tuber keeps the
 * largest n it has seen; give every job of a key the same n).
 *
 * Structure, so that reserve stays O(log n) however many jobs wait behind a
 * key (tuber scans and sorts the tube's ready jobs each time): the ready jobs
 * of a key in a tube form a lane. While the key is below its limit, the
 * lane's best job (priority, then id) is in the tube's ready heap and the
 * rest wait in the lane's own heap; at the limit, all of them wait there. So
 * the tube's ready heap, the registry's ready index and its eligible heap only
 * ever see jobs a reserve may take, and need no change.
 *
 * Invariants, for every key k and lane l of k in tube t:
 * - l.top is null or the best ready job of l, and is in t.ready; every other
 *   ready job of l is in l.waiting (a job is in one heap at a time, through
 *   heapIndex); t.parked counts the jobs in the lanes' waiting heaps.
 * - l.top !== null iff k is below its limit and the lane has a ready job.
 * - k.reserved counts the reserved jobs with key k; k.jobs its live jobs;
 *   `limits` holds, for each n, how many live jobs carry it.
 * - A lane exists while it has a ready job; a key while it has a live job.
 * After a change, the caller re-files every tube whose ready heap changed
 * (`refresh`) and pairs waiters (processQueue).
 */
import { Heap } from '../heap.js'
import { byPriority, type Job } from '../job.js'
import type { Tube } from '../tube.js'

export class Lane {
  readonly tube: Tube
  readonly waiting = new Heap<Job>(byPriority)
  top: Job | null = null

  constructor(tube: Tube) {
    this.tube = tube
  }
}

export class ConKey {
  readonly name: string
  reserved = 0
  jobs = 0
  limit = 1
  readonly limits = new Map<number, number>()
  readonly lanes = new Map<Tube, Lane>()

  constructor(name: string) {
    this.name = name
  }

  get blocked(): boolean {
    return this.reserved >= this.limit
  }
}

export class ConcurrencyKeys {
  private readonly byName = new Map<string, ConKey>()
  /** Re-files a tube whose ready heap changed. */
  private readonly refresh: (t: Tube) => void

  constructor(refresh: (t: Tube) => void) {
    this.refresh = refresh
  }

  get size(): number {
    return this.byName.size
  }

  find(name: string): ConKey | undefined {
    return this.byName.get(name)
  }

  /** A new live job with key `name` and limit n. */
  attach(name: string, n: number): ConKey {
    let k = this.byName.get(name)
    if (k === undefined) {
      k = new ConKey(name)
      this.byName.set(name, k)
    }
    k.jobs++
    k.limits.set(n, (k.limits.get(n) ?? 0) + 1)
    if (n > k.limit || k.jobs === 1) this.setLimit(k, n)
    return k
  }

  /** A live job with key k and limit n was deleted (it is no longer ready or reserved). */
  detach(k: ConKey, n: number): void {
    k.jobs--
    const left = k.limits.get(n)! - 1
    if (left > 0) {
      k.limits.set(n, left)
    } else {
      k.limits.delete(n)
      if (n === k.limit && k.jobs > 0) this.setLimit(k, Math.max(...k.limits.keys()))
    }
    if (k.jobs === 0) this.byName.delete(k.name)
  }

  /** A ready job of key k: into the tube's ready heap or its lane. */
  place(k: ConKey, j: Job): void {
    const t = j.tube
    let l = k.lanes.get(t)
    if (l === undefined) {
      l = new Lane(t)
      k.lanes.set(t, l)
    }
    if (k.blocked) return this.park(l, j)
    const top = l.top
    if (top === null) {
      l.top = j
      t.ready.push(j)
    } else if (byPriority(j, top)) {
      t.ready.remove(top)
      this.park(l, top)
      l.top = j
      t.ready.push(j)
    } else {
      this.park(l, j)
    }
  }

  /** A ready job of key k leaves the ready state (reserve, delete, reserve-job). */
  unplace(k: ConKey, j: Job): void {
    const t = j.tube
    const l = k.lanes.get(t)!
    if (l.top === j) {
      t.ready.remove(j)
      l.top = null
      if (!k.blocked) this.promote(l)
    } else {
      l.waiting.remove(j)
      t.parked--
    }
    if (l.top === null && l.waiting.size === 0) k.lanes.delete(t)
  }

  reserved(k: ConKey): void {
    k.reserved++
    if (k.reserved === k.limit) this.block(k)
  }

  unreserved(k: ConKey): void {
    k.reserved--
    if (k.reserved === k.limit - 1) this.unblock(k)
  }

  private setLimit(k: ConKey, n: number): void {
    const was = k.blocked
    k.limit = n
    if (was && !k.blocked) this.unblock(k)
    else if (!was && k.blocked) this.block(k)
  }

  private park(l: Lane, j: Job): void {
    l.waiting.push(j)
    l.tube.parked++
  }

  private promote(l: Lane): void {
    const j = l.waiting.pop()
    if (j === undefined) return
    l.tube.parked--
    l.top = j
    l.tube.ready.push(j)
  }

  /** The key reached its limit: every lane's top leaves its tube's ready heap. */
  private block(k: ConKey): void {
    for (const l of k.lanes.values()) {
      const top = l.top
      if (top === null) continue
      l.tube.ready.remove(top)
      l.top = null
      this.park(l, top)
      this.refresh(l.tube)
    }
  }

  /** The key went below its limit: every lane's best job enters its tube's ready heap. */
  private unblock(k: ConKey): void {
    for (const l of k.lanes.values()) {
      if (l.top !== null) continue
      this.promote(l)
      this.refresh(l.tube)
    }
  }
}

/**
 * Which jobs are live, which file holds each one's latest FULL record, and
 * which of them to move so the oldest files can be removed. Pure bookkeeping:
 * the facade encodes and writes what this selects, reading each job from the
 * registry (the store keeps no copy of a job: 16 bytes a job, see below).
 *
 * Invariants:
 * - `where(id)` is non-zero exactly for the live jobs: > 0 is the index of
 *   the file holding the job's latest *written* FULL record; < 0 means a
 *   FULL for it is queued (its put, or a migration), -1 - prev where prev is
 *   the file of its previous written FULL (0 for a put).
 * - `FileInfo.live` counts the live jobs whose latest written FULL is in that
 *   file (a queued migration still counts in the file it moves from).
 *   `live === 0` means no live job needs any record in the file: its UPDATE
 *   and DELETE records are superseded by later FULL records or concern
 *   deleted jobs.
 * - `FileInfo.ids` lists, in write order, the ids whose FULL was written to
 *   the file; an entry is current iff where(id) is that file, and stale
 *   otherwise (moved on or deleted). `select` walks each list once from
 *   `next`, skipping stale entries: O(1) amortised per FULL written.
 *   Memory: 8 bytes per id slot plus 8 per FULL record in a file on disk.
 * - `files` is the contiguous run of files on disk, oldest first; the last is
 *   the writer's current file, which is never migrated from nor removed.
 *   Files go strictly from the oldest end, once `live === 0` and everything
 *   written up to `removeAfter` is durable (the records moved out are safe).
 * - liveBytes = Σ FULL record sizes of live jobs (what a fully compacted log
 *   holds); diskBytes = Σ file sizes (a preallocated file's zeros included).
 * - Migration runs only while diskBytes, less the zeros of the current file
 *   that no record has reached yet (migrating cannot free them), is above
 *   2·liveBytes + 2·fileSize, and moves
 *   at most twice the bytes the server logged since the last flush (at least
 *   one record): O(1) amortised per operation, and disk stays within about
 *   4·liveBytes + 3·fileSize (docs/binlog-format.md gives the argument).
 */
import { IdSlots } from './id-slots.js'

export interface FileInfo {
  readonly index: number
  size: number
  live: number
  /** Ids whose FULL was written here, in write order (some stale); `select` has looked at those before `next`. */
  ids: number[]
  next: number
  /** Write sequence after which the file may be removed once durable; -1 while still needed. */
  removeAfter: number
}

export class Compactor {
  readonly files: FileInfo[] = []
  liveBytes = 0
  diskBytes = 0
  /** The current file's preallocated zeros beyond its last record. */
  private unwritten = 0
  private readonly where = new IdSlots()
  private readonly fileSize: number

  constructor(fileSize: number) {
    this.fileSize = fileSize
  }

  get liveJobs(): number {
    return this.where.size
  }

  has(id: number): boolean {
    return this.where.get(id) !== 0
  }

  fileAt(index: number): FileInfo | undefined {
    const first = this.files[0]
    return first === undefined ? undefined : this.files[index - first.index]
  }

  /** Records the size of a file after a write (appending it if it is new); `unwritten`: for the writer's current file, its zeros beyond its last record. */
  fileWritten(index: number, size: number, unwritten = 0): void {
    this.unwritten = unwritten
    let f = this.fileAt(index)
    if (f === undefined) {
      f = { index, size: 0, live: 0, ids: [], next: 0, removeAfter: -1 }
      this.files.push(f)
    }
    this.diskBytes += size - f.size
    f.size = size
  }

  /** A new job whose FULL record is queued. */
  add(id: number, fullBytes: number): void {
    this.where.set(id, -1)
    this.liveBytes += fullBytes
  }

  /** A replayed job whose latest FULL is in `file`. */
  addPlaced(id: number, file: number, fullBytes: number): void {
    this.where.set(id, file)
    this.liveBytes += fullBytes
    const f = this.fileAt(file)!
    f.live++
    f.ids.push(id)
  }

  /** A job is gone; false if it was not live. */
  remove(id: number, fullBytes: number): boolean {
    const v = this.where.get(id)
    if (v === 0) return false
    const file = v > 0 ? v : -1 - v
    if (file !== 0) this.fileAt(file)!.live--
    this.where.delete(id)
    this.liveBytes -= fullBytes
    return true
  }

  /** The queued FULL records of `ids` were written to file `index`. */
  placed(ids: readonly number[], index: number): void {
    const to = this.fileAt(index)!
    for (const id of ids) {
      const v = this.where.get(id)
      if (v >= 0) continue // deleted since it was queued
      const prev = -1 - v
      if (prev !== 0) this.fileAt(prev)!.live--
      this.where.set(id, index)
      to.live++
      to.ids.push(id)
    }
  }

  /** stats-job `file`: the file holding the job's latest FULL (the current one while its put is queued); 0 if not live. */
  fileOf(id: number, current: number): number {
    const v = this.where.get(id)
    if (v >= 0) return v
    const prev = -1 - v
    return prev !== 0 ? prev : current
  }

  get overThreshold(): boolean {
    return this.diskBytes - this.unwritten > 2 * this.liveBytes + 2 * this.fileSize
  }

  /**
   * Picks live jobs out of the oldest files (never `current`) whose FULL
   * records (`sizeOf`) add up to at least `budget` bytes, or one job, and
   * marks them queued. Returns their ids in the order picked.
   */
  select(budget: number, current: number, sizeOf: (id: number) => number): number[] {
    const out: number[] = []
    if (!this.overThreshold) return out
    let spent = 0
    for (const f of this.files) {
      if (f.index === current) break
      while (f.next < f.ids.length && (spent < budget || out.length === 0)) {
        const id = f.ids[f.next++]!
        if (this.where.get(id) !== f.index) continue // moved on or deleted
        this.where.set(id, -1 - f.index)
        spent += sizeOf(id)
        out.push(id)
      }
      if (f.next === f.ids.length) {
        // Every job listed here has been moved or is gone: the list is done.
        f.ids = []
        f.next = 0
      }
      if (spent >= budget && out.length > 0) break
    }
    return out
  }

  /** Marks the run of oldest files that no live job needs as removable after write `seq`. */
  markRemovable(seq: number, current: number): void {
    for (const f of this.files) {
      if (f.index === current || f.live > 0) return
      if (f.removeAfter < 0) f.removeAfter = seq
    }
  }

  /** The oldest file, if it may be removed now that everything up to `durableSeq` is durable. */
  removableHead(durableSeq: number, current: number): FileInfo | undefined {
    const f = this.files[0]
    if (f === undefined || f.index === current || f.removeAfter < 0 || f.removeAfter > durableSeq) return undefined
    return f
  }

  dropHead(): void {
    const f = this.files.shift()
    if (f !== undefined) this.diskBytes -= f.size
  }
}

/**
 * Which jobs are live, which file holds each one's latest FULL record, and
 * which of them to move so the oldest files can be removed. Pure bookkeeping:
 * the facade encodes and writes what this selects.
 *
 * Invariants:
 * - Every live job has one LiveEntry. `file` is the index of the file holding
 *   its latest *written* FULL record, 0 while its only FULL is still queued.
 * - `FileInfo.live` counts the entries whose `file` is that file; its `head`
 *   list holds those of them with no FULL queued (the ones a migration may
 *   still pick). `live === 0` means no live job needs any record in the
 *   file: its UPDATE and DELETE records are superseded by later FULL records
 *   or concern deleted jobs.
 * - `files` is the contiguous run of files on disk, oldest first; the last is
 *   the writer's current file, which is never migrated from nor removed.
 *   Files go strictly from the oldest end, once `live === 0` and everything
 *   written up to `removeAfter` is durable (the records moved out are safe).
 * - liveBytes = Σ fullBytes of live entries (what a fully compacted log holds);
 *   diskBytes = Σ file sizes.
 * - Migration runs only while diskBytes > 2·liveBytes + 2·fileSize and moves
 *   at most twice the bytes the server logged since the last flush (at least
 *   one record): O(1) amortised per operation, and disk stays within about
 *   4·liveBytes + 3·fileSize (docs/binlog-format.md gives the argument).
 *   Every list operation is O(1); the only scans are over files (few).
 */
import type { JobView } from './types.js'

export interface LiveEntry {
  readonly id: number
  /** The latest Job object the registry passed (or a snapshot of a replayed job). */
  view: JobView
  /** Last logged state (JobState number); bury order changes on entering BURIED. */
  state: number
  buryKey: number
  fullBytes: number
  file: number
  /** A FULL record for it is queued (its put, or a migration). */
  queued: boolean
  deleted: boolean
  list: FileInfo | null
  prev: LiveEntry | null
  next: LiveEntry | null
}

export interface FileInfo {
  readonly index: number
  size: number
  live: number
  head: LiveEntry | null
  tail: LiveEntry | null
  /** Write sequence after which the file may be removed once durable; -1 while still needed. */
  removeAfter: number
}

export function newEntry(id: number, view: JobView, fullBytes: number, buryKey: number): LiveEntry {
  return { id, view, state: view.state, buryKey, fullBytes, file: 0, queued: false, deleted: false, list: null, prev: null, next: null }
}

export class Compactor {
  readonly entries = new Map<number, LiveEntry>()
  readonly files: FileInfo[] = []
  liveBytes = 0
  diskBytes = 0
  private readonly fileSize: number

  constructor(fileSize: number) {
    this.fileSize = fileSize
  }

  fileAt(index: number): FileInfo | undefined {
    const first = this.files[0]
    return first === undefined ? undefined : this.files[index - first.index]
  }

  /** Records the size of a file after a write (appending it if it is new). */
  fileWritten(index: number, size: number): void {
    let f = this.fileAt(index)
    if (f === undefined) {
      f = { index, size: 0, live: 0, head: null, tail: null, removeAfter: -1 }
      this.files.push(f)
    }
    this.diskBytes += size - f.size
    f.size = size
  }

  add(e: LiveEntry): void {
    this.entries.set(e.id, e)
    this.liveBytes += e.fullBytes
  }

  /** A replayed job whose latest FULL is in `file`. */
  addPlaced(e: LiveEntry, file: number): void {
    this.add(e)
    const f = this.fileAt(file)!
    e.file = file
    f.live++
    append(f, e)
  }

  remove(id: number): LiveEntry | undefined {
    const e = this.entries.get(id)
    if (e === undefined) return undefined
    this.entries.delete(id)
    this.liveBytes -= e.fullBytes
    e.deleted = true
    if (e.file !== 0) this.fileAt(e.file)!.live--
    if (e.list !== null) unlink(e)
    return e
  }

  /** The queued FULL records of `placed` were written to file `index`. */
  placed(placed: readonly LiveEntry[], index: number): void {
    const to = this.fileAt(index)!
    for (const e of placed) {
      e.queued = false
      if (e.deleted) continue
      if (e.file !== 0) this.fileAt(e.file)!.live--
      e.file = index
      to.live++
      append(to, e)
    }
  }

  get overThreshold(): boolean {
    return this.diskBytes > 2 * this.liveBytes + 2 * this.fileSize
  }

  /**
   * Picks live entries out of the oldest files (never `current`) whose FULL
   * records add up to at least `budget` bytes, or one entry, and marks them
   * queued. Returns them in the order picked.
   */
  select(budget: number, current: number): LiveEntry[] {
    const out: LiveEntry[] = []
    if (!this.overThreshold) return out
    let spent = 0
    for (const f of this.files) {
      if (f.index === current) break
      for (let e = f.head; e !== null && (spent < budget || out.length === 0); e = f.head) {
        unlink(e)
        e.queued = true
        spent += e.fullBytes
        out.push(e)
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

function append(f: FileInfo, e: LiveEntry): void {
  e.list = f
  e.prev = f.tail
  e.next = null
  if (f.tail === null) f.head = e
  else f.tail.next = e
  f.tail = e
}

function unlink(e: LiveEntry): void {
  const f = e.list!
  if (e.prev === null) f.head = e.next
  else e.prev.next = e.next
  if (e.next === null) f.tail = e.prev
  else e.next.prev = e.prev
  e.list = null
  e.prev = null
  e.next = null
}

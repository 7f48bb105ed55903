/**
 * The file being appended to, rotation, and the fsync policy.
 *
 * Invariants:
 * - One file is open for appending (`current`); `pos` is its length, and every
 *   byte below `pos` belongs to a whole record: a failed write is cut back to
 *   `pos` (and `pos`-relative positional writes overwrite any leftover).
 * - A batch goes out in one positional writev at `pos`, never split across
 *   files; a file is rotated before a batch that would take it past
 *   `fileSize` (so a file exceeds it only when a single batch does).
 * - Batches carry increasing sequence numbers. `writtenSeq` is the last one
 *   written; `syncedSeq <= writtenSeq` the last one an fsync started after its
 *   write has completed for (under -F it follows `writtenSeq`: nothing more
 *   is promised). Both only grow.
 * - "fsync" below means fdatasync for a binlog file and fsync for the
 *   directory: fdatasync writes a file's data and what is needed to read
 *   it back (its size), only not its times.
 * - At most one asynchronous fsync is in flight. With -f 0 every write is
 *   followed by an fsync: inline, in write() itself, while fsyncs are fast
 *   (the last one took under INLINE_SYNC_MAX_MS); on the thread pool, as
 *   soon as a write lands and none is running, while they are slow (group
 *   commit: it covers every batch written before it started). With -f N a
 *   timer starts one at most every N ms and within N ms of any write.
 * - A new file's header and its directory entry are fsynced before anything
 *   is written to the file, and a file is fsynced in full before the writer
 *   leaves it (unless -F, whose files are flagged so replay expects torn
 *   tails in any of them).
 * - A new file is written as `binlog.N.new` and only given its name
 *   `binlog.N` (a hard link, which never replaces an existing file) once its
 *   header is on disk: a `binlog.N` without our header was never ours, so
 *   replay never mistakes another program's file for a torn one of ours.
 * - Unless -F, files are preallocated where they can be: the next file is
 *   filled with zeros ahead of time (spare.ts; the first one at start), so
 *   an fsync after a write finds its blocks allocated. The fill starts once
 *   the current file is half full; a rotation that finds no spare ready
 *   appends to a plain file as before. A full disk gives the spare up first.
 */
import path from 'node:path'
import type { Logger } from 'pino'
import { BinlogFsyncError, BinlogFullError, BinlogIoError, isNoSpace } from './errors.js'
import { writeAll, type BinlogFs } from '../io.js'
import { LatencyHistogram } from '../latency-histogram.js'
import { FORMAT_VERSION, HEADER_SIZE, HeaderFlag, PREALLOCATED_VERSION, encodeHeader } from './record.js'
import { Spare } from './spare.js'
import { fileName, newFileName } from './replay.js'

export interface WriterOptions {
  readonly dir: string
  readonly fileSize: number
  readonly fsyncMs: number
  readonly fsyncNever: boolean
  /** -f 0: INLINE_SYNC_MAX_MS, or what a test pins. */
  readonly inlineSyncMaxMs: number
  readonly io: BinlogFs
  readonly log: Logger
  /** The id high-water mark for the header of a new file. */
  readonly nextId: () => number
  /** syncedSeq moved forward outside a write() call (an async fsync completed). */
  readonly onSynced: () => void
  /** An asynchronous fsync failed. */
  readonly onFatal: (err: Error) => void
}

/**
 * Under -f 0, an fsync that took less than this makes the next one run
 * inline. Every reply waits for its batch's fsync anyway, so blocking the
 * loop for a fast one costs the clients nothing, and it spares each batch
 * the hand-off to a pool thread and back, which on a busy machine costs
 * more than the fsync (measured: put+delete at 10 and 50 connections 1.45x
 * and 1.24x the throughput, with the lower tails). A slower disk (a
 * spinning one, some network volumes) would stall accepts, handshakes,
 * timers and /metrics for each fsync: those run in the background.
 */
export const INLINE_SYNC_MAX_MS = 2

/** What an fsync of a directory may answer where directories cannot be fsynced: not an error. */
const IGNORED_DIR_FSYNC = ['EINVAL', 'EISDIR', 'EBADF']

export class Writer {
  writtenSeq = 0
  syncedSeq = 0
  /** fsync calls made (sync and async), for stats and tests. */
  fsyncs = 0
  /** How long each of those took (/metrics). */
  readonly fsyncLatency = new LatencyHistogram()
  private current: number
  /** The current file's path, kept with `current` (fsync and write errors name it; joining it per write showed in profiles). */
  private currentPath: string
  private fd: number
  private pos: number
  /** The current file's length before any record went in: -s for a preallocated file, else 0. */
  private filledTo = 0
  private readonly dirFd: number
  private readonly opts: WriterOptions
  private syncing = false
  private timer: NodeJS.Timeout | null = null
  private lastSyncStart = -Infinity
  /** How long the last fsync of a binlog file took, ms (from its start to its completion being seen). */
  private lastSyncMs = 0
  /** Files left while an fsync on them was in flight: closed when it completes. */
  private retired: number[] = []
  private closed = false
  /** The last rotation found no room (warned once until one succeeds). */
  private createFailing = false
  /** The next file, filled ahead (null under -F). */
  private readonly spare: Spare | null
  /** A write or rotation hit a full disk: no spare is filled until spaceReturned(). */
  private lowSpace = false
  /** Files to remove, oldest first (remove()); `removing` while one is on the thread pool. */
  private readonly removals: number[] = []
  private removing = false
  /** `dirFd` is open (closed by close() or, after it, when the removal in flight ends). */
  private dirOpen = true

  /** Creates `binlog.<index>` and opens it for appending; BinlogFullError if there is no room even for that. */
  constructor(opts: WriterOptions, index: number) {
    this.opts = opts
    this.dirFd = opts.io.openSync(opts.dir, 'r')
    this.current = index
    this.currentPath = fileName(opts.dir, index)
    this.spare = opts.fsyncNever ? null : new Spare(opts.dir, opts.fileSize, opts.io, opts.log)
    try {
      this.spare?.removeLeftover()
      this.spare?.fillSync()
      const created = this.createFile(index)
      this.fd = created.fd
      this.filledTo = created.filledTo
    } catch (err) {
      opts.io.closeSync(this.dirFd)
      if (isNoSpace(err)) throw new BinlogFullError(opts.dir, `cannot create ${fileName(opts.dir, index)}`, { cause: err })
      throw err
    }
    this.pos = HEADER_SIZE
  }

  get currentIndex(): number {
    return this.current
  }

  /** Length of the current file (a preallocated one is at least as long as it was filled). */
  get size(): number {
    return Math.max(this.pos, this.filledTo)
  }

  /** The current file's preallocated zeros beyond its last record (0 for an appended file). */
  get unwritten(): number {
    return Math.max(0, this.filledTo - this.pos)
  }

  get path(): string {
    return this.currentPath
  }

  /**
   * Appends one batch (`seq` covers it). Returns the index of the file it went
   * to, or -1 when the disk is full (nothing written; the caller keeps the
   * batch). Other I/O errors throw BinlogIoError; a failed inline fsync
   * BinlogFsyncError. Under -f 0 with fast fsyncs (INLINE_SYNC_MAX_MS),
   * syncedSeq covers the batch when this returns.
   */
  write(parts: readonly Buffer[], bytes: number, seq: number): number {
    if (this.pos > HEADER_SIZE && this.pos + bytes > this.opts.fileSize) this.rotate()
    try {
      writeAll(this.opts.io, this.fd, parts, bytes, this.pos)
    } catch (err) {
      try {
        this.opts.io.ftruncateSync(this.fd, this.pos)
        this.filledTo = 0
      } catch {
        // The next write overwrites from `pos`; replay cuts a leftover as a torn tail.
      }
      if (isNoSpace(err)) {
        this.giveUpSpare()
        return -1
      }
      throw new BinlogIoError(this.path, 'write failed', { cause: err })
    }
    this.pos += bytes
    this.writtenSeq = seq
    if (this.spare !== null && !this.lowSpace && this.pos * 2 >= this.opts.fileSize) this.spare.fill()
    if (this.opts.fsyncNever) this.syncedSeq = seq
    else if (this.opts.fsyncMs === 0) {
      if (!this.syncing && this.lastSyncMs < this.opts.inlineSyncMaxMs) {
        this.fsyncSync(this.fd, this.path)
        this.syncedSeq = seq
      } else this.startSync()
    } else this.armTimer()
    return this.current
  }

  /** fsync now, synchronously (shutdown, tests). */
  syncNow(): void {
    if (this.closed) return
    this.fsyncSync(this.fd, this.path)
    this.syncedSeq = this.writtenSeq
  }

  /**
   * Removes a file that is no longer needed, durably unless -F, off the event
   * loop: unlinking a filled 10 MB file took 4 ms on average here (up to
   * 12 ms, ext4 freeing its blocks), which every client waited for. Files go
   * in the order given (oldest first), one at a time, and unless -F the
   * directory is fsynced after each before the next goes: a resurrected old
   * file could bring back jobs whose DELETE lived in a later one. A removal
   * not done when the writer closes leaves its file, which the next start
   * replays (its jobs are all deleted or moved later on) and removes.
   */
  remove(index: number): void {
    this.removals.push(index)
    this.nextRemoval()
  }

  /** Removals not finished: queued, or the one in flight (tests). */
  get removalsPending(): number {
    return this.removals.length + (this.removing ? 1 : 0)
  }

  private nextRemoval(): void {
    if (this.removing || this.closed || this.removals.length === 0) return
    const file = fileName(this.opts.dir, this.removals.shift()!)
    this.removing = true
    this.opts.io.unlink(file, (err) => {
      if (err !== null && err.code !== 'ENOENT') return this.removalFailed(new BinlogIoError(file, 'cannot remove', { cause: err }))
      if (this.opts.fsyncNever) return this.removed()
      this.fsyncs++
      const t0 = performance.now()
      this.opts.io.fsync(this.dirFd, (err) => {
        this.fsyncLatency.observeMs(performance.now() - t0)
        if (err !== null && !IGNORED_DIR_FSYNC.includes(err.code ?? '')) return this.removalFailed(new BinlogFsyncError(this.opts.dir, { cause: err }))
        this.removed()
      })
    })
  }

  private removed(): void {
    this.removing = false
    if (this.closed) this.closeDir()
    else this.nextRemoval()
  }

  private removalFailed(err: Error): void {
    this.removing = false
    const fatal = !this.closed
    if (fatal) this.abandon()
    this.closeDir()
    if (fatal) this.opts.onFatal(err)
  }

  /** The directory's fd, once neither the writer nor a removal needs it. */
  private closeDir(): void {
    if (this.dirOpen && !this.removing) {
      this.dirOpen = false
      this.opts.io.closeSync(this.dirFd)
    }
  }

  /** Final fsync (even under -F: a clean stop leaves a clean log), then closes everything. */
  close(): void {
    if (this.closed) return
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.fsyncSync(this.fd, this.path)
    this.syncedSeq = this.writtenSeq
    this.closed = true
    this.spare?.discard()
    if (this.syncing) this.retired.push(this.fd)
    else this.opts.io.closeSync(this.fd)
    this.closeDir()
  }

  /** Stops timers without syncing (after a fatal error). */
  abandon(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.closed = true
    this.spare?.discard()
  }

  /** binlog.<index>, from the spare if one is ready (its header is written over the placeholder), else a new appended file. */
  private createFile(index: number): { fd: number; filledTo: number } {
    const { io, fsyncNever } = this.opts
    const file = fileName(this.opts.dir, index)
    const spare = this.spare?.ready === true ? this.spare : null
    const tmp = spare?.path ?? newFileName(this.opts.dir, index)
    const fd = spare?.take() ?? io.openSync(tmp, 'wx', 0o600)
    try {
      const header = encodeHeader({
        version: spare !== null ? PREALLOCATED_VERSION : FORMAT_VERSION,
        index,
        nextId: this.opts.nextId(),
        flags: fsyncNever ? HeaderFlag.NO_FSYNC : spare !== null ? HeaderFlag.PREALLOCATED : 0,
      })
      writeAll(io, fd, [header], HEADER_SIZE, 0)
      if (!fsyncNever) this.fsyncSync(fd, tmp)
      io.linkSync(tmp, file)
    } catch (err) {
      io.closeSync(fd)
      try {
        io.unlinkSync(tmp)
      } catch {
        // Never created.
      }
      throw err
    }
    // From here the file is binlog.N (the fd is the same inode); the temporary name (.new, or the spare's) goes.
    io.unlinkSync(tmp)
    if (!fsyncNever) this.fsyncSync(this.dirFd, this.opts.dir)
    return { fd, filledTo: spare?.size ?? 0 }
  }

  /** Moves to the next file; on a full disk stays in this one (it just grows past fileSize). */
  private rotate(): void {
    const next = this.current + 1
    // The old file is complete and synced before the new one exists, so only
    // the newest file can ever end in a torn write.
    if (!this.opts.fsyncNever) {
      this.fsyncSync(this.fd, this.path)
      this.syncedSeq = this.writtenSeq
    }
    let created: { fd: number; filledTo: number }
    try {
      created = this.createFile(next)
    } catch (err) {
      if (!isNoSpace(err)) throw new BinlogIoError(fileName(this.opts.dir, next), 'cannot create', { cause: err })
      this.giveUpSpare()
      if (!this.createFailing) {
        this.opts.log.warn({ err, file: fileName(this.opts.dir, next) }, 'binlog: no space for a new file; appending to the current one')
      }
      this.createFailing = true
      return
    }
    this.createFailing = false
    if (this.syncing) this.retired.push(this.fd)
    else this.opts.io.closeSync(this.fd)
    this.fd = created.fd
    this.filledTo = created.filledTo
    this.current = next
    this.currentPath = fileName(this.opts.dir, next)
    this.pos = HEADER_SIZE
    if (!this.lowSpace) this.spare?.rearm()
  }

  /** The disk has room again (the binlog could write its space reserve): spares may be filled again. */
  spaceReturned(): void {
    this.lowSpace = false
    this.spare?.rearm()
  }

  /** A full disk: the spare's space goes first, and no new one takes what is left. */
  private giveUpSpare(): void {
    this.lowSpace = true
    this.spare?.discard()
  }

  /** fdatasync for a file (its records; a preallocated file's size never changes, so nothing else has to go), fsync for the directory. */
  private fsyncSync(fd: number, file: string): void {
    this.fsyncs++
    const t0 = performance.now()
    try {
      if (fd === this.dirFd) this.opts.io.fsyncSync(fd)
      else this.opts.io.fdatasyncSync(fd)
      const ms = performance.now() - t0
      if (fd !== this.dirFd) this.lastSyncMs = ms
      this.fsyncLatency.observeMs(ms)
    } catch (err) {
      if (fd === this.dirFd && IGNORED_DIR_FSYNC.includes((err as NodeJS.ErrnoException).code ?? '')) return
      throw new BinlogFsyncError(file, { cause: err })
    }
  }

  private armTimer(): void {
    if (this.timer !== null || this.syncing || this.closed) return
    const delay = Math.max(0, this.lastSyncStart + this.opts.fsyncMs - performance.now())
    this.timer = setTimeout(() => {
      this.timer = null
      this.startSync()
    }, delay)
    this.timer.unref()
  }

  private startSync(): void {
    if (this.syncing || this.closed || this.syncedSeq >= this.writtenSeq) return
    this.syncing = true
    const target = this.writtenSeq
    const file = this.path
    const t0 = (this.lastSyncStart = performance.now())
    this.fsyncs++
    this.opts.io.fdatasync(this.fd, (err) => {
      this.syncing = false
      this.lastSyncMs = performance.now() - t0
      this.fsyncLatency.observeMs(this.lastSyncMs)
      for (const fd of this.retired) this.opts.io.closeSync(fd)
      this.retired = []
      if (this.closed) return
      if (err !== null) {
        this.abandon()
        this.opts.onFatal(new BinlogFsyncError(file, { cause: err }))
        return
      }
      if (target > this.syncedSeq) this.syncedSeq = target
      this.opts.onSynced()
      // Under -f 0 a write while this ran left its batch for the next fsync.
      if (this.writtenSeq > this.syncedSeq) {
        if (this.opts.fsyncMs === 0) this.startSync()
        else this.armTimer()
      }
    })
  }
}

export const reservePath = (dir: string): string => path.join(dir, 'reserve')

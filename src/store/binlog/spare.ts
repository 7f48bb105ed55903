/**
 * The next binlog file, filled with zeros before it is needed: DIR/binlog.spare.
 *
 * Why: an fsync after a write into blocks that are already allocated and on
 * disk flushes the data and little else; after an append it must also
 * journal the new blocks and the file's new size. With `-f 0` that is the
 * cost of every reply (README, Performance). The reference preallocates its
 * binlog files for the same reason.
 *
 * Lifecycle: none -> filling (zeros in 1 MiB writes on the thread pool, then
 * an fsync) -> ready -> taken by the writer at a rotation, which writes the
 * real header over the placeholder, fsyncs, links the file to binlog.N and
 * removes this name (writer.ts, createFile). The first file of a run is
 * filled synchronously at start, before anything is served.
 *
 * Invariants:
 * - Never used under -F (the writer has no spare then): without fsyncs
 *   there is nothing to make cheaper.
 * - The file holds a header of ours (PREALLOCATED_VERSION, flag
 *   PREALLOCATED) from its first write on, so a `binlog.spare` is provably
 *   ours (so is one that holds nothing yet: a crash right after creating
 *   it): at start one is removed (a crash left it behind, or left this
 *   second name of a file already linked to binlog.N: unlinking, never
 *   truncating, keeps that file whole), and anything else by that name
 *   stops the start (ForeignFileError, check()).
 * - `ready` only once every zero is written and fsynced.
 * - At most one write or fsync in flight; discard() during one closes and
 *   removes the file when it completes.
 * - A failure (a full disk, most likely) never reaches a client: the spare
 *   is given up, the writer appends to a plain file as before, and tries
 *   again after its next rotation (rearm()).
 */
import path from 'node:path'
import type { Logger } from 'pino'
import { ForeignFileError } from '../errors.js'
import type { BinlogFs } from '../io.js'
import { isNoSpace } from './errors.js'
import { HEADER_SIZE, HeaderFlag, PREALLOCATED_VERSION, decodeHeader, encodeHeader } from './record.js'
import { holdsNothing, zerosToEnd } from './replay.js'

const CHUNK = 1 << 20
const ZEROS = Buffer.alloc(CHUNK)

export const sparePath = (dir: string): string => path.join(dir, 'binlog.spare')

/** The placeholder header: index 0 is never a real file's. */
const PLACEHOLDER = encodeHeader({ version: PREALLOCATED_VERSION, index: 0, nextId: 0, flags: HeaderFlag.PREALLOCATED })

const noProgress = (): NodeJS.ErrnoException => Object.assign(new Error('write made no progress'), { code: 'EIO' })

export class Spare {
  readonly path: string
  /** Bytes of the whole file, header included. */
  readonly size: number
  private readonly io: BinlogFs
  private readonly log: Logger
  private state: 'none' | 'filling' | 'ready' = 'none'
  private fd = -1
  private at = 0
  /** discard() came while a write or fsync was in flight: the callback removes the file. */
  private dropped = false
  /** A fill failed: no new one until the writer rotates or the disk has room again (rearm). */
  private blocked = false

  constructor(dir: string, size: number, io: BinlogFs, log: Logger) {
    this.path = sparePath(dir)
    this.size = Math.max(size, HEADER_SIZE)
    this.io = io
    this.log = log
  }

  /**
   * At start, before anything in DIR changes: ForeignFileError unless an
   * existing binlog.spare is ours: it starts with a preallocated header of
   * ours, or it holds nothing yet (a crash between creating it and writing
   * its header: empty, the start of a header, zeros).
   */
  static check(dir: string, io: BinlogFs): void {
    const file = sparePath(dir)
    const size = io.sizeOf(file)
    if (size < 0) return
    const head = Buffer.alloc(HEADER_SIZE)
    const fd = io.openSync(file, 'r')
    let h: ReturnType<typeof decodeHeader>
    let empty: boolean
    try {
      const n = io.readSync(fd, head, 0, HEADER_SIZE, 0)
      h = decodeHeader(head.subarray(0, n))
      empty = typeof h === 'string' && holdsNothing(head.subarray(0, n)) && zerosToEnd(io, fd, n, size)
    } finally {
      io.closeSync(fd)
    }
    if (empty || (typeof h !== 'string' && (h.flags & HeaderFlag.PREALLOCATED) !== 0)) return
    throw new ForeignFileError(
      file,
      `not a spare binlog file of tsbeanstalkd (${typeof h === 'string' ? h : 'its header is not a preallocated one'})`,
      'Move it out of the directory and start again.',
    )
  }

  get ready(): boolean {
    return this.state === 'ready'
  }

  /** Removes the spare a previous run left (check() proved it ours). */
  removeLeftover(): void {
    if (this.io.sizeOf(this.path) < 0) return
    this.log.info({ file: this.path }, 'binlog: removing the spare file a previous run left')
    this.io.unlinkSync(this.path)
  }

  /** Fills the spare now (at start: nothing is served yet). A failure leaves no spare. */
  fillSync(): void {
    if (this.state !== 'none' || this.blocked) return
    try {
      this.fd = this.create()
      for (let at = HEADER_SIZE; at < this.size; ) {
        const n = this.io.writeSync(this.fd, ZEROS, 0, Math.min(CHUNK, this.size - at), at)
        if (n <= 0) throw noProgress()
        at += n
      }
      this.io.fdatasyncSync(this.fd)
      this.state = 'ready'
    } catch (err) {
      this.failed(err as NodeJS.ErrnoException)
    }
  }

  /** Starts filling the spare on the thread pool, unless there is one (or one on its way). */
  fill(): void {
    if (this.state !== 'none' || this.blocked) return
    try {
      this.fd = this.create()
    } catch (err) {
      this.failed(err as NodeJS.ErrnoException)
      return
    }
    this.state = 'filling'
    this.at = HEADER_SIZE
    this.step()
  }

  /** The filled file, for the writer: it takes over the fd and the name (writer.ts, createFile). */
  take(): number {
    if (this.state !== 'ready') throw new Error('spare: take() before it is ready')
    const fd = this.fd
    this.fd = -1
    this.state = 'none'
    return fd
  }

  /** The writer moved to a new file, or the disk has room again: a failed fill may be tried again. */
  rearm(): void {
    this.blocked = false
  }

  /** Gives the spare up: a full disk wants its space, or the writer stops. */
  discard(): void {
    if (this.state === 'filling') this.dropped = true
    else if (this.state === 'ready') this.remove()
  }

  private create(): number {
    // 'wx': never opens an existing file, so never truncates one (see the invariants).
    const fd = this.io.openSync(this.path, 'wx', 0o600)
    try {
      if (this.io.writeSync(fd, PLACEHOLDER, 0, HEADER_SIZE, 0) !== HEADER_SIZE) throw noProgress()
    } catch (err) {
      this.io.closeSync(fd)
      try {
        this.io.unlinkSync(this.path)
      } catch {
        // Gone already; the write's error is the one to report.
      }
      throw err
    }
    return fd
  }

  private step(): void {
    if (this.dropped) return this.remove()
    if (this.at < this.size) {
      this.io.write(this.fd, ZEROS, 0, Math.min(CHUNK, this.size - this.at), this.at, (err, n) => {
        if (err !== null || n <= 0) return this.failed(err ?? noProgress())
        this.at += n
        this.step()
      })
      return
    }
    this.io.fdatasync(this.fd, (err) => {
      if (this.dropped) return this.remove()
      if (err !== null) return this.failed(err)
      this.state = 'ready'
    })
  }

  private failed(err: NodeJS.ErrnoException): void {
    this.blocked = true
    if (this.fd >= 0) this.remove()
    this.log.warn(
      { err, file: this.path },
      isNoSpace(err) ? 'binlog: no room for a spare file; the next file is appended to' : 'binlog: cannot fill a spare file; the next file is appended to',
    )
  }

  private remove(): void {
    this.dropped = false
    this.state = 'none'
    if (this.fd >= 0) this.io.closeSync(this.fd)
    this.fd = -1
    try {
      this.io.unlinkSync(this.path)
    } catch {
      // Gone already.
    }
  }
}

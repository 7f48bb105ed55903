/**
 * Emergency space: a file of zeros, DIR/reserve, that the binlog owns while
 * the disk has room and deletes the moment a write hits ENOSPC. The space it
 * frees lets the batch that failed go out, and then deletes, releases and
 * the compaction that shrinks the log, while new puts are refused
 * (OUT_OF_MEMORY) until the reserve can be written again. It plays the part
 * of the reference's per-put space reservation without preallocating every
 * file.
 *
 * Invariants:
 * - `present` is true only when the whole file is written (and fsynced unless
 *   -F), so its blocks are really allocated.
 * - A failed attempt leaves no partial file behind.
 * - An existing DIR/reserve is rewritten, kept or deleted only when it holds
 *   nothing but zeros, which is all the reserve ever holds: `check()` runs
 *   before a store opens, and anything else is a file tsbeanstalkd did not
 *   write: the start stops (ForeignFileError).
 */
import path from 'node:path'
import { BinlogIoError, ForeignFileError, isNoSpace } from './errors.js'
import type { BinlogFs } from './io.js'

const CHUNK = 1 << 20
const ZEROS = Buffer.alloc(CHUNK)

export class SpaceReserve {
  readonly path: string
  readonly bytes: number
  present = false
  private readonly io: BinlogFs
  private readonly sync: boolean

  constructor(path: string, bytes: number, io: BinlogFs, sync: boolean) {
    this.path = path
    this.bytes = bytes
    this.io = io
    this.sync = sync
  }

  /** Makes sure the reserve exists; false if the disk has no room for it. */
  ensure(): boolean {
    if (this.present) return true
    // An existing file was proven ours (all zeros) by check() at open; after release() there is none.
    const size = this.io.sizeOf(this.path)
    if (this.bytes === 0 || size === this.bytes) return (this.present = true)
    const zeros = Buffer.alloc(Math.min(CHUNK, this.bytes))
    let fd = -1
    try {
      fd = this.io.openSync(this.path, 'w', 0o600)
      for (let at = 0; at < this.bytes; ) {
        const n = Math.min(zeros.length, this.bytes - at)
        at += this.io.writeSync(fd, zeros, 0, n, at)
      }
      if (this.sync) this.io.fsyncSync(fd)
      this.io.closeSync(fd)
      return (this.present = true)
    } catch (err) {
      if (fd >= 0) this.io.closeSync(fd)
      try {
        this.io.unlinkSync(this.path)
      } catch {
        // Nothing there.
      }
      if (isNoSpace(err)) return false
      throw new BinlogIoError(this.path, 'cannot write the space reserve', { cause: err })
    }
  }

  /** Before anything in DIR changes at start: ForeignFileError unless an existing reserve is all zeros. */
  static check(file: string, io: BinlogFs): void {
    const size = io.sizeOf(file)
    if (size > 0) new SpaceReserve(file, 0, io, false).checkOurs(size)
  }

  /** ForeignFileError unless the existing file is all zeros. */
  private checkOurs(size: number): void {
    const fd = this.io.openSync(this.path, 'r')
    try {
      const chunk = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(size, 1)))
      for (let at = 0; at < size; ) {
        const n = this.io.readSync(fd, chunk, 0, Math.min(chunk.length, size - at), at)
        if (n <= 0) break
        if (chunk.subarray(0, n).equals(ZEROS.subarray(0, n))) {
          at += n
          continue
        }
        for (let i = 0; i < n; i++) {
          if (chunk[i] !== 0) {
            throw new ForeignFileError(
              this.path,
              `holds data (a non-zero byte at offset ${at + i}); tsbeanstalkd's space reserve (${path.basename(this.path)}) is all zeros`,
              'Move the file out of the directory and start again.',
            )
          }
        }
        at += n
      }
    } finally {
      this.io.closeSync(fd)
    }
  }

  /** Frees the reserve's space; false if there was none to free. */
  release(): boolean {
    if (!this.present) return false
    this.present = false
    try {
      this.io.unlinkSync(this.path)
    } catch {
      // Already gone; nothing freed, but nothing to do either.
    }
    return true
  }
}

/**
 * The file-system calls the binlog makes, behind one small interface, so
 * tests can inject ENOSPC, short writes or slow and counted fsyncs without
 * mocking `node:fs` itself. `nodeFs` is the real thing.
 */
import fs from 'node:fs'

export interface BinlogFs {
  openSync(path: string, flags: string, mode?: number): number
  closeSync(fd: number): void
  /** One positional write of several buffers (pwritev); may write fewer bytes than given. */
  writevSync(fd: number, buffers: readonly Buffer[], position: number): number
  writeSync(fd: number, buffer: Buffer, offset: number, length: number, position: number): number
  /** Asynchronous positional write on the libuv thread pool (the spare's zeros). */
  write(fd: number, buffer: Buffer, offset: number, length: number, position: number, cb: (err: NodeJS.ErrnoException | null, written: number) => void): void
  ftruncateSync(fd: number, len: number): void
  fsyncSync(fd: number): void
  /** fdatasync: a file's data and what is needed to read it back (its size), not its times. */
  fdatasyncSync(fd: number): void
  /** Asynchronous fsync on the libuv thread pool: the event loop keeps serving. */
  fsync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void
  /** Asynchronous fdatasync on the libuv thread pool. */
  fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void
  unlinkSync(path: string): void
  /** Asynchronous unlink on the libuv thread pool. */
  unlink(path: string, cb: (err: NodeJS.ErrnoException | null) => void): void
  readdirSync(path: string): string[]
  readFileSync(path: string): Buffer
  readSync(fd: number, buffer: Buffer, offset: number, length: number, position: number): number
  /** A second name for a file; fails (EEXIST) if the name is taken, never replaces. */
  linkSync(existing: string, newPath: string): void
  /** Size of a file, or -1 if it does not exist. */
  sizeOf(path: string): number
  mkdirSync(path: string): void
  writeFileSync(path: string, data: string): void
}

export const nodeFs: BinlogFs = {
  openSync: (path, flags, mode) => fs.openSync(path, flags, mode),
  closeSync: (fd) => fs.closeSync(fd),
  writevSync: (fd, buffers, position) => fs.writevSync(fd, buffers, position),
  writeSync: (fd, buffer, offset, length, position) => fs.writeSync(fd, buffer, offset, length, position),
  write: (fd, buffer, offset, length, position, cb) => fs.write(fd, buffer, offset, length, position, cb),
  ftruncateSync: (fd, len) => fs.ftruncateSync(fd, len),
  fsyncSync: (fd) => fs.fsyncSync(fd),
  fsync: (fd, cb) => fs.fsync(fd, cb),
  fdatasyncSync: (fd) => fs.fdatasyncSync(fd),
  fdatasync: (fd, cb) => fs.fdatasync(fd, cb),
  unlinkSync: (path) => fs.unlinkSync(path),
  unlink: (path, cb) => fs.unlink(path, cb),
  readdirSync: (path) => fs.readdirSync(path),
  readFileSync: (path) => fs.readFileSync(path),
  readSync: (fd, buffer, offset, length, position) => fs.readSync(fd, buffer, offset, length, position),
  linkSync: (existing, newPath) => fs.linkSync(existing, newPath),
  sizeOf: (path) => {
    const st = fs.statSync(path, { throwIfNoEntry: false })
    return st === undefined ? -1 : st.size
  },
  mkdirSync: (path) => void fs.mkdirSync(path, { recursive: true }),
  writeFileSync: (path, data) => fs.writeFileSync(path, data),
}

/** Writes all of `buffers` at `position`, continuing after short writes. */
export function writeAll(io: BinlogFs, fd: number, buffers: readonly Buffer[], total: number, position: number): void {
  let done = io.writevSync(fd, buffers, position)
  while (done < total) {
    // Short write (libuv returns the partial count and reports the error on the next call).
    const rest: Buffer[] = []
    let skip = done
    for (const b of buffers) {
      if (skip >= b.length) {
        skip -= b.length
        continue
      }
      rest.push(skip > 0 ? b.subarray(skip) : b)
      skip = 0
    }
    const n = io.writevSync(fd, rest, position + done)
    if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' })
    done += n
  }
}

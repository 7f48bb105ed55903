/**
 * DIR/lock, the name the reference fcntl-locks (walg.c waldirlock: open
 * O_WRONLY|O_CREAT, then F_SETLK F_WRLCK over the whole file, exit 10 if
 * either fails). tsbeanstalkd makes it a directory: the reference's open
 * then fails (EISDIR), so a beanstalkd started on a directory tsbeanstalkd
 * uses, or used, exits 10 and touches nothing. The holder file of our own
 * lock lives inside it (lock.ts).
 *
 * What DIR/lock may be when a start finds it, and what happens:
 * - missing: created (a directory).
 * - a directory: ours.
 * - a regular file holding what an older tsbeanstalkd wrote there (pid,
 *   host, start time): ours; replaced by the directory.
 * - any other regular file (the reference leaves an empty one): if a process
 *   holds an fcntl lock on it, a beanstalkd runs on DIR: BinlogLockedError
 *   (exit 10). Otherwise it is the reference's: the import moves it, with
 *   the reference's binlog files, into DIR/beanstalkd-binlog-<time>/
 *   (beanstalkd/import.ts); reaching ensureBlocker with it still there is a
 *   ForeignFileError.
 * - anything else (a symlink, a FIFO): ForeignFileError.
 *
 * Invariant: no file here is written, truncated or removed unless its
 * content proves an older tsbeanstalkd wrote it.
 */
import fs from 'node:fs'
import path from 'node:path'
import { BinlogIoError, BinlogLockedError, ForeignFileError } from './errors.js'
import { fcntlLocked } from './fcntl-probe.js'

export const BLOCKER = 'lock'
export const HOLDER_FILE = path.join(BLOCKER, 'holder')

/** What an older tsbeanstalkd wrote into DIR/lock: pid, host name, and (later versions) the start time. */
const LEGACY_HOLDER = /^[1-9]\d*\n[^\n]*\n(?:[^\n]*\n)?$/
/** Bytes read to tell a legacy holder file; a longer file is not one. */
const LEGACY_MAX = 512

export type BlockerState = 'missing' | 'ours' | 'legacy' | 'file' | 'other'

export function blockerState(dir: string): BlockerState {
  const file = path.join(dir, BLOCKER)
  const st = fs.lstatSync(file, { throwIfNoEntry: false })
  if (st === undefined) return 'missing'
  if (st.isDirectory()) return 'ours'
  if (!st.isFile()) return 'other'
  if (st.size === 0 || st.size > LEGACY_MAX) return 'file'
  return LEGACY_HOLDER.test(fs.readFileSync(file, 'latin1')) ? 'legacy' : 'file'
}

/** BinlogLockedError if a beanstalkd (any fcntl holder) has DIR/lock now. */
export function refuseIfReferenceRuns(dir: string): void {
  const file = path.join(dir, BLOCKER)
  const st = fs.lstatSync(file, { throwIfNoEntry: false })
  if (st?.isFile() === true && fcntlLocked(file)) {
    throw new BinlogLockedError(
      dir,
      null,
      `a process holds an fcntl lock on ${file}: a beanstalkd is running on this directory; stop it first ` +
        `(tsbeanstalkd then imports its binlog)`,
    )
  }
}

/** Makes DIR/lock the blocking directory (see the header); true when this call created it. */
export function ensureBlocker(dir: string): boolean {
  const file = path.join(dir, BLOCKER)
  refuseIfReferenceRuns(dir)
  const state = blockerState(dir)
  switch (state) {
    case 'ours':
      return false
    case 'legacy':
      try {
        fs.unlinkSync(file)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new BinlogIoError(file, 'cannot replace the old lock file', { cause: err })
      }
      break
    case 'file':
      throw new ForeignFileError(
        file,
        'a regular file where tsbeanstalkd keeps its lock directory (beanstalkd leaves an empty one)',
        'If a beanstalkd used this directory, start tsbeanstalkd on it again to import its binlog; otherwise move the file away.',
      )
    case 'other':
      throw new ForeignFileError(file, 'neither a file nor a directory', 'Move it away and start again.')
    case 'missing':
      break
  }
  try {
    fs.mkdirSync(file, { mode: 0o700 })
    return true
  } catch (err) {
    // Another starter made it meanwhile.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || blockerState(dir) !== 'ours') {
      throw new BinlogIoError(file, 'cannot create the lock directory', { cause: err })
    }
    return false
  }
}

/**
 * One server per binlog directory.
 *
 * Node has neither flock nor fcntl locks, so on Linux the lock is a thing the
 * kernel releases when the process dies, as it releases the reference's
 * fcntl lock: a listening Unix socket in the abstract namespace, named after
 * the directory's device and inode numbers (every path to the directory, via
 * symlinks or bind mounts, gives the same name). bind() on a name in use
 * fails with EADDRINUSE atomically, and a crash or kill -9 leaves nothing
 * stale behind. This is the one use of `node:net` outside server/: it is a
 * mutex, not networking.
 *
 * Elsewhere (no abstract namespace), DIR/lock/holder is created exclusively and
 * holds the owner's pid; a lock whose pid is gone is stale and is replaced
 * (rename it aside, check that what moved is still the stale content, retry
 * the exclusive create). Weaker than the kernel lock: a reused pid looks
 * alive, and pid namespaces hide live holders.
 *
 * Either way DIR/lock/holder names the holder, for the error message and
 * operators.
 *
 * DIR/lock itself is a directory tsbeanstalkd creates (blocker.ts): the
 * reference opens DIR/lock as a file to fcntl-lock it, and on a directory
 * that open fails, so a beanstalkd started on a tsbeanstalkd directory exits
 * 10 before it reads or writes anything, whether tsbeanstalkd runs or not.
 *
 * Limitation: abstract names are per network namespace, so two containers
 * with separate network namespaces sharing one directory are not kept apart.
 */
import net from 'node:net'
import os from 'node:os'
import fs from 'node:fs'
import path from 'node:path'
import { ensureBlocker, HOLDER_FILE } from './blocker.js'
import { BinlogIoError, BinlogLockedError } from './errors.js'

export class DirLock {
  readonly dir: string
  private server: net.Server | null
  private readonly file: string
  private released = false
  /** This acquire made DIR/lock (it did not exist). */
  private createdBlocker = false

  private constructor(dir: string, server: net.Server | null) {
    this.dir = dir
    this.server = server
    this.file = path.join(dir, HOLDER_FILE)
  }

  /**
   * Takes the lock on `dir` (which must exist) or throws BinlogLockedError
   * (a beanstalkd holding DIR/lock included); ForeignFileError when DIR/lock
   * is a file tsbeanstalkd did not write (blocker.ts).
   */
  static acquire(dir: string, opts: { readonly writeNothing?: boolean } = {}): DirLock {
    // writeNothing: only keep other tsbeanstalkd processes out, changing nothing in DIR (the
    // kernel lock only; export reads a directory it must leave untouched, and the import runs
    // before DIR/lock is ours). Without the kernel lock there is nothing to take.
    const quiet = opts.writeNothing === true
    const created = !quiet && ensureBlocker(dir)
    const lockFile = path.join(dir, HOLDER_FILE)
    if (process.platform === 'linux') {
      const st = fs.statSync(dir, { bigint: true })
      const server = net.createServer()
      // The bind happens synchronously inside listen(); its error event comes a tick later.
      server.on('error', () => undefined)
      server.on('connection', (s) => s.destroy())
      server.listen({ path: `\0tsbeanstalkd-binlog:${st.dev}:${st.ino}` })
      if (!server.listening) {
        server.close()
        const holder = readHolder(lockFile)
        // Node reports the bind error only a tick later; if no live holder is on
        // record, say what else can make the bind fail.
        const hint =
          holder === null || !alive(holder)
            ? 'no live holder is named in DIR/lock; if no other server uses this directory, Unix sockets may be forbidden here'
            : null
        throw new BinlogLockedError(dir, holder, hint)
      }
      server.unref()
      const lock = new DirLock(dir, server)
      lock.createdBlocker = created
      if (quiet) return lock
      try {
        fs.writeFileSync(lockFile, holderText())
      } catch (err) {
        lock.release()
        throw new BinlogIoError(lockFile, 'cannot write the lock file', { cause: err })
      }
      return lock
    }
    if (!quiet) acquirePidFile(dir, lockFile)
    const lock = new DirLock(dir, null)
    lock.createdBlocker = created
    return lock
  }

  /**
   * `failedOpen`: the store did not open (a foreign file, damage): a lock
   * directory this acquire created goes too, so DIR is left as it was.
   */
  release(opts: { readonly failedOpen?: boolean } = {}): void {
    if (this.released) return
    this.released = true
    try {
      if (readHolder(this.file) === process.pid) fs.unlinkSync(this.file)
      if (opts.failedOpen === true && this.createdBlocker) fs.rmdirSync(path.dirname(this.file))
    } catch {
      // Informational file only; the lock itself is the socket below.
    }
    this.server?.close()
    this.server = null
  }
}

function holderText(): string {
  return `${process.pid}\n${os.hostname()}\n${new Date().toISOString()}\n`
}

function readHolder(file: string): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8'), 10)
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null
  } catch {
    return null
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The portable fallback: exclusive create, stale-pid takeover. */
function acquirePidFile(dir: string, lockFile: string): void {
  // Written aside and linked into place, so DIR/lock is never seen half-written.
  const tmp = `${lockFile}.${process.pid}.tmp`
  fs.writeFileSync(tmp, holderText())
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      if (tryLink(tmp, lockFile)) return
      takeOverIfStale(dir, lockFile)
    }
  } finally {
    fs.rmSync(tmp, { force: true })
  }
  throw new BinlogLockedError(dir, readHolder(lockFile))
}

function tryLink(from: string, to: string): boolean {
  try {
    fs.linkSync(from, to)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw new BinlogIoError(to, 'cannot create the lock file', { cause: err })
  }
}

/** Removes DIR/lock if its holder is dead; throws BinlogLockedError if it lives (this process included). */
function takeOverIfStale(dir: string, lockFile: string): void {
  let seen: string
  try {
    seen = fs.readFileSync(lockFile, 'utf8')
  } catch {
    return // removed meanwhile: try again
  }
  const pid = Number.parseInt(seen, 10)
  if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) throw new BinlogLockedError(dir, pid)
  // Stale. Move it aside; if what moved is not what we judged stale, another
  // starter replaced it meanwhile: put theirs back and let the loop see them.
  const aside = `${lockFile}.stale.${process.pid}`
  try {
    fs.renameSync(lockFile, aside)
  } catch {
    return
  }
  if (fs.readFileSync(aside, 'utf8') !== seen) {
    try {
      fs.linkSync(aside, lockFile)
    } catch {
      // A third starter holds it now; the loop will see them.
    }
  }
  fs.rmSync(aside, { force: true })
}

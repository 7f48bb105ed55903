/**
 * Is a POSIX (fcntl) lock held on a file by another process? Node has no
 * fcntl, but SQLite's unix VFS takes fcntl byte-range locks, and the
 * reference's lock (F_SETLK, F_WRLCK over the whole file, DIR/lock) conflicts
 * with every one of them. So: open the file read-only with SQLite and ask it
 * for a read; SQLITE_BUSY means the lock is taken.
 *
 * Invariants:
 * - Nothing is ever written: the file is opened with SQLITE_OPEN_READONLY,
 *   and only a read is asked for (SQLite takes its shared lock before it
 *   looks at the content, so a file that is not a database answers NOTADB
 *   after the lock was granted: not locked).
 * - The lock is released before this returns (the connection is closed).
 *   Closing it drops every POSIX lock this process has on the file, so never
 *   probe a file on which this process itself relies on a POSIX lock.
 */
import Database from 'better-sqlite3'
import { sqliteCode } from './errors.js'

export function fcntlLocked(file: string): boolean {
  let db: Database.Database
  try {
    db = new Database(file, { readonly: true, fileMustExist: true, timeout: 0 })
  } catch {
    return false // unreadable or gone: nobody's lock we can see
  }
  try {
    db.pragma('schema_version')
    return false
  } catch (err) {
    return /^SQLITE_BUSY/.test(sqliteCode(err))
  } finally {
    db.close()
  }
}

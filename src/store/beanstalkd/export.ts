/**
 * `tsbeanstalkd export-beanstalkd DIR OUT`: the way back. Reads a stopped
 * server's -b DIR (either engine) without changing it and writes OUT as a
 * version 7 beanstalkd binlog directory (writer.ts).
 */
import fs from 'node:fs'
import path from 'node:path'
import { SQLITE_FILE, holds, layoutOf } from '../layout.js'
import { DirLock } from '../lock.js'
import { readBinlog, readSqliteReadOnly } from '../snapshot.js'
import { StoreMismatchError } from '../errors.js'
import { IMPORT_STAGING } from './import.js'
import { writeReferenceDir, type ExportResult } from './writer.js'

export function exportDir(dir: string, out: string, fileSize: number): ExportResult {
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new StoreMismatchError(dir, 'no such directory')
  // Keeps a server out while reading (exit 10 if one runs), writing nothing into DIR.
  const lock = DirLock.acquire(dir, { writeNothing: true })
  try {
    const l = layoutOf(dir)
    if (l.converting || fs.existsSync(path.join(dir, IMPORT_STAGING))) {
      throw new StoreMismatchError(dir, 'a conversion or import was interrupted; start tsbeanstalkd on it once (or finish the convert) first')
    }
    const binlog = holds(l, 'binlog')
    if (binlog === holds(l, 'sqlite')) throw new StoreMismatchError(dir, binlog ? 'holds both a binlog and a SQLite store' : 'holds no tsbeanstalkd store')
    const snap = binlog ? readBinlog(dir) : readSqliteReadOnly(path.join(dir, SQLITE_FILE))
    return writeReferenceDir(out, snap, fileSize)
  } finally {
    lock.release()
  }
}


/**
 * `tsbeanstalkd convert --from binlog --to sqlite DIR` (and back): rewrites a
 * stopped server's directory in the other engine's format, in place, losing
 * no job: every job with all its fields (state as last recorded, reserved
 * included; priority, delay, TTR, times, bury order, counters, body) and the
 * id high-water mark.
 *
 * Crash safety: the new files are written and fsynced in DIR/convert.tmp,
 * read back and compared with what was read, and only then marked COMPLETE.
 * From there the conversion only moves files (the old engine's into
 * DIR/pre-convert-<engine>-<time>/, which is kept, then the new ones into
 * DIR), so running the same command again after a crash finishes it, and a
 * server refuses to start while convert.tmp exists (layout.ts).
 */
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import { DirLock } from './lock.js'
import { StoreMismatchError } from './errors.js'
import { CONVERT_DIR, SQLITE_FILE, holds, isStoreFileName, layoutOf } from './layout.js'
import { difference, readBinlog, readSqlite, writeBinlog, writeSqlite } from './snapshot.js'
import { commit, discard, finish, readPlan, type Plan } from './staging.js'
import type { Engine } from './store.js'

export interface ConvertResult {
  readonly jobs: number
  readonly nextId: number
  /** Where the old engine's files were moved. */
  readonly backup: string
}

interface Marker extends Plan {
  readonly from: Engine
  readonly to: Engine
  readonly jobs: number
  readonly nextId: number
}

// --- the conversion -------------------------------------------------------------------

/** Converts DIR in place (see the header). The directory lock keeps servers out meanwhile. */
export function convertDir(dir: string, from: Engine, to: Engine, fileSize: number, log: Logger): ConvertResult {
  if (from === to) throw new StoreMismatchError(dir, `--from and --to are both ${from}`)
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new StoreMismatchError(dir, 'no such directory')
  const lock = DirLock.acquire(dir)
  try {
    const tmp = path.join(dir, CONVERT_DIR)
    const pending = readPlan<Marker>(tmp)
    if (pending !== null) {
      // A marker of an older version names no files: the old engine's are the ones to move.
      const l = layoutOf(dir)
      const m: Marker = { ...pending, moveOut: pending.moveOut ?? (pending.from === 'binlog' ? l.binlog : l.sqlite) }
      if (m.from !== from || m.to !== to) {
        throw new StoreMismatchError(dir, `an interrupted conversion from ${m.from} to ${m.to} waits to be finished; run that one again`)
      }
      log.warn({ dir, from, to }, 'convert: finishing a conversion that was interrupted after its new files were complete')
      return done(dir, m)
    }
    // An attempt that died before completing: start over.
    discard(tmp, isStoreFileName)

    const l = layoutOf(dir)
    if (holds(l, to)) throw new StoreMismatchError(dir, `already holds a ${to} store; nothing to convert`)
    if (!holds(l, from)) throw new StoreMismatchError(dir, `holds no ${from} store to convert`)
    const snap = from === 'binlog' ? readBinlog(dir, log) : readSqlite(path.join(dir, SQLITE_FILE))

    fs.mkdirSync(tmp)
    if (to === 'binlog') writeBinlog(tmp, snap, fileSize)
    else writeSqlite(path.join(tmp, SQLITE_FILE), snap)
    const back = to === 'binlog' ? readBinlog(tmp) : readSqlite(path.join(tmp, SQLITE_FILE))
    const diff = difference(snap, back)
    if (diff !== null) throw new Error(`convert: the new ${to} store does not read back as written (${diff}); ${dir} is unchanged`)

    const stamp = new Date().toISOString().replace(/[:.]/g, '-')
    const moveOut = from === 'binlog' ? l.binlog : l.sqlite
    const m: Marker = { from, to, jobs: snap.jobs.length, nextId: snap.nextId, backup: `pre-convert-${from}-${stamp}`, moveOut }
    commit(tmp, m)
    return done(dir, m)
  } finally {
    lock.release()
  }
}

function done(dir: string, m: Marker): ConvertResult {
  finish(dir, path.join(dir, CONVERT_DIR), m)
  return { jobs: m.jobs, nextId: m.nextId, backup: path.join(dir, m.backup) }
}

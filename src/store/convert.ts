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
import { nodeFs, writeAll } from './io.js'
import { FORMAT_VERSION, HEADER_SIZE, RecState, encodeFull, encodeHeader } from './binlog/record.js'
import { fileName, replay } from './binlog/replay.js'
import { StoreIoError, StoreMismatchError } from './errors.js'
import { CONVERT_DIR, SQLITE_FILE, holds, layoutOf } from './layout.js'
import { metaValue, openDb, readJobs, writeJobs, type StoredJob } from './sqlite/schema.js'
import type { Engine } from './store.js'
import { fsyncDir, fsyncFile } from './sync.js'

/** Everything a store holds, engine-neutral. Jobs in id order. */
export interface Snapshot {
  readonly nextId: number
  readonly jobs: StoredJob[]
}

export interface ConvertResult {
  readonly jobs: number
  readonly nextId: number
  /** Where the old engine's files were moved. */
  readonly backup: string
}

interface Marker {
  readonly from: Engine
  readonly to: Engine
  readonly jobs: number
  readonly nextId: number
  readonly backup: string
}

const MARKER = 'COMPLETE'
const STATE_OF: Record<number, StoredJob['state']> = {
  [RecState.READY]: 'ready',
  [RecState.RESERVED]: 'reserved',
  [RecState.BURIED]: 'buried',
  [RecState.DELAYED]: 'delayed',
}
const REC_STATE = { ready: RecState.READY, reserved: RecState.RESERVED, buried: RecState.BURIED, delayed: RecState.DELAYED } as const

// --- the binlog side -------------------------------------------------------------

/** Reads a binlog directory without changing it (a torn tail is left out, as a start would cut it). */
export function readBinlog(dir: string, log?: Logger): Snapshot {
  const r = replay(dir, nodeFs)
  for (const f of r.files) {
    if (f.cut !== null) log?.warn({ file: f.path, offset: f.cut.offset, detail: f.cut.detail }, 'convert: leaving out a torn tail (never acknowledged)')
  }
  const jobs: StoredJob[] = [...r.jobs.values()].map((j) => {
    const state = STATE_OF[j.state]!
    return {
      id: j.id,
      tube: j.tube,
      state,
      pri: j.pri,
      delayMs: j.delayMs,
      ttrMs: j.ttrMs,
      createdAtWall: j.createdAtWall,
      readyAtWall: state === 'delayed' ? j.readyAtWall : 0,
      buryKey: state === 'buried' ? j.buryKey : 0,
      reserves: j.reserves,
      timeouts: j.timeouts,
      releases: j.releases,
      buries: j.buries,
      kicks: j.kicks,
      body: j.body,
    }
  })
  jobs.sort((a, b) => a.id - b.id)
  return { nextId: r.nextId, jobs }
}

/** Writes `snap` as binlog.1, binlog.2, ... (a new file past `fileSize` bytes), each fsynced. */
export function writeBinlog(dir: string, snap: Snapshot, fileSize: number): void {
  let index = 0
  let fd = -1
  let pos = 0
  const next = (): void => {
    if (fd >= 0) {
      fs.fsyncSync(fd)
      fs.closeSync(fd)
    }
    index++
    fd = fs.openSync(fileName(dir, index), 'wx', 0o600)
    const header = encodeHeader({ version: FORMAT_VERSION, index, nextId: snap.nextId, flags: 0 })
    writeAll(nodeFs, fd, [header], HEADER_SIZE, 0)
    pos = HEADER_SIZE
  }
  next()
  try {
    for (const j of snap.jobs) {
      const [head, body] = encodeFull(
        {
          id: j.id,
          state: REC_STATE[j.state],
          pri: j.pri,
          reserves: j.reserves,
          timeouts: j.timeouts,
          releases: j.releases,
          buries: j.buries,
          kicks: j.kicks,
          delayMs: j.delayMs,
          ttrMs: j.ttrMs,
          createdAtWall: j.createdAtWall,
          readyAtWall: j.readyAtWall,
          buryKey: j.buryKey,
        },
        j.tube,
        j.body,
      )
      const n = head.length + body.length
      if (pos > HEADER_SIZE && pos + n > fileSize) next()
      writeAll(nodeFs, fd, [head, body], n, pos)
      pos += n
    }
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fsyncDir(dir)
}

// --- the SQLite side ----------------------------------------------------------------

export function readSqlite(file: string): Snapshot {
  const { db } = openDb(file, { timeoutMs: 2000, check: true })
  try {
    const jobs = readJobs(db, file)
    const maxId = jobs.length === 0 ? 0 : jobs[jobs.length - 1]!.id
    const nextId = Math.max(metaValue(db, 'next_id') ?? 1, maxId + 1)
    // Leave one self-contained file behind: everything in the WAL goes into the database.
    db.pragma('synchronous = FULL')
    db.pragma('wal_checkpoint(TRUNCATE)')
    return { nextId, jobs }
  } finally {
    db.close()
  }
}

/** Creates `file` holding `snap`, fsynced, with no WAL left beside it. */
export function writeSqlite(file: string, snap: Snapshot): void {
  const { db, created } = openDb(file, { timeoutMs: 2000, check: false })
  try {
    if (!created) throw new StoreIoError(file, 'a conversion target must be a new file')
    db.pragma('synchronous = FULL')
    writeJobs(db, snap.jobs, snap.nextId)
    db.pragma('wal_checkpoint(TRUNCATE)')
  } finally {
    db.close()
  }
  fsyncFile(file)
  fsyncDir(path.dirname(file))
}

// --- the conversion -------------------------------------------------------------------

/** Converts DIR in place (see the header). The directory lock keeps servers out meanwhile. */
export function convertDir(dir: string, from: Engine, to: Engine, fileSize: number, log: Logger): ConvertResult {
  if (from === to) throw new StoreMismatchError(dir, `--from and --to are both ${from}`)
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new StoreMismatchError(dir, 'no such directory')
  const lock = DirLock.acquire(dir)
  try {
    const tmp = path.join(dir, CONVERT_DIR)
    const markerFile = path.join(tmp, MARKER)
    if (fs.existsSync(markerFile)) {
      const m = JSON.parse(fs.readFileSync(markerFile, 'utf8')) as Marker
      if (m.from !== from || m.to !== to) {
        throw new StoreMismatchError(dir, `an interrupted conversion from ${m.from} to ${m.to} waits to be finished; run that one again`)
      }
      log.warn({ dir, from, to }, 'convert: finishing a conversion that was interrupted after its new files were complete')
      return finish(dir, m)
    }
    fs.rmSync(tmp, { recursive: true, force: true }) // an attempt that died before completing: start over

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
    const m: Marker = { from, to, jobs: snap.jobs.length, nextId: snap.nextId, backup: `pre-convert-${from}-${stamp}` }
    fs.writeFileSync(markerFile, JSON.stringify(m))
    fsyncFile(markerFile)
    fsyncDir(tmp)
    return finish(dir, m)
  } finally {
    lock.release()
  }
}

/** The moves after COMPLETE; every step can be repeated. */
function finish(dir: string, m: Marker): ConvertResult {
  const tmp = path.join(dir, CONVERT_DIR)
  const backup = path.join(dir, m.backup)
  const l = layoutOf(dir)
  const old = m.from === 'binlog' ? l.binlog : l.sqlite
  if (old.length > 0) {
    fs.mkdirSync(backup, { recursive: true })
    for (const name of old) fs.renameSync(path.join(dir, name), path.join(backup, name))
    fsyncDir(backup)
  }
  // The old engine's space reserve; the new one writes its own, of its own size, at start.
  fs.rmSync(path.join(dir, 'reserve'), { force: true })
  fsyncDir(dir)
  for (const name of fs.readdirSync(tmp)) if (name !== MARKER) fs.renameSync(path.join(tmp, name), path.join(dir, name))
  fsyncDir(dir)
  fs.rmSync(tmp, { recursive: true, force: true })
  fsyncDir(dir)
  return { jobs: m.jobs, nextId: m.nextId, backup }
}

/** null when the two hold the same jobs, field for field, and the same next id; else what differs. */
export function difference(a: Snapshot, b: Snapshot): string | null {
  if (a.nextId !== b.nextId) return `next id ${a.nextId} vs ${b.nextId}`
  if (a.jobs.length !== b.jobs.length) return `${a.jobs.length} jobs vs ${b.jobs.length}`
  for (let i = 0; i < a.jobs.length; i++) {
    const x = a.jobs[i]!
    const y = b.jobs[i]!
    for (const k of Object.keys(x) as (keyof StoredJob)[]) {
      const same = k === 'body' ? x.body.equals(y.body) : x[k] === y[k]
      if (!same) return `job ${x.id}: ${k}`
    }
  }
  return null
}

/**
 * A whole store as one engine-neutral value (every job with all its fields,
 * and the id high-water mark), read from or written to either engine's
 * files. What convert, import-beanstalkd and export-beanstalkd move between
 * formats. readBinlog and readSqliteReadOnly never change what they read
 * (readSqlite, for convert, folds the WAL into the database); writers create
 * new files only (a writer's target is a fresh staging directory).
 */
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import { nodeFs, writeAll } from './io.js'
import { FORMAT_VERSION, HEADER_SIZE, RecState, encodeFull, encodeHeader, type JobFields } from './binlog/record.js'
import { fileName, replaySync } from './binlog/replay.js'
import { StoreIoError, StoreTagsError } from './errors.js'
import { noPolicy } from './store.js'
import Database from 'better-sqlite3'
import { metaValue, openDb, readJobs, storeError, writeJobs } from './sqlite/schema.js'
import type { StoredJob } from './store.js'
import { fsyncDir, fsyncFile } from './sync.js'

/** Everything a store holds, engine-neutral. Jobs in id order. */
export interface Snapshot {
  readonly nextId: number
  readonly jobs: StoredJob[]
}

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
  const jobs = new Map<number, StoredJob>()
  const policies = new Set<string>()
  const r = replaySync(dir, nodeFs, {
    beginFile: () => undefined,
    full: (f, tube, buf, start, end) => {
      jobs.set(f.id, { ...storedFields(f), tube, body: Buffer.from(buf.subarray(start, end)) })
    },
    update: (f) => {
      const j = jobs.get(f.id)
      if (j === undefined) return false
      Object.assign(j, storedFields(f))
      return true
    },
    delete: (id) => jobs.delete(id),
    // Tags are not carried over: refuse rather than drop them.
    tags: () => {
      throw new StoreTagsError(dir)
    },
    tomb: () => {
      throw new StoreTagsError(dir)
    },
    // A policy cleared later (all zeros) is no policy: only one still set is refused.
    policy: (p) => {
      if (noPolicy(p)) policies.delete(p.tube)
      else policies.add(p.tube)
    },
  })
  if (policies.size > 0) throw new StoreTagsError(dir)
  for (const f of r.files) {
    if (f.cut !== null) log?.warn({ file: f.path, offset: f.cut.offset, detail: f.cut.detail }, 'convert: leaving out a torn tail (never acknowledged)')
  }
  return { nextId: r.nextId, jobs: [...jobs.values()].sort((a, b) => a.id - b.id) }
}

/** A record's fields as a Snapshot keeps them: wall-clock times, the due time and bury key only where the state has them. */
function storedFields(f: JobFields): Omit<StoredJob, 'tube' | 'body'> {
  const state = STATE_OF[f.state]!
  return {
    id: f.id,
    state,
    pri: f.pri,
    delayMs: f.delayMs,
    ttrMs: f.ttrMs,
    createdAtWall: f.createdAtWall,
    readyAtWall: state === 'delayed' ? f.readyAtWall : 0,
    buryKey: state === 'buried' ? f.buryKey : 0,
    reserves: f.reserves,
    timeouts: f.timeouts,
    releases: f.releases,
    buries: f.buries,
    kicks: f.kicks,
  }
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

/** Tags or cooldowns (--extensions) are not carried over: refuse rather than drop them. */
function refuseTags(db: InstanceType<typeof Database>, file: string): void {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('job_tags', 'idp_tombstones', 'tube_policies')").pluck().all() as string[]
  for (const t of tables) if (db.prepare(`SELECT 1 FROM ${t} LIMIT 1`).get() !== undefined) throw new StoreTagsError(file)
}

export function readSqlite(file: string): Snapshot {
  const { db } = openDb(file, { timeoutMs: 2000, check: true })
  try {
    refuseTags(db, file)
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

/** Reads a SQLite store without writing anything (a stopped server's file: no WAL to fold in). */
export function readSqliteReadOnly(file: string): Snapshot {
  let db: InstanceType<typeof Database>
  try {
    db = new Database(file, { readonly: true, fileMustExist: true })
  } catch (err) {
    throw storeError(file, err, 'cannot open the SQLite store read-only')
  }
  try {
    refuseTags(db, file)
    const jobs = readJobs(db, file)
    const maxId = jobs.length === 0 ? 0 : jobs[jobs.length - 1]!.id
    return { nextId: Math.max(metaValue(db, 'next_id') ?? 1, maxId + 1), jobs }
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

/**
 * Bringing a beanstalkd binlog into tsbeanstalkd:
 * - at start (`-b DIR` holds the reference's files): `importAtStart`, in
 *   place; the reference's files end up, unchanged, in
 *   DIR/beanstalkd-binlog-<time>/ for the operator to delete;
 * - `tsbeanstalkd import-beanstalkd SRC DIR`: `importInto`, SRC only read.
 *
 * Crash safety (staging.ts): the new store is written into
 * DIR/beanstalkd-import.tmp/, fsynced, read back and compared, then marked
 * COMPLETE; only then are the reference's files moved out and the new ones
 * in. An interruption before COMPLETE leaves DIR as it was plus our staging
 * directory (the next start removes it and imports again); after it, the
 * next start finishes the moves. No state in between is ever read as a
 * store: a start finds the staging directory first.
 *
 * Which files are the reference's: every binlog.N (N decimal) that does not
 * start with tsbeanstalkd's magic (version 7 or 5 files, and the empty,
 * zero-filled or unknown-version ones that sit among them, which the
 * reference also skips), and DIR/lock when it is a regular file. A directory
 * holding both tsbeanstalkd's files and the reference's is refused
 * (ForeignFileError): which of the two is current cannot be known.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import { BLOCKER, blockerState, refuseIfReferenceRuns } from '../blocker.js'
import { MAGIC } from '../binlog/record.js'
import { ForeignFileError, StoreMismatchError } from '../errors.js'
import { SQLITE_FILE, holds, isStoreFileName, layoutOf } from '../layout.js'
import { DirLock } from '../lock.js'
import { difference, readBinlog, readSqlite, writeBinlog, writeSqlite, type Snapshot } from '../snapshot.js'
import { commit, discard, finish, readPlan, type Plan } from '../staging.js'
import type { Engine } from '../store.js'
import { WALVER, WALVER5 } from './format.js'
import { REF_FILE_NAME, readReferenceDir, type ReadResult } from './reader.js'

export const IMPORT_STAGING = 'beanstalkd-import.tmp'
export const REPORT_FILE = 'tsbeanstalkd-import.json'

export interface ImportOptions {
  readonly engine: Engine
  /** -s for the binlog files written. */
  readonly fileSize: number
  /** -z: larger bodies are kept and counted in the report. */
  readonly maxJobSize: number
  readonly log: Logger
}

export interface ImportResult {
  readonly read: ReadResult
  /** Where the reference's files went (start), or null (import-beanstalkd: SRC is left alone). */
  readonly backup: string | null
}

interface ImportPlan extends Plan {
  readonly jobs: number
  readonly nextId: number
}

/** What DIR holds of the reference's, or null when nothing. */
export function referenceFiles(dir: string): string[] | null {
  let names: string[]
  try {
    names = fs.readdirSync(dir)
  } catch {
    return null
  }
  const ref: string[] = []
  let version = false
  for (const name of names) {
    if (!REF_FILE_NAME.test(name) || fs.lstatSync(path.join(dir, name), { throwIfNoEntry: false })?.isFile() !== true) continue
    const head = firstBytes(path.join(dir, name), MAGIC.length)
    if (head.length === MAGIC.length && head.equals(MAGIC)) continue // ours
    if (head.length >= 4 && [WALVER, WALVER5].includes(head.readInt32LE(0))) version = true
    ref.push(name)
  }
  const lockFile = blockerState(dir) === 'file'
  // Only empty or unknown files and no lock file of the reference's: nothing says a beanstalkd was here.
  if (!version && !lockFile) return null
  if (lockFile) ref.push(BLOCKER)
  return ref
}

function firstBytes(file: string, n: number): Buffer {
  const fd = fs.openSync(file, 'r')
  try {
    const b = Buffer.alloc(n)
    return b.subarray(0, fs.readSync(fd, b, 0, n, 0))
  } finally {
    fs.closeSync(fd)
  }
}

/** Reads, writes and verifies the new store in DIR's staging directory; returns it uncommitted. */
function stage(dir: string, read: ReadResult, o: ImportOptions): string {
  const staging = path.join(dir, IMPORT_STAGING)
  fs.mkdirSync(staging)
  const snap: Snapshot = { nextId: read.nextId, jobs: read.jobs }
  if (o.engine === 'binlog') writeBinlog(staging, snap, o.fileSize)
  else writeSqlite(path.join(staging, SQLITE_FILE), snap)
  const back = o.engine === 'binlog' ? readBinlog(staging) : readSqlite(path.join(staging, SQLITE_FILE))
  const diff = difference(snap, back)
  if (diff !== null) throw new Error(`import: the new ${o.engine} store does not read back as written (${diff}); ${dir} is unchanged`)
  return staging
}

/** Finishes an import a crash interrupted after its new files were complete; removes an unfinished one. */
function recover(dir: string, log: Logger): ImportPlan | null {
  const staging = path.join(dir, IMPORT_STAGING)
  const plan = readPlan<ImportPlan>(staging)
  if (plan !== null) {
    log.warn({ dir, backup: plan.backup }, 'import: finishing a beanstalkd import that was interrupted after its new files were complete')
    finish(dir, staging, plan)
    return plan
  }
  if (fs.existsSync(staging)) {
    log.warn({ dir }, 'import: removing an unfinished import (interrupted before its new files were complete); importing again')
    discard(staging, isStoreFileName)
  }
  return null
}

/** Logs what the read found, one line per problem. */
export function logReport(log: Logger, r: ReadResult): void {
  for (const f of r.files) {
    if (f.stopped !== null) {
      log.warn(
        { file: f.file, offset: f.stopped.offset, unreadBytes: f.stopped.unreadBytes, detail: f.stopped.detail },
        'import: stopped reading this beanstalkd file at a damaged record (the reference stops there too); the records before it are imported',
      )
    }
  }
  for (const file of r.missing) log.warn({ file }, 'import: a beanstalkd binlog file is missing from the sequence (the reference skips it too)')
  for (const note of r.notes) log.info({ note }, 'import: note')
  if (r.oversized > 0) log.warn({ jobs: r.oversized }, 'import: jobs larger than the current -z were kept (the reference would drop them)')
}

/** Jobs, next id, files, and jobs per state. */
export function importSummary(r: ReadResult): Record<string, number> {
  const by: Record<string, number> = { jobs: r.jobs.length, nextId: r.nextId, files: r.files.length }
  for (const j of r.jobs) by[j.state] = (by[j.state] ?? 0) + 1
  return by
}

/**
 * At start, before the store opens: if DIR holds a beanstalkd binlog, import
 * it in place (see the header). Returns null when there was nothing to do.
 */
export function importAtStart(dir: string, o: ImportOptions): ImportResult | null {
  if (!fs.existsSync(dir)) return null
  const staged = fs.existsSync(path.join(dir, IMPORT_STAGING))
  const ref = referenceFiles(dir)
  if (!staged && ref === null) return null
  refuseIfReferenceRuns(dir)
  const lock = DirLock.acquire(dir, { writeNothing: true })
  try {
    const done = recover(dir, o.log)
    if (done !== null) return null
    const names = referenceFiles(dir)
    if (names === null) return null
    const l = layoutOf(dir)
    const ours = l.binlog.filter((n) => !names.includes(n))
    // Only a lock file beside a store of ours: not an import; the lock directory check names it (blocker.ts).
    if (names.length === 1 && names[0] === BLOCKER && (ours.length > 0 || holds(l, 'sqlite'))) return null
    if (ours.length > 0 || holds(l, 'sqlite')) {
      throw new ForeignFileError(
        path.join(dir, names[0]!),
        `beanstalkd's files (${names.join(', ')}) in a directory that also holds a tsbeanstalkd store (${[...ours, ...l.sqlite].join(', ')})`,
        'A beanstalkd was probably started on this directory. Move the beanstalkd files into a new directory and import them with tsbeanstalkd import-beanstalkd SRC NEWDIR; then start on the directory you want.',
      )
    }
    o.log.info({ dir, files: names }, 'import: this directory holds a beanstalkd binlog; importing it')
    const read = readReferenceDir(dir, o.maxJobSize)
    logReport(o.log, read)
    const staging = stage(dir, read, o)
    const stamp = new Date().toISOString().replace(/[:.]/g, '-')
    const plan: ImportPlan = { backup: `beanstalkd-binlog-${stamp}`, moveOut: names, jobs: read.jobs.length, nextId: read.nextId }
    commit(staging, plan)
    finish(dir, staging, plan)
    const backup = path.join(dir, plan.backup)
    writeReport(backup, read)
    o.log.info({ dir, backup, ...importSummary(read) }, `import: imported ${read.jobs.length} jobs; beanstalkd's files are kept unchanged in ${backup}`)
    return { read, backup }
  } finally {
    lock.release()
  }
}

/** `import-beanstalkd SRC DIR`: SRC is read, never changed; DIR must hold no store. */
export function importInto(src: string, dir: string, o: ImportOptions): ImportResult {
  if (!fs.statSync(src, { throwIfNoEntry: false })?.isDirectory()) throw new StoreMismatchError(src, 'no such directory')
  refuseIfReferenceRuns(src)
  fs.mkdirSync(dir, { recursive: true })
  const lock = DirLock.acquire(dir)
  try {
    if (recover(dir, o.log) !== null) return { read: readReferenceDir(src, o.maxJobSize), backup: null }
    const l = layoutOf(dir)
    if (l.binlog.length > 0 || holds(l, 'sqlite')) throw new StoreMismatchError(dir, 'already holds a store (binlog.N or a SQLite file); import into a new directory')
    if (referenceFileNumbersOrNone(src)) throw new StoreMismatchError(src, 'holds no beanstalkd binlog files (binlog.N)')
    const read = readReferenceDir(src, o.maxJobSize)
    const staging = stage(dir, read, o)
    const plan: ImportPlan = { backup: 'unused', moveOut: [], jobs: read.jobs.length, nextId: read.nextId }
    commit(staging, plan)
    finish(dir, staging, plan)
    return { read, backup: null }
  } finally {
    lock.release()
  }
}

function referenceFileNumbersOrNone(src: string): boolean {
  return !fs.readdirSync(src).some((n) => REF_FILE_NAME.test(n))
}

/** The report, beside the reference's files, for the operator (best effort: the import is done). */
function writeReport(backup: string, r: ReadResult): void {
  try {
    const { jobs: _jobs, ...rest } = r
    fs.writeFileSync(path.join(backup, REPORT_FILE), JSON.stringify({ ...rest, summary: importSummary(r) }, null, 2) + '\n')
  } catch {
    // The import itself is complete and logged.
  }
}

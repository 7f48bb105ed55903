/**
 * Reads a binlog directory back into the jobs it describes. Read-only: the
 * caller applies the cuts it reports.
 *
 * Invariants:
 * - Files are `binlog.<N>`, N = 1, 2, ...; the ones present form one
 *   contiguous run (the writer removes files strictly from the oldest end),
 *   so a gap means a file went missing and is reported as corruption.
 * - Files are read in index order and records in offset order; a later record
 *   about a job supersedes every earlier one. FULL creates or replaces a job;
 *   UPDATE replaces its mutable fields; DELETE removes it. An UPDATE or DELETE
 *   for an id with no FULL yet is stale: its FULL lived in a removed file and
 *   a later FULL (the migrated copy) supersedes it, or the job is gone.
 * - A file is ours only with our magic: a `binlog.N` that does not start
 *   with it is another program's (ForeignFileError; a beanstalkd binlog is
 *   imported before replay runs, beanstalkd/import.ts), except a file that
 *   holds no data at all (empty, all zeros, or the beginning of our header
 *   only: an older version's writer torn while creating its newest file, or
 *   a crash under -F). Such a file is reported as `empty`, skipped and left
 *   in place: replay never removes or cuts what it cannot prove it wrote.
 * - The writer creates `binlog.N.new` and links it to `binlog.N` once the
 *   header is on disk; a leftover `.new` that holds only (part of) a header
 *   is reported in `leftovers` for the caller to remove.
 * - Damage is a torn tail only at the end of the last file (or of a file
 *   written under -F, which promised nothing) and only if no intact record
 *   follows it. Every other damage, and any record whose CRC is right but
 *   whose content is impossible, throws BinlogCorruptError: nothing is
 *   skipped silently.
 * - nextId is above every id in any record and at least every header's
 *   high-water mark, so ids survive even when their records do not.
 */
import path from 'node:path'
import { ForeignFileError } from '../errors.js'
import { BinlogCorruptError } from './errors.js'
import type { BinlogFs } from '../io.js'
import {
  HEADER_SIZE,
  HeaderFlag,
  MAGIC,
  RecordType,
  decodeHeader,
  decodeRecord,
  findIntactRecord,
  type BinlogRecord,
  type JobFields,
} from './record.js'

export interface ReplayedJob extends JobFields {
  tube: string
  body: Buffer
  /** Index of the file holding the job's latest FULL record. */
  file: number
}

export interface ScannedFile {
  readonly index: number
  readonly path: string
  /** Bytes of whole, valid records plus header: the length to keep. */
  readonly size: number
  readonly originalSize: number
  /** A torn tail to cut off, if any. */
  readonly cut: { readonly offset: number; readonly bytes: number; readonly detail: string } | null
  /** The file holds no data and no header of ours (see the invariants): skipped, never removed. */
  readonly empty: boolean
}

export interface ReplayResult {
  readonly files: ScannedFile[]
  /** Live jobs by id, in order of their latest FULL record. */
  readonly jobs: Map<number, ReplayedJob>
  readonly nextId: number
  readonly records: number
  /** UPDATE/DELETE records about jobs whose FULL record was compacted away. */
  readonly stale: number
  /** `binlog.N.new` files a crash left while the writer created them (only a header, or part of one): ours to remove. */
  readonly leftovers: string[]
}

const FILE_NAME = /^binlog\.([1-9]\d{0,15})$/

const NEW_FILE_NAME = /^binlog\.[1-9]\d{0,15}\.new$/

export const fileName = (dir: string, index: number): string => path.join(dir, `binlog.${index}`)
/** The name a new file has until its header is on disk (writer.ts). */
export const newFileName = (dir: string, index: number): string => `${fileName(dir, index)}.new`

/**
 * True when `b` (a whole file) holds no data: empty, all zeros, or at most a
 * header of ours (or the start of one) and zeros.
 */
export function holdsNothing(b: Buffer): boolean {
  let i = 0
  if (b.length <= HEADER_SIZE) {
    while (i < b.length && i < MAGIC.length && b[i] === MAGIC[i]) i++
    if (i === MAGIC.length || i === b.length) return true
    i = 0
  }
  for (; i < b.length; i++) if (b[i] !== 0) return false
  return true
}

function foreign(file: string, b: Buffer): ForeignFileError {
  const v = b.length >= 4 ? b.readInt32LE(0) : -1
  const looks =
    v === 7 || v === 5
      ? `a beanstalkd binlog file (format version ${v}) in a directory that also holds tsbeanstalkd files`
      : `not a tsbeanstalkd binlog file (it does not start with the magic bytes; ${b.length} bytes)`
  return new ForeignFileError(
    file,
    looks,
    v === 7 || v === 5
      ? 'A beanstalkd was probably started on this directory. Move the beanstalkd files (binlog.N starting with that version) into a new directory, import them with tsbeanstalkd import-beanstalkd SRC NEWDIR, and start on one of the two directories.'
      : 'Move it out of the directory (or restore the right file) and start again.',
  )
}

/** Indices of the binlog files in `dir`, ascending. */
export function listFiles(dir: string, io: BinlogFs): number[] {
  const out: number[] = []
  for (const name of io.readdirSync(dir)) {
    const m = FILE_NAME.exec(name)
    if (m !== null) out.push(Number(m[1]))
  }
  return out.sort((a, b) => a - b)
}

export function replay(dir: string, io: BinlogFs): ReplayResult {
  const indices = listFiles(dir, io)
  const jobs = new Map<number, ReplayedJob>()
  const files: ScannedFile[] = []
  const leftovers: string[] = []
  for (const name of io.readdirSync(dir)) {
    if (!NEW_FILE_NAME.test(name)) continue
    const file = path.join(dir, name)
    const b = io.readFileSync(file)
    if (b.length > HEADER_SIZE || !holdsNothing(b)) throw foreign(file, b)
    leftovers.push(file)
  }
  let maxId = 0
  let headerNextId = 1
  let records = 0
  let stale = 0

  const apply = (r: BinlogRecord, file: number): void => {
    if (r.id > maxId) maxId = r.id
    records++
    switch (r.type) {
      case RecordType.FULL: {
        const { type: _type, ...fields } = r
        jobs.delete(r.id) // re-insert: the map stays in latest-FULL order
        jobs.set(r.id, { ...fields, file })
        return
      }
      case RecordType.UPDATE: {
        const j = jobs.get(r.id)
        if (j === undefined) {
          stale++
          return
        }
        j.state = r.state
        j.pri = r.pri
        j.reserves = r.reserves
        j.timeouts = r.timeouts
        j.releases = r.releases
        j.buries = r.buries
        j.kicks = r.kicks
        j.delayMs = r.delayMs
        j.readyAtWall = r.readyAtWall
        j.buryKey = r.buryKey
        return
      }
      case RecordType.DELETE:
        if (!jobs.delete(r.id)) stale++
        return
    }
  }

  // Files that hold nothing before the first one with our header are not in the run (the writer never removes them).
  let runStarted = false
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i]!
    const file = fileName(dir, index)
    if (runStarted && index !== indices[i - 1]! + 1) {
      throw new BinlogCorruptError(
        fileName(dir, indices[i - 1]! + 1),
        0,
        `file is missing (binlog.${indices[i - 1]} and binlog.${index} exist); the records in it are lost`,
      )
    }
    const last = i === indices.length - 1
    const buf = io.readFileSync(file)
    const h = decodeHeader(buf)
    if (typeof h === 'string') {
      if (holdsNothing(buf)) {
        files.push({ index, path: file, size: buf.length, originalSize: buf.length, cut: null, empty: true })
        continue
      }
      if (buf.length < MAGIC.length || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw foreign(file, buf)
      throw new BinlogCorruptError(file, 0, h)
    }
    runStarted = true
    if (h.index !== index) throw new BinlogCorruptError(file, 0, `header says this is binlog.${h.index} (renamed file?)`)
    if (h.nextId > headerNextId) headerNextId = h.nextId
    const tornOk = last || (h.flags & HeaderFlag.NO_FSYNC) !== 0
    let off = HEADER_SIZE
    let cut: ScannedFile['cut'] = null
    while (off < buf.length) {
      const d = decodeRecord(buf, off)
      if (d.ok) {
        apply(d.record, index)
        off += d.size
        continue
      }
      if (d.kind === 'invalid' || !tornOk) throw new BinlogCorruptError(file, off, d.detail)
      const next = findIntactRecord(buf, off + 1)
      if (next >= 0) {
        throw new BinlogCorruptError(file, off, `${d.detail}, yet an intact record follows at offset ${next}`)
      }
      cut = { offset: off, bytes: buf.length - off, detail: d.detail }
      break
    }
    files.push({ index, path: file, size: off, originalSize: buf.length, cut, empty: false })
  }

  return { files, jobs, nextId: Math.max(headerNextId, maxId + 1), records, stale, leftovers }
}

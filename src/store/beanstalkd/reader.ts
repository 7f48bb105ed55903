/**
 * Reads a beanstalkd binlog directory (version 7, and version 5 files) into
 * a Snapshot, without changing anything, and says what it could not read.
 *
 * The rules are the reference's replay (walg.c walread, file.c readrec):
 * files binlog.<min>..binlog.<max> in order (a missing number is reported
 * and skipped); per record: a full record of an unknown id creates the job;
 * a full record of a known id replaces it (body re-read); a short record of
 * an unknown id is ignored (its full record was in a removed file); state 0
 * deletes; reserved becomes ready; a record with id 0 is the zero tail. Jobs
 * keep the order of their first record, which is the order the reference
 * buries them in at replay (so it is the bury order here).
 *
 * Where the reference loses data, this does not:
 * - No body is refused for its size: the reference compares body_size
 *   (which counts the CRLF) with -z and so drops a job whose body is -z - 1
 *   or -z bytes (65,534 and 65,535 by default) with the rest of its file.
 * - A damaged record keeps the job it was about in its last good state (the
 *   reference frees it).
 * - Everything not read is reported: file, offset, why, and how many bytes
 *   that were not zeros were left unread.
 *
 * Invariants:
 * - "Safely": a file is read record by record while every record passes the
 *   checks below; at the first that fails, the rest of that file is not
 *   read (like the reference: lengths after a bad one cannot be trusted),
 *   the stop is reported, and reading goes on with the next file.
 * - Checks: name length 0..200 and a valid tube name; id below 2^53; state
 *   0..4 (0 only in a short record); body_size 2..2^30+2 ending in CRLF;
 *   delay, TTR and created time not negative; a short record's body_size
 *   equals its job's.
 * - Memory: files are read in 1 MiB windows (a body larger than the window
 *   is read straight into its own buffer), never a whole file at once.
 * - nextId is above every id in any record, the ignored ones included.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { StoredJob } from '../store.js'
import type { Snapshot } from '../snapshot.js'
import {
  JOBREC5_SIZE,
  JOBREC_SIZE,
  MAX_SAFE_ID,
  MAX_TUBE_NAME_LEN,
  RefState,
  WALVER,
  WALVER5,
  decodeJobrec,
  validTubeName,
  type RefJobRec,
} from './format.js'

/** Largest body_size a record may announce: the 1 GiB -z ceiling plus CRLF. */
export const BODY_MAX = 1073741824 + 2
const WINDOW = 1 << 20

/** The reference's file names it reads: binlog.<decimal>. */
export const REF_FILE_NAME = /^binlog\.(0|[1-9]\d{0,9})$/

export interface FileReport {
  readonly file: string
  readonly version: number | null
  readonly bytes: number
  readonly records: number
  /** Where reading stopped before the end of the data, and why. */
  readonly stopped: { readonly offset: number; readonly detail: string; readonly unreadBytes: number } | null
}

export interface ReadResult extends Snapshot {
  readonly files: FileReport[]
  /** binlog.N between the lowest and highest present that are missing (the reference warns and skips). */
  readonly missing: string[]
  /** Other things worth telling: a job replaced by a later full record of another tube, ignored records. */
  readonly notes: string[]
  /** Short records about jobs whose full record is in no file (ignored, as the reference does). */
  readonly staleRecords: number
  /** Bodies longer than `maxJobSize` + 2 (kept; the reference drops them). */
  readonly oversized: number
}

/** The reference's files in `dir`, by number (ascending). */
export function referenceFileNumbers(dir: string): number[] {
  const out: number[] = []
  for (const name of fs.readdirSync(dir)) {
    const m = REF_FILE_NAME.exec(name)
    // Only regular files (the reference's open would fail on anything else, and skip it).
    if (m !== null && fs.lstatSync(path.join(dir, name)).isFile()) out.push(Number(m[1]))
  }
  return out.sort((a, b) => a - b)
}

interface Live {
  job: StoredJob
  /** Order of the first record (bury order at replay). */
  seq: number
}

/** Positional reads through a 1 MiB window. */
class Cursor {
  readonly size: number
  private readonly fd: number
  private readonly win = Buffer.allocUnsafe(WINDOW)
  private static readonly zeros = Buffer.alloc(WINDOW)
  private winStart = 0
  private winLen = 0

  constructor(fd: number, size: number) {
    this.fd = fd
    this.size = size
  }

  /** Exactly `n` bytes at `pos` (n <= WINDOW; the caller checked they exist). Valid until the next call. */
  at(pos: number, n: number): Buffer {
    if (pos < this.winStart || pos + n > this.winStart + this.winLen) {
      this.winStart = pos
      this.winLen = readFully(this.fd, this.win, 0, Math.min(WINDOW, this.size - pos), pos)
    }
    return this.win.subarray(pos - this.winStart, pos - this.winStart + n)
  }

  /** A copy of `n` bytes at `pos`, however large. */
  copy(pos: number, n: number): Buffer {
    const out = Buffer.allocUnsafeSlow(n)
    if (n <= WINDOW) this.at(pos, n).copy(out)
    else readFully(this.fd, out, 0, n, pos)
    return out
  }

  /** Offset of the first non-zero byte at or after `pos`, or -1; and how many non-zero bytes there are. */
  nonZero(pos: number): { first: number; count: number } {
    let first = -1
    let count = 0
    for (let p = pos; p < this.size; p += WINDOW) {
      const n = Math.min(WINDOW, this.size - p)
      const b = this.at(p, n)
      if (b.equals(Cursor.zeros.subarray(0, n))) continue
      for (let i = 0; i < n; i++) {
        if (b[i] !== 0) {
          if (first < 0) first = p + i
          count++
        }
      }
    }
    return { first, count }
  }
}

function readFully(fd: number, buf: Buffer, off: number, len: number, pos: number): number {
  let done = 0
  while (done < len) {
    const n = fs.readSync(fd, buf, off + done, len - done, pos + done)
    if (n === 0) break
    done += n
  }
  return done
}

const stateName = (s: number): StoredJob['state'] =>
  s === RefState.BURIED ? 'buried' : s === RefState.DELAYED ? 'delayed' : 'ready' // reserved comes back ready

/** Reads every reference file in `dir` (see the header). Throws only for I/O errors (EIO, EACCES). */
export function readReferenceDir(dir: string, maxJobSize = 65535): ReadResult {
  const numbers = referenceFileNumbers(dir)
  const live = new Map<number, Live>()
  const files: FileReport[] = []
  const missing: string[] = []
  const notes: string[] = []
  let maxId = 0
  let seq = 0
  let stale = 0
  let oversized = 0
  const first = numbers[0]
  const last = numbers[numbers.length - 1]
  const present = new Set(numbers)

  for (let n = first ?? 1; first !== undefined && last !== undefined && n <= last; n++) {
    const file = path.join(dir, `binlog.${n}`)
    if (!present.has(n)) {
      missing.push(file)
      continue
    }
    const fd = fs.openSync(file, 'r')
    try {
      files.push(readFile(file, fd))
    } finally {
      fs.closeSync(fd)
    }
  }

  function readFile(file: string, fd: number): FileReport {
    const size = fs.fstatSync(fd).size
    const c = new Cursor(fd, size)
    let records = 0
    const stop = (offset: number, detail: string, unread = c.nonZero(offset).count): FileReport => {
      return { file, version, bytes: size, records, stopped: { offset, detail, unreadBytes: unread } }
    }
    let version: number | null = null
    if (size === 0) return { file, version, bytes: size, records, stopped: null }
    if (size < 4) return stop(0, `${size} bytes, shorter than the 4-byte version`)
    version = c.at(0, 4).readInt32LE(0)
    if (version !== WALVER && version !== WALVER5) {
      const nz = c.nonZero(0)
      if (nz.first < 0) return { file, version, bytes: size, records, stopped: null } // all zeros: nothing in it
      return stop(0, `unknown binlog format version ${version} (this reads 7 and 5; the reference skips such a file too)`, nz.count)
    }
    const v5 = version === WALVER5
    const lenSize = v5 ? 8 : 4
    const recSize = v5 ? JOBREC5_SIZE : JOBREC_SIZE
    let off = 4
    while (off < size) {
      const left = size - off
      if (left < lenSize + recSize) {
        if (c.nonZero(off).first < 0) break // the zero tail
        return stop(off, `${left} bytes left, less than a record`)
      }
      // v5: a size_t (a huge value is caught by the range check); v7: an int.
      const namelen = v5 ? Number(c.at(off, 8).readBigUInt64LE(0)) : c.at(off, 4).readInt32LE(0)
      if (namelen < 0 || namelen >= MAX_TUBE_NAME_LEN) return stop(off, `tube name length ${namelen} (at most ${MAX_TUBE_NAME_LEN - 1})`)
      if (left < lenSize + namelen + recSize) return stop(off, `a record of ${lenSize + namelen + recSize} bytes runs past the end of the file`)
      const tube = namelen === 0 ? '' : c.at(off + lenSize, namelen).toString('latin1')
      const recAt = off + lenSize + namelen
      const { rec, id } = decodeJobrec(c.at(recAt, recSize), 0, v5)
      if (id === 0n) {
        // The reference reads a record with id 0 as the zero tail and stops here; whatever follows is unread.
        const nz = c.nonZero(off)
        if (nz.first < 0) break
        return stop(off, `a record with job id 0 (how the zero tail starts), yet ${nz.count} bytes after it are not zeros`, nz.count)
      }
      if (id > MAX_SAFE_ID) return stop(off, `job id ${id} is above 2^53`)
      if (namelen > 0 && !validTubeName(tube)) return stop(off, `tube name ${JSON.stringify(tube)} is not a valid tube name`)
      const bad = badFields(rec)
      if (bad !== null) return stop(off, `job ${rec.id}: ${bad}`)
      if (rec.id > maxId) maxId = rec.id
      const known = live.get(rec.id)
      const headLen = lenSize + namelen + recSize
      if (namelen === 0) {
        if (known === undefined) {
          stale++
          off += headLen
          records++
          continue
        }
        if (rec.state === RefState.INVALID) {
          live.delete(rec.id)
        } else {
          if (rec.bodySize !== known.job.body.length) {
            return stop(off, `job ${rec.id}: a short record says the body has ${rec.bodySize} bytes, its full record ${known.job.body.length}`)
          }
          update(known.job, rec)
        }
        off += headLen
        records++
        continue
      }
      // A full record.
      if (rec.state === RefState.INVALID) return stop(off, `job ${rec.id}: a full record in state 0 (deleted), which beanstalkd never writes`)
      if (rec.bodySize < 2 || rec.bodySize > BODY_MAX) return stop(off, `job ${rec.id}: body size ${rec.bodySize}`)
      if (left < headLen + rec.bodySize) return stop(off, `job ${rec.id}: its ${rec.bodySize}-byte body runs past the end of the file`)
      const body = c.copy(recAt + recSize, rec.bodySize)
      if (body[body.length - 2] !== 0x0d || body[body.length - 1] !== 0x0a) return stop(off, `job ${rec.id}: the body does not end in CRLF`)
      if (rec.bodySize > maxJobSize + 2) oversized++
      if (known === undefined) {
        live.set(rec.id, { job: newJob(rec, tube, body), seq: seq++ })
      } else {
        if (known.job.tube !== tube) notes.push(`job ${rec.id}: a later full record in ${file} moves it from tube ${known.job.tube} to ${tube}; the later one is kept`)
        known.job = newJob(rec, tube, body)
      }
      off += headLen + rec.bodySize
      records++
    }
    return { file, version, bytes: size, records, stopped: null }
  }

  const jobs: StoredJob[] = []
  for (const { job, seq: s } of live.values()) {
    jobs.push(job.state === 'buried' ? { ...job, buryKey: s + 1 } : job)
  }
  jobs.sort((a, b) => a.id - b.id)
  if (stale > 0) notes.push(`${stale} short records about jobs whose full record is in no file were ignored, as the reference ignores them`)
  return { nextId: maxId + 1, jobs, files, missing, notes, staleRecords: stale, oversized }
}

/** What is impossible in a job record, or null. */
function badFields(r: RefJobRec): string | null {
  if (r.state > RefState.DELAYED) return `unknown job state ${r.state}`
  if (r.delayMs < 0) return `negative delay ${r.delayMs} ms`
  if (r.ttrMs < 0) return `negative TTR ${r.ttrMs} ms`
  if (r.createdAtWall < 0) return `created before 1970 (${r.createdAtWall} ms)`
  return null
}

/** A job as a full record describes it. */
export function newJob(r: RefJobRec, tube: string, body: Buffer): StoredJob {
  const job: StoredJob = {
    id: r.id,
    tube,
    state: 'ready',
    pri: r.pri,
    delayMs: 0,
    ttrMs: 0,
    createdAtWall: 0,
    readyAtWall: 0,
    buryKey: 0,
    reserves: 0,
    timeouts: 0,
    releases: 0,
    buries: 0,
    kicks: 0,
    body,
  }
  update(job, r)
  return job
}

/** A short record replaces every field but the tube and body (file.c: j->r = jr). */
function update(j: StoredJob, r: RefJobRec): void {
  j.state = stateName(r.state)
  j.pri = r.pri
  j.delayMs = r.delayMs
  j.ttrMs = r.ttrMs
  j.createdAtWall = r.createdAtWall
  j.readyAtWall = j.state === 'delayed' ? r.deadlineWall : 0
  j.reserves = r.reserves
  j.timeouts = r.timeouts
  j.releases = r.releases
  j.buries = r.buries
  j.kicks = r.kicks
}

/**
 * Reads a binlog directory back, record by record, into a visitor (the
 * binlog's restore feeding the registry, or a conversion). Read-only: the
 * caller applies the cuts it reports.
 *
 * Invariants:
 * - Files are `binlog.<N>`, N = 1, 2, ...; the ones present form one
 *   contiguous run (the writer removes files strictly from the oldest end),
 *   so a gap means a file went missing and is reported as corruption.
 * - Files are read in index order and records in offset order; a later record
 *   about a job supersedes every earlier one. FULL creates or replaces a job;
 *   UPDATE replaces its mutable fields; DELETE removes it (TAGS and TOMB,
 *   --extensions: a job's tags, a delete leaving a key's cooldown; DELETE_MANY,
 *   a flush slice: a DELETE for each of its ids). An UPDATE or DELETE
 *   for an id with no FULL yet is stale: its FULL lived in a removed file and
 *   a later FULL (the migrated copy) supersedes it, or the job is gone. The
 *   visitor tells which ones were stale.
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
 * - A preallocated file (HeaderFlag.PREALLOCATED, spare.ts) ends where a
 *   record would start with a zero length and only zeros follow; nothing
 *   is cut (the zeros are its own).
 *   A zero length with anything but zeros after it is damage as below.
 * - Damage is a torn tail only at the end of the last file (or of a file
 *   written under -F, which promised nothing) and only if no intact record
 *   follows it. Every other damage, and any record whose CRC is right but
 *   whose content is impossible (a body without its CRLF included), throws
 *   BinlogCorruptError: nothing is skipped silently.
 * - nextId is above every id in any record and at least every header's
 *   high-water mark, so ids survive even when their records do not.
 * - Memory: files are read through one reusable buffer (CHUNK bytes, or one
 *   record if it is larger), never whole; a record's tube name and body are
 *   handed over as offsets into it, valid only during the call, and the
 *   fields object is reused: the visitor copies what it keeps.
 */
import path from 'node:path'
import { ForeignFileError } from '../errors.js'
import { BinlogCorruptError } from './errors.js'
import type { BinlogFs } from '../io.js'
import type { ReplayMeter } from '../replay-progress.js'
import {
  BODY_MAX,
  FIXED_SIZE,
  FRAME_SIZE,
  HEADER_SIZE,
  HeaderFlag,
  MAGIC,
  MAX_PAYLOAD,
  RecordScratch,
  RecordType,
  TUBE_NAME_MAX,
  decodeHeader,
  decodeInto,
  deleteManyId,
  findIntactRecord,
  type JobFields,
  type RecordTags,
  type RecordPolicy,
  type RecordTomb,
} from './record.js'

/** What replay hands over; `f` is reused between calls. */
export interface RecordVisitor {
  /** A file of the run begins (its records follow; an empty file inside the run has none). */
  beginFile(index: number): void
  /** A FULL record; the body (with its CRLF) is `buf[start, end)`, in file `file`. */
  full(f: JobFields, tube: string, buf: Buffer, start: number, end: number, file: number): void
  /** false: no such job (stale). */
  update(f: JobFields): boolean
  /** false: no such job (stale). */
  delete(id: number): boolean
  /** --extensions: a job's tags (TAGS); false: no such job (stale). A visitor without it ignores them. */
  tags?(id: number, tags: RecordTags): boolean
  /** --extensions: a delete that leaves an idempotency cooldown (TOMB), in file `file`. */
  tomb?(id: number, tomb: RecordTomb, file: number): void
  /** --extensions: a tube policy (POLICY). */
  policy?(p: RecordPolicy): void
}

export interface ScannedFile {
  readonly index: number
  readonly path: string
  /** Bytes of whole, valid records plus header: the length to keep (a preallocated file's zeros after its records included). */
  readonly size: number
  readonly originalSize: number
  /** A torn tail to cut off, if any. */
  readonly cut: { readonly offset: number; readonly bytes: number; readonly detail: string } | null
  /** The file holds no data and no header of ours (see the invariants): skipped, never removed. */
  readonly empty: boolean
}

export interface ReplayResult {
  readonly files: ScannedFile[]
  readonly nextId: number
  readonly records: number
  /** UPDATE/DELETE records about jobs whose FULL record was compacted away. */
  readonly stale: number
  /** `binlog.N.new` files a crash left while the writer created them (only a header, or part of one): ours to remove. */
  readonly leftovers: string[]
}

const FILE_NAME = /^binlog\.([1-9]\d{0,15})$/
const NEW_FILE_NAME = /^binlog\.[1-9]\d{0,15}\.new$/
/** Read size: large enough that a read costs nothing per record, small enough not to matter in RSS. */
const CHUNK = 1 << 20
const CR = 0x0d
const LF = 0x0a

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

/** `a[at, at + n)` equals `b[0, n)` (a loop: tube names are short, a native compare costs more to call). */
function sameBytes(a: Buffer, at: number, b: Buffer, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[at + i] !== b[i]) return false
  return true
}

/** The bytes of one file from `from` to its end (the rare paths that need all of it at once). */
function readRest(io: BinlogFs, fd: number, from: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(Math.max(0, size - from))
  let got = 0
  while (got < b.length) {
    const n = io.readSync(fd, b, got, b.length - got, from + got)
    if (n <= 0) break
    got += n
  }
  return got === b.length ? b : b.subarray(0, got)
}

/** The length field of a frame at `buf[off]` is zero (as far as `buf[off, have)` holds it). */
function zeroLength(buf: Buffer, off: number, have: number): boolean {
  for (let i = off; i < off + 4 && i < have; i++) if (buf[i] !== 0) return false
  return true
}

/** The file holds only zeros from `from` to `size` (read in chunks: a preallocated tail is up to -s bytes). */
export function zerosToEnd(io: BinlogFs, fd: number, from: number, size: number): boolean {
  const chunk = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, size - from)))
  const zeros = Buffer.alloc(chunk.length)
  for (let at = from; at < size; ) {
    const n = io.readSync(fd, chunk, 0, Math.min(chunk.length, size - at), at)
    if (n <= 0) return true // the file shrank under us: what there was were zeros
    if (!chunk.subarray(0, n).equals(zeros.subarray(0, n))) return false
    at += n
  }
  return true
}

/**
 * A file seen through one buffer: `buf[0, have)` holds the file's bytes from
 * offset `pos`; `ensure(off, n)` makes `buf[off, off + n)` present if the file has them.
 */
class Window {
  buf = Buffer.allocUnsafeSlow(CHUNK)
  pos = 0
  have = 0
  private fd = -1
  private size = 0
  private readonly io: BinlogFs

  constructor(io: BinlogFs) {
    this.io = io
  }

  open(fd: number, size: number): void {
    this.fd = fd
    this.size = size
    this.pos = 0
    this.have = 0
  }

  /** True when the file ends within the buffer. */
  get atEnd(): boolean {
    return this.pos + this.have >= this.size
  }

  /** Slides the buffer so it starts at buffer offset `off` and holds `n` bytes from there (fewer at the file's end); returns the new offset of `off` (0). */
  ensure(off: number, n: number): number {
    if (off + n <= this.have || this.atEnd) return off
    if (n > this.buf.length) {
      const bigger = Buffer.allocUnsafeSlow(n)
      this.buf.copy(bigger, 0, off, this.have)
      this.buf = bigger
    } else {
      this.buf.copyWithin(0, off, this.have)
    }
    this.have -= off
    this.pos += off
    while (this.have < this.buf.length && !this.atEnd) {
      const got = this.io.readSync(this.fd, this.buf, this.have, this.buf.length - this.have, this.pos + this.have)
      if (got <= 0) {
        // The file shrank under us: treat what is there as its end.
        this.size = this.pos + this.have
        break
      }
      this.have += got
    }
    return 0
  }
}

/**
 * Replays `dir` into `visit`, file by file, record by record, pausing (for
 * the event loop) when the meter says so; a server's start.
 */
export async function replay(dir: string, io: BinlogFs, visit: RecordVisitor, meter: ReplayMeter): Promise<ReplayResult> {
  const g = scan(dir, io, visit, meter)
  for (let r = g.next(); ; r = g.next()) {
    if (r.done === true) return r.value
    await meter.pause()
  }
}

/** The same in one go, without pauses: tools that read a whole directory (snapshot.ts). */
export function replaySync(dir: string, io: BinlogFs, visit: RecordVisitor): ReplayResult {
  const g = scan(dir, io, visit, undefined)
  for (let r = g.next(); ; r = g.next()) if (r.done === true) return r.value
}

/** The replay itself: yields where the meter wants a pause (never without one). */
function* scan(dir: string, io: BinlogFs, visit: RecordVisitor, meter: ReplayMeter | undefined): Generator<void, ReplayResult, void> {
  const indices = listFiles(dir, io)
  const files: ScannedFile[] = []
  const leftovers: string[] = []
  for (const name of io.readdirSync(dir)) {
    if (!NEW_FILE_NAME.test(name)) continue
    const file = path.join(dir, name)
    const b = io.readFileSync(file)
    if (b.length > HEADER_SIZE || !holdsNothing(b)) throw foreign(file, b)
    leftovers.push(file)
  }
  const win = new Window(io)
  const s = new RecordScratch()
  let maxId = 0
  let headerNextId = 1
  let records = 0
  let stale = 0
  let bytesDone = 0
  // The previous FULL record's tube name: consecutive records mostly share one, and a string per record is garbage.
  let tubeName = ''
  const tubeBytes = Buffer.alloc(256)
  let tubeLen = 0

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
    const size = io.sizeOf(file)
    const fd = io.openSync(file, 'r')
    try {
      win.open(fd, size)
      win.ensure(0, HEADER_SIZE)
      const h = decodeHeader(win.buf.subarray(0, Math.min(win.have, HEADER_SIZE)))
      if (typeof h === 'string') {
        const whole = readRest(io, fd, 0, size)
        if (holdsNothing(whole)) {
          files.push({ index, path: file, size, originalSize: size, cut: null, empty: true })
          if (runStarted) visit.beginFile(index)
          continue
        }
        if (whole.length < MAGIC.length || !whole.subarray(0, MAGIC.length).equals(MAGIC)) throw foreign(file, whole)
        throw new BinlogCorruptError(file, 0, h)
      }
      runStarted = true
      if (h.index !== index) throw new BinlogCorruptError(file, 0, `header says this is binlog.${h.index} (renamed file?)`)
      if (h.nextId > headerNextId) headerNextId = h.nextId
      const tornOk = last || (h.flags & HeaderFlag.NO_FSYNC) !== 0
      const preallocated = (h.flags & HeaderFlag.PREALLOCATED) !== 0
      visit.beginFile(index)
      let off = HEADER_SIZE
      let cut: ScannedFile['cut'] = null
      for (;;) {
        // Have the whole record in the buffer: its frame, then as much as its length says (within the file).
        off = win.ensure(off, FRAME_SIZE)
        if (off >= win.have) break
        if (preallocated && zeroLength(win.buf, off, win.have) && zerosToEnd(io, fd, win.pos + off, size)) break
        if (win.have - off >= FRAME_SIZE) {
          const len = win.buf.readUInt32LE(off)
          if (len <= MAX_PAYLOAD) off = win.ensure(off, Math.min(FRAME_SIZE + len, size - (win.pos + off)))
        }
        const buf = win.buf
        const n = decodeInto(buf, off, win.have, s)
        const at = win.pos + off
        if (n === 0) {
          if (s.kind === 'invalid' || !tornOk) throw new BinlogCorruptError(file, at, s.detail)
          const next = findIntactRecord(readRest(io, fd, at + 1, size), 0)
          if (next >= 0) {
            throw new BinlogCorruptError(file, at, `${s.detail}, yet an intact record follows at offset ${at + 1 + next}`)
          }
          cut = { offset: at, bytes: size - at, detail: s.detail }
          break
        }
        const f = s.fields
        records++
        if (s.type === RecordType.FANOUT) {
          // The copies of one put, each handed over as its FULL would be.
          const end = s.bodyStart + s.bodyLen
          if (s.bodyLen < 2 || buf[end - 2] !== CR || buf[end - 1] !== LF) {
            throw new BinlogCorruptError(file, at, 'FANOUT record whose body does not end in CRLF')
          }
          const first = f.id
          const t = s.fanTubes
          for (let i = 0; i < t.length; i += 2) {
            f.id = first + i / 2
            visit.full(f, buf.toString('latin1', t[i]!, t[i]! + t[i + 1]!), buf, s.bodyStart, end, index)
          }
          if (f.id > maxId) maxId = f.id
          off += n
          continue
        }
        if (s.type === RecordType.DELETE_MANY) {
          // One flush slice (its CRC was right, so all of it): each id as a DELETE.
          for (let i = 0; i < s.idsCount; i++) {
            const id = deleteManyId(buf, s, i)
            if (id > maxId) maxId = id
            if (!visit.delete(id)) stale++
          }
          off += n
          if (meter !== undefined) {
            meter.records = records
            meter.bytes = bytesDone + win.pos + off
            if (meter.due()) yield
          }
          continue
        }
        if (s.type === RecordType.POLICY) {
          // Names a tube, not a job: no id to account for.
          visit.policy?.(s.policy!)
          off += n
          continue
        }
        if (f.id > maxId) maxId = f.id
        if (s.type === RecordType.FULL) {
          const end = s.bodyStart + s.bodyLen
          if (s.bodyLen < 2 || buf[end - 2] !== CR || buf[end - 1] !== LF) {
            throw new BinlogCorruptError(file, at, 'FULL record whose body does not end in CRLF')
          }
          if (s.tubeLen !== tubeLen || !sameBytes(buf, s.tubeStart, tubeBytes, tubeLen)) {
            tubeLen = s.tubeLen
            buf.copy(tubeBytes, 0, s.tubeStart, s.tubeStart + tubeLen)
            tubeName = buf.toString('latin1', s.tubeStart, s.tubeStart + tubeLen)
          }
          visit.full(f, tubeName, buf, s.bodyStart, end, index)
        } else if (s.type === RecordType.UPDATE) {
          if (!visit.update(f)) stale++
        } else if (s.type === RecordType.TAGS) {
          if (visit.tags !== undefined && !visit.tags(f.id, s.tags!)) stale++
        } else if (s.type === RecordType.TOMB) {
          visit.tomb?.(f.id, s.tomb!, index)
        } else if (!visit.delete(f.id)) {
          stale++
        }
        off += n
        if (meter !== undefined) {
          meter.records = records
          meter.bytes = bytesDone + win.pos + off
          if (meter.due()) yield
        }
      }
      files.push({ index, path: file, size: cut === null ? size : cut.offset, originalSize: size, cut, empty: false })
    } finally {
      io.closeSync(fd)
      bytesDone += size
      if (meter !== undefined) {
        meter.files++
        meter.bytes = bytesDone
      }
    }
  }

  return { files, nextId: Math.max(headerNextId, maxId + 1), records, stale, leftovers }
}

/**
 * The binlog's on-disk format, pure: encode a file header or one record into
 * bytes and decode them back. No I/O, no clocks. docs/binlog-format.md is the
 * prose version of this file; keep the two in step.
 *
 * Invariants:
 * - A file is a 40-byte header (magic, format version, its own index, the id
 *   high-water mark, flags, CRC32 of the header) followed by records.
 * - A record is `[payload length u32][crc32 u32][payload]`; the CRC covers
 *   the length field and the payload, so a torn write or a flipped bit
 *   anywhere in a record is caught. All integers are little-endian; u64
 *   fields hold integers up to 2^53 - 1.
 * - The decoder checks every length against hard limits before using it and
 *   never reads outside the buffer. It tells a frame that may be a torn write
 *   (short, implausible length, CRC mismatch) from one whose CRC is right but
 *   whose content is impossible (that is never a torn write).
 * - Record sizes depend only on tube-name and body lengths, so the compactor
 *   can account live bytes without encoding.
 * - With --extensions two more types appear: TAGS (a tagged job's tags,
 *   right after each FULL of the job in the same write, and again when its
 *   after-group is satisfied) and TOMB (the delete of a job whose
 *   idempotency key keeps a cooldown: the key, and when the cooldown ends).
 *   A file without tagged jobs holds neither. POLICY (16) is a tube
 *   policy (tube-policy): the latest for a tube wins, all zeros clear it;
 *   the binlog writes the whole set again into each new file, so the
 *   newest files always hold it. FANOUT (17) is the copies of one put
 *   into a fan-out source: consecutive ids, one tube each, one body, in
 *   one record (one CRC), so a torn write keeps all of them or none;
 *   replay hands each copy over as a FULL. DELETE_MANY (18) is the deletes
 *   of one flush-tube/delete-tube slice: many ids under one CRC, so a torn
 *   one deletes none of them (the flush's reply had not been sent).
 */
import { crc32 } from 'node:zlib'
import { crc32Range } from './crc.js'
import type { RestoredPolicy, RestoredTags } from '../../queue/journal.js'

/** "\x89TSBLOG\n": a high byte and a newline catch 7-bit and newline-mangling copies. */
export const MAGIC = Buffer.from([0x89, 0x54, 0x53, 0x42, 0x4c, 0x4f, 0x47, 0x0a])
/** An appended file: it ends where its last record ends. */
export const FORMAT_VERSION = 1
/** A preallocated file (flag PREALLOCATED): zeros follow its last record, up to the size it was filled to. */
export const PREALLOCATED_VERSION = 2
export const HEADER_SIZE = 40
/** Length and CRC in front of every payload. */
export const FRAME_SIZE = 8
/** Payload of an UPDATE record, and of a FULL one before its tube name and body. */
export const FIXED_SIZE = 80
export const DELETE_SIZE = 12
export const UPDATE_RECORD_SIZE = FRAME_SIZE + FIXED_SIZE
export const DELETE_RECORD_SIZE = FRAME_SIZE + DELETE_SIZE
export const TUBE_NAME_MAX = 255
/** Largest body a record may hold: the 1 GiB `-z` ceiling plus CRLF. */
export const BODY_MAX = 1073741824 + 2
/** FANOUT: type, state, count u8, 0, first id u64, pri u32, body length u32, delay u64, ttr u64, created u64, ready-at u64; then the tubes (length u8, name), then the body. */
const FANOUT_FIXED = 52
/** DELETE_MANY: type, 3 spare, count u32, then count ids u64. */
const DELETE_MANY_FIXED = 8
/** Most ids one DELETE_MANY holds (a flush slice is at most 2048; the rest is headroom). */
export const DELETE_MANY_MAX = 65536
/** The largest payload of any record: a FANOUT of 255 tubes of 255 bytes with the largest body. */
export const MAX_PAYLOAD = FANOUT_FIXED + 255 * 256 + BODY_MAX

export const RecordType = { FULL: 1, UPDATE: 2, DELETE: 3, TAGS: 4, TOMB: 5, POLICY: 16, FANOUT: 17, DELETE_MANY: 18 } as const
export type RecordType = (typeof RecordType)[keyof typeof RecordType]

/** Job states as stored; the same numbers as the queue's JobState (a test checks it). */
export const RecState = { READY: 1, RESERVED: 2, BURIED: 3, DELAYED: 4 } as const
export type RecState = (typeof RecState)[keyof typeof RecState]

export const HeaderFlag = {
  /** The file was written under -F: a damaged tail in it is a torn write even if it is not the last file. */
  NO_FSYNC: 1,
  /**
   * The file was filled with zeros before records went in (spare.ts): a
   * zero length where a record would start, with only zeros after it, is
   * its end. Only in files of PREALLOCATED_VERSION.
   */
  PREALLOCATED: 2,
} as const

export interface FileHeader {
  readonly version: number
  readonly index: number
  /** Every job id below this was handed out before the file was created. */
  readonly nextId: number
  readonly flags: number
}

/** The fields every FULL and UPDATE record carries; times are wall-clock ms. */
export interface JobFields {
  id: number
  state: RecState
  pri: number
  reserves: number
  timeouts: number
  releases: number
  buries: number
  kicks: number
  delayMs: number
  ttrMs: number
  createdAtWall: number
  /** Delayed: when the job becomes ready; otherwise 0. */
  readyAtWall: number
  /** Buried: position in bury order (larger = buried later); otherwise 0. */
  buryKey: number
}

export interface FullRecord extends JobFields {
  readonly type: typeof RecordType.FULL
  tube: string
  body: Buffer
}
export interface UpdateRecord extends JobFields {
  readonly type: typeof RecordType.UPDATE
}
export interface DeleteRecord {
  readonly type: typeof RecordType.DELETE
  id: number
}
export interface TagsRecord {
  readonly type: typeof RecordType.TAGS
  id: number
  tags: RecordTags
}
export interface TombRecord {
  readonly type: typeof RecordType.TOMB
  id: number
  tomb: RecordTomb
}
export interface FanoutRecord {
  readonly type: typeof RecordType.FANOUT
  /** The first copy's fields (the others differ only in id: first + i). */
  fields: JobFields
  tubes: string[]
  body: Buffer
}
export interface DeleteManyRecord {
  readonly type: typeof RecordType.DELETE_MANY
  ids: number[]
}
export interface PolicyRecord {
  readonly type: typeof RecordType.POLICY
  policy: RecordPolicy
}
export type BinlogRecord = FullRecord | UpdateRecord | DeleteRecord | TagsRecord | TombRecord | PolicyRecord | FanoutRecord | DeleteManyRecord

/** A POLICY record's content (zeros: the tube has no policy any more). */
export type RecordPolicy = RestoredPolicy

/** A TAGS record's content: the tags as the queue restores them. */
export type RecordTags = RestoredTags

/** A TOMB record's content: the key's cooldown, wall-clock ms. */
export interface RecordTomb {
  tube: string
  key: string
  ttlSecs: number
  expiresAtWall: number
}

/** TAGS: type, flags, 2 spare, id u64, idp ttl u32, con limit u32, four name lengths u8 (idp, grp, aft, con), then the names. */
const TAGS_FIXED = 24
/** TOMB: type, 0, tube length u8, key length u8, id u64, ttl u32, expiry u64, then tube and key. */
const TOMB_FIXED = 24
/**
 * POLICY: type, fan-out count u8, tube length u8, dead-letter length u8 (0:
 * none), max-retries u32, max-jobs u32, then the two names, then each
 * fan-out target as a length u8 and the name.
 */
const POLICY_FIXED = 12
const TagsFlag = { AFTER_DONE: 1 } as const
/** Longest key or group name (the protocol's limit is 200; a u8 holds it). */
const NAME_LEN_MAX = 255

const U32 = 0x1_0000_0000

function writeU64(b: Buffer, off: number, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`binlog: ${v} is not a u64 the format can hold`)
  b.writeUInt32LE(v >>> 0, off)
  b.writeUInt32LE(Math.floor(v / U32), off + 4)
}

/** A little-endian u32 without Buffer's range checks (callers check the record's bounds first). */
function u32At(b: Buffer, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16)) + b[off + 3]! * 0x1000000
}

function readU64(b: Buffer, off: number): number {
  return u32At(b, off + 4) * U32 + u32At(b, off)
}

/** Counters are u32 on the wire, as in the reference; they saturate rather than wrap. */
const u32 = (v: number): number => (v >= U32 ? U32 - 1 : v)

export function fullRecordSize(tubeLen: number, bodyLen: number): number {
  return FRAME_SIZE + FIXED_SIZE + tubeLen + bodyLen
}

// --- file header -------------------------------------------------------------

export function encodeHeader(h: FileHeader): Buffer {
  const b = Buffer.alloc(HEADER_SIZE)
  MAGIC.copy(b, 0)
  b.writeUInt32LE(h.version, 8)
  b.writeUInt32LE(HEADER_SIZE, 12)
  writeU64(b, 16, h.index)
  writeU64(b, 24, h.nextId)
  b.writeUInt32LE(h.flags, 32)
  b.writeUInt32LE(crc32(b.subarray(0, 36)), 36)
  return b
}

/** The header, or a description of what is wrong with it. */
export function decodeHeader(b: Buffer): FileHeader | string {
  if (b.length < HEADER_SIZE) return `file is ${b.length} bytes, shorter than the ${HEADER_SIZE}-byte header`
  if (!b.subarray(0, 8).equals(MAGIC)) return 'not a tsbeanstalkd binlog file (bad magic)'
  const version = b.readUInt32LE(8)
  if (b.readUInt32LE(36) !== crc32(b.subarray(0, 36))) return 'file header CRC mismatch'
  if (version !== FORMAT_VERSION && version !== PREALLOCATED_VERSION) {
    return `binlog format version ${version}; this build reads versions ${FORMAT_VERSION} and ${PREALLOCATED_VERSION} (was it written by a newer tsbeanstalkd?)`
  }
  if (b.readUInt32LE(12) !== HEADER_SIZE) return `header size ${b.readUInt32LE(12)}, expected ${HEADER_SIZE}`
  const flags = b.readUInt32LE(32)
  if ((version === PREALLOCATED_VERSION) !== ((flags & HeaderFlag.PREALLOCATED) !== 0)) {
    return `format version ${version} with flags ${flags}: only version ${PREALLOCATED_VERSION} files are preallocated`
  }
  return { version, index: readU64(b, 16), nextId: readU64(b, 24), flags }
}

// --- records -----------------------------------------------------------------

function writeFixed(b: Buffer, type: RecordType, f: JobFields, tubeLen: number, bodyLen: number): void {
  const p = FRAME_SIZE
  b[p] = type
  b[p + 1] = f.state
  b[p + 2] = tubeLen
  b[p + 3] = 0
  writeU64(b, p + 4, f.id)
  b.writeUInt32LE(f.pri, p + 12)
  b.writeUInt32LE(u32(f.reserves), p + 16)
  b.writeUInt32LE(u32(f.timeouts), p + 20)
  b.writeUInt32LE(u32(f.releases), p + 24)
  b.writeUInt32LE(u32(f.buries), p + 28)
  b.writeUInt32LE(u32(f.kicks), p + 32)
  b.writeUInt32LE(bodyLen, p + 36)
  writeU64(b, p + 40, f.delayMs)
  writeU64(b, p + 48, f.ttrMs)
  writeU64(b, p + 56, f.createdAtWall)
  writeU64(b, p + 64, f.readyAtWall)
  writeU64(b, p + 72, f.buryKey)
}

/** Fills in length and CRC; `rest` is payload that lives outside `head` (a body). */
function seal(head: Buffer, rest: Buffer | null): void {
  const payloadLen = head.length - FRAME_SIZE + (rest === null ? 0 : rest.length)
  head.writeUInt32LE(payloadLen, 0)
  let c = crc32Range(head, FRAME_SIZE, head.length, crc32Range(head, 0, 4))
  if (rest !== null && rest.length > 0) c = crc32Range(rest, 0, rest.length, c)
  head.writeUInt32LE(c, 4)
}

/**
 * A FULL record as two buffers, frame + fixed part + tube name, then the body
 * itself, which is not copied: write both with one writev.
 */
export function encodeFull(f: JobFields, tube: string, body: Buffer): [Buffer, Buffer] {
  const tubeLen = Buffer.byteLength(tube, 'latin1')
  if (tubeLen === 0 || tubeLen > TUBE_NAME_MAX) throw new RangeError(`binlog: tube name of ${tubeLen} bytes`)
  if (body.length > BODY_MAX) throw new RangeError(`binlog: body of ${body.length} bytes`)
  const head = Buffer.allocUnsafe(FRAME_SIZE + FIXED_SIZE + tubeLen)
  writeFixed(head, RecordType.FULL, f, tubeLen, body.length)
  head.write(tube, FRAME_SIZE + FIXED_SIZE, 'latin1')
  seal(head, body)
  return [head, body]
}

export function encodeUpdate(f: JobFields): Buffer {
  const b = Buffer.allocUnsafe(UPDATE_RECORD_SIZE)
  writeFixed(b, RecordType.UPDATE, f, 0, 0)
  seal(b, null)
  return b
}

const len8 = (s: string | null): number => {
  const n = s === null ? 0 : Buffer.byteLength(s, 'latin1')
  if (n > NAME_LEN_MAX) throw new RangeError(`binlog: a tag of ${n} bytes`)
  return n
}

export function tagsRecordSize(t: RecordTags): number {
  return FRAME_SIZE + TAGS_FIXED + len8(t.idpKey) + len8(t.group) + len8(t.after) + len8(t.conKey)
}

export function encodeTags(id: number, t: RecordTags): Buffer {
  const b = Buffer.allocUnsafe(tagsRecordSize(t))
  const p = FRAME_SIZE
  b[p] = RecordType.TAGS
  b[p + 1] = t.afterDone ? TagsFlag.AFTER_DONE : 0
  b[p + 2] = 0
  b[p + 3] = 0
  writeU64(b, p + 4, id)
  b.writeUInt32LE(t.idpTtl, p + 12)
  b.writeUInt32LE(t.conLimit, p + 16)
  let q = p + TAGS_FIXED
  const names = [t.idpKey, t.group, t.after, t.conKey]
  for (let i = 0; i < 4; i++) {
    const n = names[i] ?? null
    b[p + 20 + i] = len8(n)
    if (n !== null) q += b.write(n, q, 'latin1')
  }
  seal(b, null)
  return b
}

export function tombRecordSize(tube: string, key: string): number {
  return FRAME_SIZE + TOMB_FIXED + len8(tube) + len8(key)
}

export function encodeTomb(id: number, t: RecordTomb): Buffer {
  const b = Buffer.allocUnsafe(tombRecordSize(t.tube, t.key))
  const p = FRAME_SIZE
  b[p] = RecordType.TOMB
  b[p + 1] = 0
  b[p + 2] = len8(t.tube)
  b[p + 3] = len8(t.key)
  writeU64(b, p + 4, id)
  b.writeUInt32LE(t.ttlSecs, p + 12)
  writeU64(b, p + 16, t.expiresAtWall)
  const q = p + TOMB_FIXED + b.write(t.tube, p + TOMB_FIXED, 'latin1')
  b.write(t.key, q, 'latin1')
  seal(b, null)
  return b
}

export function policyRecordSize(p: RecordPolicy): number {
  let n = FRAME_SIZE + POLICY_FIXED + len8(p.tube) + len8(p.deadLetter)
  for (const t of p.fanOut) n += 1 + len8(t)
  return n
}

export function encodePolicy(p: RecordPolicy): Buffer {
  const b = Buffer.allocUnsafe(policyRecordSize(p))
  const q = FRAME_SIZE
  b[q] = RecordType.POLICY
  if (p.fanOut.length > 255) throw new RangeError(`binlog: ${p.fanOut.length} fan-out targets`)
  b[q + 1] = p.fanOut.length
  b[q + 2] = len8(p.tube)
  b[q + 3] = len8(p.deadLetter)
  b.writeUInt32LE(p.maxRetries, q + 4)
  b.writeUInt32LE(p.maxJobs, q + 8)
  let at = q + POLICY_FIXED + b.write(p.tube, q + POLICY_FIXED, 'latin1')
  if (p.deadLetter !== null) at += b.write(p.deadLetter, at, 'latin1')
  for (const t of p.fanOut) {
    b[at++] = len8(t)
    at += b.write(t, at, 'latin1')
  }
  seal(b, null)
  return b
}

/**
 * A FANOUT record as two buffers (the body not copied): the copies of one
 * put, ids `f.id` .. `f.id + tubes.length - 1`, all new (no counters).
 */
export function encodeFanout(f: JobFields, tubes: readonly string[], body: Buffer): [Buffer, Buffer] {
  if (tubes.length === 0 || tubes.length > 255) throw new RangeError(`binlog: a fan-out of ${tubes.length} tubes`)
  if (body.length > BODY_MAX) throw new RangeError(`binlog: body of ${body.length} bytes`)
  let names = 0
  for (const t of tubes) {
    const n = Buffer.byteLength(t, 'latin1')
    if (n === 0 || n > TUBE_NAME_MAX) throw new RangeError(`binlog: tube name of ${n} bytes`)
    names += 1 + n
  }
  const head = Buffer.allocUnsafe(FRAME_SIZE + FANOUT_FIXED + names)
  const p = FRAME_SIZE
  head[p] = RecordType.FANOUT
  head[p + 1] = f.state
  head[p + 2] = tubes.length
  head[p + 3] = 0
  writeU64(head, p + 4, f.id)
  head.writeUInt32LE(f.pri, p + 12)
  head.writeUInt32LE(body.length, p + 16)
  writeU64(head, p + 20, f.delayMs)
  writeU64(head, p + 28, f.ttrMs)
  writeU64(head, p + 36, f.createdAtWall)
  writeU64(head, p + 44, f.readyAtWall)
  let at = p + FANOUT_FIXED
  for (const t of tubes) {
    head[at] = Buffer.byteLength(t, 'latin1')
    at += 1 + head.write(t, at + 1, 'latin1')
  }
  seal(head, body)
  return [head, body]
}

/** The payload length a FANOUT record's own lengths add up to (walking its names within `len`), or -1. */
function fanoutLength(b: Buffer, p: number, len: number): number {
  let n = FANOUT_FIXED
  for (let k = b[p + 2]!; k > 0; k--) {
    if (n >= len) return -1
    n += 1 + b[p + n]!
  }
  return n + b.readUInt32LE(p + 16)
}

export function encodeDelete(id: number): Buffer {
  const b = Buffer.alloc(DELETE_RECORD_SIZE)
  b[FRAME_SIZE] = RecordType.DELETE
  writeU64(b, FRAME_SIZE + 4, id)
  seal(b, null)
  return b
}

export function deleteManyRecordSize(count: number): number {
  return FRAME_SIZE + DELETE_MANY_FIXED + 8 * count
}

/** A DELETE_MANY record: the ids of one flush slice, all deleted or (torn) none. */
export function encodeDeleteMany(ids: readonly number[]): Buffer {
  if (ids.length === 0 || ids.length > DELETE_MANY_MAX) throw new RangeError(`binlog: a DELETE_MANY of ${ids.length} ids`)
  const b = Buffer.allocUnsafe(deleteManyRecordSize(ids.length))
  const p = FRAME_SIZE
  b[p] = RecordType.DELETE_MANY
  b[p + 1] = 0
  b[p + 2] = 0
  b[p + 3] = 0
  b.writeUInt32LE(ids.length, p + 4)
  let at = p + DELETE_MANY_FIXED
  for (const id of ids) {
    if (id === 0) throw new RangeError('binlog: a DELETE_MANY of job id 0')
    writeU64(b, at, id)
    at += 8
  }
  seal(b, null)
  return b
}

/** The `i`th id of the DELETE_MANY record `s` describes (decodeInto), in the buffer it was decoded from. */
export function deleteManyId(b: Buffer, s: RecordScratch, i: number): number {
  return readU64(b, s.idsStart + 8 * i)
}

export type Decoded =
  | { readonly ok: true; readonly record: BinlogRecord; readonly size: number }
  /**
   * `torn`: short, implausible length or CRC mismatch: what a crash mid-write
   * leaves behind. `invalid`: the CRC matches but the content is impossible.
   */
  | { readonly ok: false; readonly kind: 'torn' | 'invalid'; readonly detail: string }

const torn = (detail: string): Decoded => ({ ok: false, kind: 'torn', detail })
const invalid = (detail: string): Decoded => ({ ok: false, kind: 'invalid', detail })

/** The payload length a frame at `off` announces, if it could be a real record (no CRC check). */
function plausibleLength(b: Buffer, off: number): number {
  if (b.length - off < FRAME_SIZE + DELETE_SIZE) return -1
  const len = b.readUInt32LE(off)
  if (len < DELETE_SIZE || len > MAX_PAYLOAD) return -1
  if (off + FRAME_SIZE + len > b.length) return -1
  return len
}

/** Shape check before the CRC: type byte and lengths agree. Cheap; used by the resync scan. */
function shapeOk(b: Buffer, off: number, len: number): boolean {
  const p = off + FRAME_SIZE
  switch (b[p]) {
    case RecordType.DELETE:
      return len === DELETE_SIZE
    case RecordType.UPDATE:
      return len === FIXED_SIZE
    case RecordType.FULL:
      return len >= FIXED_SIZE && len === FIXED_SIZE + b[p + 2]! + b.readUInt32LE(p + 36)
    case RecordType.TAGS:
      return len >= TAGS_FIXED && len === TAGS_FIXED + b[p + 20]! + b[p + 21]! + b[p + 22]! + b[p + 23]!
    case RecordType.TOMB:
      return len >= TOMB_FIXED && len === TOMB_FIXED + b[p + 2]! + b[p + 3]!
    case RecordType.POLICY:
      return len >= POLICY_FIXED && policyLength(b, p, len) === len
    case RecordType.FANOUT:
      return len >= FANOUT_FIXED && b[p + 2]! > 0 && fanoutLength(b, p, len) === len
    case RecordType.DELETE_MANY: {
      const n = b.readUInt32LE(p + 4)
      return n > 0 && n <= DELETE_MANY_MAX && len === DELETE_MANY_FIXED + 8 * n
    }
    default:
      return false
  }
}

function crcOk(b: Buffer, off: number, len: number): boolean {
  const c = crc32Range(b, off + FRAME_SIZE, off + FRAME_SIZE + len, crc32Range(b, off, off + 4))
  return c === b.readUInt32LE(off + 4)
}

/** Reads a record's fixed fields into `f`. */
function readFieldsInto(b: Buffer, p: number, f: JobFields): void {
  f.id = readU64(b, p + 4)
  f.state = b[p + 1]! as RecState
  f.pri = u32At(b, p + 12)
  f.reserves = u32At(b, p + 16)
  f.timeouts = u32At(b, p + 20)
  f.releases = u32At(b, p + 24)
  f.buries = u32At(b, p + 28)
  f.kicks = u32At(b, p + 32)
  f.delayMs = readU64(b, p + 40)
  f.ttrMs = readU64(b, p + 48)
  f.createdAtWall = readU64(b, p + 56)
  f.readyAtWall = readU64(b, p + 64)
  f.buryKey = readU64(b, p + 72)
}

/**
 * What `decodeInto` fills in: one object, reused for every record of a
 * replay, so decoding allocates nothing. A FULL record's tube name and body
 * stay where they are, as offsets into the buffer decoded.
 */
export class RecordScratch {
  type: RecordType = RecordType.DELETE
  /** FULL and UPDATE: the job's fields; DELETE: only `id`. */
  readonly fields: JobFields = {
    id: 0,
    state: RecState.READY,
    pri: 0,
    reserves: 0,
    timeouts: 0,
    releases: 0,
    buries: 0,
    kicks: 0,
    delayMs: 0,
    ttrMs: 0,
    createdAtWall: 0,
    readyAtWall: 0,
    buryKey: 0,
  }
  tubeStart = 0
  tubeLen = 0
  bodyStart = 0
  bodyLen = 0
  /** TAGS: the tags (a new object per record: tagged jobs are the rare ones). */
  tags: RecordTags | null = null
  /** TOMB: the cooldown. */
  tomb: RecordTomb | null = null
  /** POLICY: the tube policy. */
  policy: RecordPolicy | null = null
  /** FANOUT: the copies' tubes, each `[start, length)` in the buffer decoded (fields.id is the first copy's id). */
  fanTubes: number[] = []
  /** DELETE_MANY: where its ids begin in the buffer decoded, and how many (deleteManyId reads them). */
  idsStart = 0
  idsCount = 0
  /** After a failed decode: what kind of damage (see Decoded) and what it is. */
  kind: 'torn' | 'invalid' = 'torn'
  detail = ''
}

const fail = (s: RecordScratch, kind: 'torn' | 'invalid', detail: string): number => {
  s.kind = kind
  s.detail = detail
  return 0
}

/**
 * Decodes the record at `off` of `b[0, end)` into `s`. Returns its size, or 0
 * when it is damaged (`s.kind`, `s.detail`). Allocates nothing but the two
 * views the CRC needs.
 */
export function decodeInto(b: Buffer, off: number, end: number, s: RecordScratch): number {
  const left = end - off
  if (left < FRAME_SIZE) return fail(s, 'torn', `${left} bytes left, less than a record frame`)
  const len = b.readUInt32LE(off)
  if (len < DELETE_SIZE || len > MAX_PAYLOAD) return fail(s, 'torn', `implausible record length ${len}`)
  if (len > left - FRAME_SIZE) return fail(s, 'torn', `record of ${len} bytes runs past the end of the file`)
  if (!crcOk(b, off, len)) return fail(s, 'torn', `CRC mismatch in a record of ${len} bytes`)
  const p = off + FRAME_SIZE
  const size = FRAME_SIZE + len
  const type = b[p]!
  const f = s.fields
  if (type === RecordType.DELETE) {
    if (len !== DELETE_SIZE) return fail(s, 'invalid', `DELETE record of ${len} bytes`)
    f.id = readU64(b, p + 4)
    if (f.id === 0) return fail(s, 'invalid', 'record for job id 0')
    s.type = RecordType.DELETE
    return size
  }
  if (type === RecordType.TAGS || type === RecordType.TOMB) return decodeExtension(b, p, len, size, s)
  if (type === RecordType.POLICY) return decodePolicy(b, p, len, size, s)
  if (type === RecordType.FANOUT) return decodeFanout(b, p, len, size, s)
  if (type === RecordType.DELETE_MANY) return decodeDeleteMany(b, p, len, size, s)
  if (type !== RecordType.FULL && type !== RecordType.UPDATE) return fail(s, 'invalid', `unknown record type ${type}`)
  const state = b[p + 1]!
  if (state < RecState.READY || state > RecState.DELAYED) return fail(s, 'invalid', `unknown job state ${state}`)
  readFieldsInto(b, p, f)
  if (f.id === 0) return fail(s, 'invalid', 'record for job id 0')
  if (type === RecordType.UPDATE) {
    if (len !== FIXED_SIZE) return fail(s, 'invalid', `UPDATE record of ${len} bytes`)
    s.type = RecordType.UPDATE
    return size
  }
  const tubeLen = b[p + 2]!
  const bodyLen = b.readUInt32LE(p + 36)
  if (tubeLen === 0) return fail(s, 'invalid', 'FULL record with an empty tube name')
  if (len !== FIXED_SIZE + tubeLen + bodyLen) return fail(s, 'invalid', `FULL record of ${len} bytes announces a ${bodyLen}-byte body`)
  s.type = RecordType.FULL
  s.tubeStart = p + FIXED_SIZE
  s.tubeLen = tubeLen
  s.bodyStart = s.tubeStart + tubeLen
  s.bodyLen = bodyLen
  return size
}

/** The names of a TAGS or TOMB record whose frame and CRC are right: `p` is its payload. */
function decodeExtension(b: Buffer, p: number, len: number, size: number, s: RecordScratch): number {
  const type = b[p]!
  s.fields.id = readU64(b, p + 4)
  if (s.fields.id === 0) return fail(s, 'invalid', 'record for job id 0')
  const name = (from: number, n: number): string | null => (n === 0 ? null : b.toString('latin1', from, from + n))
  if (type === RecordType.TAGS) {
    const lens = [b[p + 20]!, b[p + 21]!, b[p + 22]!, b[p + 23]!]
    if (len !== TAGS_FIXED + lens[0]! + lens[1]! + lens[2]! + lens[3]!) return fail(s, 'invalid', `TAGS record of ${len} bytes`)
    let q = p + TAGS_FIXED
    const names = lens.map((n) => {
      const v = name(q, n)
      q += n
      return v
    })
    s.tags = {
      idpKey: names[0]!,
      idpTtl: u32At(b, p + 12),
      group: names[1]!,
      after: names[2]!,
      afterDone: (b[p + 1]! & TagsFlag.AFTER_DONE) !== 0,
      conKey: names[3]!,
      conLimit: u32At(b, p + 16),
    }
    s.type = RecordType.TAGS
    return size
  }
  const tubeLen = b[p + 2]!
  const keyLen = b[p + 3]!
  if (tubeLen === 0 || keyLen === 0 || len !== TOMB_FIXED + tubeLen + keyLen) return fail(s, 'invalid', `TOMB record of ${len} bytes`)
  s.tomb = {
    tube: b.toString('latin1', p + TOMB_FIXED, p + TOMB_FIXED + tubeLen),
    key: b.toString('latin1', p + TOMB_FIXED + tubeLen, p + TOMB_FIXED + tubeLen + keyLen),
    ttlSecs: u32At(b, p + 12),
    expiresAtWall: readU64(b, p + 16),
  }
  s.type = RecordType.TOMB
  return size
}

/** The payload length a POLICY record's own lengths add up to (walking its fan-out names within `len`), or -1. */
function policyLength(b: Buffer, p: number, len: number): number {
  let n = POLICY_FIXED + b[p + 2]! + b[p + 3]!
  for (let k = b[p + 1]!; k > 0; k--) {
    if (n >= len) return -1
    n += 1 + b[p + n]!
  }
  return n
}

function decodeFanout(b: Buffer, p: number, len: number, size: number, s: RecordScratch): number {
  const state = b[p + 1]!
  if (state !== RecState.READY && state !== RecState.DELAYED) return fail(s, 'invalid', `FANOUT record in state ${state}`)
  if (b[p + 2] === 0 || fanoutLength(b, p, len) !== len) return fail(s, 'invalid', `FANOUT record of ${len} bytes`)
  const f = s.fields
  f.id = readU64(b, p + 4)
  if (f.id === 0) return fail(s, 'invalid', 'record for job id 0')
  f.state = state as RecState
  f.pri = u32At(b, p + 12)
  f.reserves = f.timeouts = f.releases = f.buries = f.kicks = 0
  f.delayMs = readU64(b, p + 20)
  f.ttrMs = readU64(b, p + 28)
  f.createdAtWall = readU64(b, p + 36)
  f.readyAtWall = readU64(b, p + 44)
  f.buryKey = 0
  const t = s.fanTubes
  t.length = 0
  let at = p + FANOUT_FIXED
  for (let k = b[p + 2]!; k > 0; k--) {
    const n = b[at]!
    if (n === 0) return fail(s, 'invalid', 'FANOUT record with an empty tube name')
    t.push(at + 1, n)
    at += 1 + n
  }
  s.bodyStart = at
  s.bodyLen = b.readUInt32LE(p + 16)
  s.type = RecordType.FANOUT
  return size
}

function decodeDeleteMany(b: Buffer, p: number, len: number, size: number, s: RecordScratch): number {
  if (len < DELETE_MANY_FIXED + 8) return fail(s, 'invalid', `DELETE_MANY record of ${len} bytes`)
  const n = u32At(b, p + 4)
  if (n === 0 || n > DELETE_MANY_MAX || len !== DELETE_MANY_FIXED + 8 * n) return fail(s, 'invalid', `DELETE_MANY record of ${len} bytes announces ${n} ids`)
  s.idsStart = p + DELETE_MANY_FIXED
  s.idsCount = n
  for (let i = 0; i < n; i++) if (deleteManyId(b, s, i) === 0) return fail(s, 'invalid', 'record for job id 0')
  s.type = RecordType.DELETE_MANY
  return size
}

function decodePolicy(b: Buffer, p: number, len: number, size: number, s: RecordScratch): number {
  const tubeLen = b[p + 2]!
  const dlLen = b[p + 3]!
  if (tubeLen === 0 || policyLength(b, p, len) !== len) return fail(s, 'invalid', `POLICY record of ${len} bytes`)
  const from = p + POLICY_FIXED
  const fanOut: string[] = []
  let at = from + tubeLen + dlLen
  for (let k = b[p + 1]!; k > 0; k--) {
    const n = b[at]!
    fanOut.push(b.toString('latin1', at + 1, at + 1 + n))
    at += 1 + n
  }
  s.policy = {
    tube: b.toString('latin1', from, from + tubeLen),
    maxRetries: u32At(b, p + 4),
    deadLetter: dlLen === 0 ? null : b.toString('latin1', from + tubeLen, from + tubeLen + dlLen),
    maxJobs: u32At(b, p + 8),
    fanOut,
  }
  s.type = RecordType.POLICY
  return size
}

/**
 * Decodes the record at `off` into a record object of its own, the body
 * copied out so the file buffer can be dropped (tools and tests; replay
 * uses decodeInto).
 */
export function decodeRecord(b: Buffer, off: number): Decoded {
  const s = new RecordScratch()
  const size = decodeInto(b, off, b.length, s)
  if (size === 0) return { ok: false, kind: s.kind, detail: s.detail }
  if (s.type === RecordType.DELETE) return { ok: true, record: { type: RecordType.DELETE, id: s.fields.id }, size }
  if (s.type === RecordType.UPDATE) return { ok: true, record: { type: RecordType.UPDATE, ...s.fields }, size }
  if (s.type === RecordType.TAGS) return { ok: true, record: { type: RecordType.TAGS, id: s.fields.id, tags: s.tags! }, size }
  if (s.type === RecordType.TOMB) return { ok: true, record: { type: RecordType.TOMB, id: s.fields.id, tomb: s.tomb! }, size }
  if (s.type === RecordType.POLICY) return { ok: true, record: { type: RecordType.POLICY, policy: s.policy! }, size }
  if (s.type === RecordType.DELETE_MANY) {
    const ids: number[] = []
    for (let i = 0; i < s.idsCount; i++) ids.push(deleteManyId(b, s, i))
    return { ok: true, record: { type: RecordType.DELETE_MANY, ids }, size }
  }
  if (s.type === RecordType.FANOUT) {
    const tubes: string[] = []
    for (let i = 0; i < s.fanTubes.length; i += 2) tubes.push(b.toString('latin1', s.fanTubes[i]!, s.fanTubes[i]! + s.fanTubes[i + 1]!))
    const body = Buffer.from(b.subarray(s.bodyStart, s.bodyStart + s.bodyLen))
    return { ok: true, record: { type: RecordType.FANOUT, fields: { ...s.fields }, tubes, body }, size }
  }
  const tube = b.toString('latin1', s.tubeStart, s.tubeStart + s.tubeLen)
  const body = Buffer.allocUnsafeSlow(s.bodyLen)
  b.copy(body, 0, s.bodyStart, s.bodyStart + s.bodyLen)
  return { ok: true, record: { type: RecordType.FULL, ...s.fields, tube, body }, size }
}

/**
 * The offset of the first intact record (right shape, right CRC) at or after
 * `from`, or -1. Lets replay tell a torn tail (nothing intact after the damage)
 * from damage in the middle. Linear in the bytes scanned: the shape check
 * rejects almost every offset before any CRC is computed.
 */
export function findIntactRecord(b: Buffer, from: number): number {
  for (let off = from; off + FRAME_SIZE + DELETE_SIZE <= b.length; off++) {
    const len = plausibleLength(b, off)
    if (len >= 0 && shapeOk(b, off, len) && crcOk(b, off, len)) return off
  }
  return -1
}

/**
 * The reference's binlog format (beanstalkd 1.10-1.13 version 7, and the
 * version 5 of 1.4.x-1.9 it still reads), pure: decode and encode the fixed
 * parts. No I/O. Layout from dat.h / file.c, x86-64 natural alignment, native
 * (little) endian; REFERENCE.md 2.12 has the table.
 *
 * Invariants:
 * - A file is a 4-byte int version, then records. A record is a name length
 *   (v7: int32; v5: size_t, 8 bytes), that many bytes of tube name, the job
 *   record (v7: 80 bytes; v5: 77), and, when the name length is not 0 (a
 *   *full* record), the body (body_size bytes, CRLF included).
 * - Times are int64 nanoseconds in v7 and microseconds in v5; decoding
 *   converts both to milliseconds (wall clock for created/deadline).
 * - Decoding never trusts a field: lengths and states are checked by the
 *   reader (reader.ts) before anything is allocated.
 */

export const WALVER = 7
export const WALVER5 = 5
/** The reference's MAX_TUBE_NAME_LEN (200 characters plus its NUL): a name length >= this is damage. */
export const MAX_TUBE_NAME_LEN = 201
export const JOBREC_SIZE = 80
/** offsetof(Jobrec5, pad): the v5 record is 77 bytes. */
export const JOBREC5_SIZE = 77
/** A short (update) record in v7: name length 0 + job record. */
export const SHORT_RECORD_SIZE = 4 + JOBREC_SIZE

/** Jobrec.state. */
export const RefState = { INVALID: 0, READY: 1, RESERVED: 2, BURIED: 3, DELAYED: 4 } as const
export type RefState = (typeof RefState)[keyof typeof RefState]

export interface RefJobRec {
  id: number
  pri: number
  /** ms */
  delayMs: number
  /** ms */
  ttrMs: number
  /** Body bytes, CRLF included (int32: may be negative in a damaged record). */
  bodySize: number
  /** Wall-clock ms since the epoch. */
  createdAtWall: number
  /** Delayed: when it becomes ready; reserved: the TTR deadline; wall-clock ms. */
  deadlineWall: number
  reserves: number
  timeouts: number
  releases: number
  buries: number
  kicks: number
  state: number
}

/** Job ids above 2^53 cannot be held exactly; the reader reports them. */
export const MAX_SAFE_ID = BigInt(Number.MAX_SAFE_INTEGER)

const NS_PER_MS = 1_000_000n
const US_PER_MS = 1_000n

/** int64 time units -> ms, rounded toward zero (a negative value stays negative for the reader to reject). */
function toMs(v: bigint, perMs: bigint): number {
  return Number(v / perMs)
}

/**
 * Decodes a job record from `b` at `off`: v7 (80 bytes, signed nanoseconds)
 * or v5 (77 bytes, unsigned microseconds). The id is returned as bigint too.
 */
export function decodeJobrec(b: Buffer, off: number, v5 = false): { rec: RefJobRec; id: bigint } {
  const id = b.readBigUInt64LE(off)
  const time = (at: number): number => (v5 ? toMs(b.readBigUInt64LE(off + at), US_PER_MS) : toMs(b.readBigInt64LE(off + at), NS_PER_MS))
  return {
    id,
    rec: {
      id: Number(id),
      pri: b.readUInt32LE(off + 8),
      delayMs: time(16),
      ttrMs: time(24),
      bodySize: b.readInt32LE(off + 32),
      createdAtWall: time(40),
      deadlineWall: time(48),
      reserves: b.readUInt32LE(off + 56),
      timeouts: b.readUInt32LE(off + 60),
      releases: b.readUInt32LE(off + 64),
      buries: b.readUInt32LE(off + 68),
      kicks: b.readUInt32LE(off + 72),
      state: b[off + 76]!,
    },
  }
}

const msToNs = (ms: number): bigint => BigInt(Math.round(ms)) * NS_PER_MS

/** Encodes a v7 job record (padding zeroed, as the reference's zero-initialised jobs have it). */
export function encodeJobrec(r: RefJobRec): Buffer {
  const b = Buffer.alloc(JOBREC_SIZE)
  b.writeBigUInt64LE(BigInt(r.id), 0)
  b.writeUInt32LE(r.pri, 8)
  b.writeBigInt64LE(msToNs(r.delayMs), 16)
  b.writeBigInt64LE(msToNs(r.ttrMs), 24)
  b.writeInt32LE(r.bodySize, 32)
  b.writeBigInt64LE(msToNs(r.createdAtWall), 40)
  b.writeBigInt64LE(msToNs(r.deadlineWall), 48)
  b.writeUInt32LE(r.reserves, 56)
  b.writeUInt32LE(r.timeouts, 60)
  b.writeUInt32LE(r.releases, 64)
  b.writeUInt32LE(r.buries, 68)
  b.writeUInt32LE(r.kicks, 72)
  b[76] = r.state
  return b
}

/** The protocol's tube-name characters (protocol.txt "Tubes"); a name that breaks them is damage. */
const NAME_CHAR = /^[A-Za-z0-9\-+/;.$_()]+$/
export function validTubeName(name: string): boolean {
  return name.length > 0 && name.length < MAX_TUBE_NAME_LEN && name[0] !== '-' && NAME_CHAR.test(name)
}

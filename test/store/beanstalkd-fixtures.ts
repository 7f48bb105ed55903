/**
 * Builds reference binlog files byte by byte (version 7, and version 5 with
 * its size_t name length, 77-byte record and microsecond times), for the
 * reader's tests. The layout is file.c's; the real-binary tests check it
 * against what beanstalkd itself writes.
 */
import fs from 'node:fs'
import path from 'node:path'
import { RefState, encodeJobrec, type RefJobRec } from '../../src/store/beanstalkd/format.js'

export interface Rec extends Partial<RefJobRec> {
  readonly id: number
  /** A full record (tube + body) when set. */
  readonly tube?: string
  readonly body?: string | Buffer
}

export const NOW = 1_700_000_000_000

function fields(r: Rec, bodySize: number): RefJobRec {
  return {
    pri: 10,
    delayMs: 0,
    ttrMs: 60_000,
    createdAtWall: NOW,
    deadlineWall: 0,
    reserves: 0,
    timeouts: 0,
    releases: 0,
    buries: 0,
    kicks: 0,
    state: RefState.READY,
    ...r,
    bodySize: r.bodySize ?? bodySize,
  }
}

const bodyOf = (r: Rec): Buffer => (r.body === undefined ? Buffer.from('') : Buffer.isBuffer(r.body) ? r.body : Buffer.from(`${r.body}\r\n`, 'latin1'))

/** One v7 record: full when `tube` is given, else short. */
export function rec7(r: Rec): Buffer {
  const name = Buffer.from(r.tube ?? '', 'latin1')
  const body = r.tube === undefined ? Buffer.alloc(0) : bodyOf(r)
  const len = Buffer.alloc(4)
  len.writeInt32LE(name.length, 0)
  return Buffer.concat([len, name, encodeJobrec(fields(r, body.length)), body])
}

/** One v5 record (8-byte name length, 77-byte record, times in microseconds). */
export function rec5(r: Rec): Buffer {
  const name = Buffer.from(r.tube ?? '', 'latin1')
  const body = r.tube === undefined ? Buffer.alloc(0) : bodyOf(r)
  const f = fields(r, body.length)
  const b = Buffer.alloc(77)
  b.writeBigUInt64LE(BigInt(f.id), 0)
  b.writeUInt32LE(f.pri, 8)
  b.writeBigUInt64LE(BigInt(f.delayMs) * 1000n, 16)
  b.writeBigUInt64LE(BigInt(f.ttrMs) * 1000n, 24)
  b.writeInt32LE(f.bodySize, 32)
  b.writeBigUInt64LE(BigInt(f.createdAtWall) * 1000n, 40)
  b.writeBigUInt64LE(BigInt(f.deadlineWall) * 1000n, 48)
  b.writeUInt32LE(f.reserves, 56)
  b.writeUInt32LE(f.timeouts, 60)
  b.writeUInt32LE(f.releases, 64)
  b.writeUInt32LE(f.buries, 68)
  b.writeUInt32LE(f.kicks, 72)
  b[76] = f.state
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(name.length), 0)
  return Buffer.concat([len, name, b, body])
}

export function version(v: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32LE(v, 0)
  return b
}

/** A v7 file: version, records, then `zeroTail` bytes of zeros (preallocation). */
export function file7(records: readonly Rec[], zeroTail = 0): Buffer {
  return Buffer.concat([version(7), ...records.map(rec7), Buffer.alloc(zeroTail)])
}

export function writeFiles(dir: string, files: Record<string, Buffer>): void {
  for (const [name, b] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), b, { mode: 0o400 })
}

/**
 * The record format on its own: every body size the reference gets wrong,
 * binary bytes, the header, and how the decoder classifies damage.
 */
import { describe, expect, it } from 'vitest'
import {
  DELETE_RECORD_SIZE,
  HEADER_SIZE,
  RecState,
  RecordType,
  UPDATE_RECORD_SIZE,
  decodeHeader,
  decodeRecord,
  deleteManyRecordSize,
  encodeDelete,
  encodeDeleteMany,
  encodeFull,
  encodeHeader,
  encodeFanout,
  encodePolicy,
  encodeTags,
  encodeTomb,
  encodeUpdate,
  findIntactRecord,
  fullRecordSize,
  type JobFields,
} from '../../src/store/binlog/record.js'
import type { JobView } from '../../src/store/binlog/binlog.js'
import { crc32Range } from '../../src/store/binlog/crc.js'

const FRAME = 8
import { JobState, type Job } from '../../src/queue/job.js'

/** Compile-time: the queue's Job is a JobView, so the registry can pass its jobs as they are. */
export const jobIsAView = (j: Job): JobView => j

const fields = (over: Partial<JobFields> = {}): JobFields => ({
  id: 42,
  state: RecState.DELAYED,
  pri: 4294967295,
  reserves: 1,
  timeouts: 2,
  releases: 3,
  buries: 4,
  kicks: 5,
  delayMs: 4294967295 * 1000,
  ttrMs: 120_000,
  createdAtWall: 1_700_000_000_123,
  readyAtWall: 1_700_000_999_999,
  buryKey: 0,
  ...over,
})

const bytes = (parts: Buffer[]): Buffer => Buffer.concat(parts)

describe('record round trip', () => {
  it.each([0, 2, 65534, 65535, 65536, 1 << 20])('FULL record with a %i-byte body', (n) => {
    const body = Buffer.alloc(n)
    for (let i = 0; i < n; i++) body[i] = (i * 131 + 7) & 0xff // every byte value, CR and LF included
    const tube = 'a-tube_with+odd;chars$()'
    const enc = bytes(encodeFull(fields({ id: 2 ** 53 - 1 }), tube, body))
    expect(enc.length).toBe(fullRecordSize(tube.length, n))
    const d = decodeRecord(enc, 0)
    expect(d.ok).toBe(true)
    if (!d.ok) return
    expect(d.size).toBe(enc.length)
    if (d.record.type !== RecordType.FULL) throw new Error('not FULL')
    const { body: got, ...rest } = d.record
    expect(rest).toEqual({ type: RecordType.FULL, ...fields({ id: 2 ** 53 - 1 }), tube })
    expect(got.equals(body)).toBe(true) // Buffer.equals: toEqual walks a MiB byte by byte
  })

  it('UPDATE and DELETE records', () => {
    const u = encodeUpdate(fields({ state: RecState.BURIED, buryKey: 77, readyAtWall: 0 }))
    expect(u.length).toBe(UPDATE_RECORD_SIZE)
    expect(decodeRecord(u, 0)).toEqual({
      ok: true,
      size: UPDATE_RECORD_SIZE,
      record: { type: RecordType.UPDATE, ...fields({ state: RecState.BURIED, buryKey: 77, readyAtWall: 0 }) },
    })
    const del = encodeDelete(2 ** 40 + 3)
    expect(del.length).toBe(DELETE_RECORD_SIZE)
    expect(decodeRecord(del, 0)).toEqual({ ok: true, size: DELETE_RECORD_SIZE, record: { type: RecordType.DELETE, id: 2 ** 40 + 3 } })
  })

  it('decodes a record in the middle of a buffer and copies its body out', () => {
    const body = Buffer.from('hello\r\n')
    const buf = Buffer.concat([encodeDelete(1), ...encodeFull(fields(), 'default', body), encodeDelete(2)])
    const d = decodeRecord(buf, DELETE_RECORD_SIZE)
    expect(d.ok && d.record.type === RecordType.FULL && d.record.body.buffer !== buf.buffer).toBe(true)
  })

  it('saturates counters at u32 max instead of wrapping', () => {
    const d = decodeRecord(encodeUpdate(fields({ kicks: 2 ** 32 + 5 })), 0)
    expect(d.ok && d.record.type === RecordType.UPDATE && d.record.kicks).toBe(2 ** 32 - 1)
  })

  it('stores states with the queue numbers', () => {
    expect(RecState).toEqual({ READY: JobState.READY, RESERVED: JobState.RESERVED, BURIED: JobState.BURIED, DELAYED: JobState.DELAYED })
  })
})

describe('file header', () => {
  it('round-trips and rejects damage', () => {
    const h = encodeHeader({ version: 1, index: 12, nextId: 2 ** 50, flags: 1 })
    expect(h.length).toBe(HEADER_SIZE)
    expect(decodeHeader(h)).toEqual({ version: 1, index: 12, nextId: 2 ** 50, flags: 1 })
    for (let i = 0; i < HEADER_SIZE; i++) {
      const bad = Buffer.from(h)
      bad[i]! ^= 0x10
      expect(typeof decodeHeader(bad)).toBe('string')
    }
    expect(decodeHeader(h.subarray(0, 39))).toMatch(/shorter/)
  })

  it('names a newer format version', () => {
    const h = encodeHeader({ version: 3, index: 1, nextId: 1, flags: 0 })
    expect(decodeHeader(h)).toMatch(/version 3.*newer/)
  })
})

describe('damage classification', () => {
  const rec = bytes(encodeFull(fields(), 'default', Buffer.from('some body\r\n')))

  it('every truncation is torn', () => {
    for (let n = 0; n < rec.length; n++) {
      const d = decodeRecord(rec.subarray(0, n), 0)
      expect(d.ok).toBe(false)
      if (!d.ok) expect(d.kind).toBe('torn')
    }
  })

  it('every flipped bit is caught', () => {
    for (let i = 0; i < rec.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Buffer.from(rec)
        bad[i]! ^= 1 << bit
        expect(decodeRecord(bad, 0).ok).toBe(false)
      }
    }
  })

  it('a CRC-valid record with impossible content is invalid, not torn', () => {
    const u = encodeUpdate(fields({ state: 9 as RecState }))
    expect(decodeRecord(u, 0)).toMatchObject({ ok: false, kind: 'invalid' })
  })

  it('finds the next intact record after garbage, and none in zeros', () => {
    const garbage = Buffer.alloc(37, 0xab)
    const buf = Buffer.concat([garbage, rec])
    expect(findIntactRecord(buf, 0)).toBe(37)
    expect(findIntactRecord(Buffer.concat([garbage, rec.subarray(0, rec.length - 1)]), 0)).toBe(-1)
    expect(findIntactRecord(Buffer.alloc(4096), 0)).toBe(-1)
  })
})

describe('extension records (--extensions)', () => {
  it('TAGS and TOMB round-trip, are found by the resync scan, and a flipped byte is torn', () => {
    const tags = { idpKey: 'k'.repeat(200), idpTtl: 4294967295, group: 'g', after: 'a', afterDone: true, conKey: 'c', conLimit: 7 }
    const t = encodeTags(9, tags)
    expect(decodeRecord(t, 0)).toEqual({ ok: true, record: { type: RecordType.TAGS, id: 9, tags }, size: t.length })
    const none = { idpKey: null, idpTtl: 0, group: null, after: null, afterDone: false, conKey: 'c', conLimit: 1 }
    expect(decodeRecord(encodeTags(10, none), 0)).toMatchObject({ ok: true, record: { tags: none } })
    const tomb = { tube: 'emails', key: 'report', ttlSecs: 300, expiresAtWall: 1_800_000_000_000 }
    const b = encodeTomb(11, tomb)
    expect(decodeRecord(b, 0)).toEqual({ ok: true, record: { type: RecordType.TOMB, id: 11, tomb }, size: b.length })
    const both = Buffer.concat([Buffer.alloc(5), t, b])
    expect(findIntactRecord(both, 0)).toBe(5)
    expect(findIntactRecord(both, 6)).toBe(5 + t.length)
    for (const rec of [t, b]) {
      const bad = Buffer.from(rec)
      bad[rec.length - 1]! ^= 1
      expect(decodeRecord(bad, 0)).toMatchObject({ ok: false, kind: 'torn' })
    }
  })

  it('POLICY round-trips (with and without a dead-letter tube), is found by the resync scan, and a flipped byte is torn', () => {
    const p = { tube: 't'.repeat(200), maxRetries: 4294967295, deadLetter: 'dlq', maxJobs: 10, fanOut: ['a', 'b'.repeat(200), 'c'] }
    const a = encodePolicy(p)
    expect(decodeRecord(a, 0)).toEqual({ ok: true, record: { type: RecordType.POLICY, policy: p }, size: a.length })
    const cleared = { tube: 'x', maxRetries: 0, deadLetter: null, maxJobs: 0, fanOut: [] }
    const b = encodePolicy(cleared)
    expect(decodeRecord(b, 0)).toEqual({ ok: true, record: { type: RecordType.POLICY, policy: cleared }, size: b.length })
    const both = Buffer.concat([Buffer.alloc(3), a, b])
    expect(findIntactRecord(both, 0)).toBe(3)
    expect(findIntactRecord(both, 4)).toBe(3 + a.length)
    const bad = Buffer.from(a)
    bad[a.length - 1]! ^= 1
    expect(decodeRecord(bad, 0)).toMatchObject({ ok: false, kind: 'torn' })
  })

  it('FANOUT round-trips (one body, consecutive ids, a tube each), is found by the resync scan, and a flipped byte is torn', () => {
    const f = fields({ id: 41, state: RecState.DELAYED, pri: 7, reserves: 0, timeouts: 0, releases: 0, buries: 0, kicks: 0, readyAtWall: 1_800_000_000_000, buryKey: 0 })
    const [head, body] = encodeFanout(f, ['ga', 'g'.repeat(255)], Buffer.from('hello\r\n'))
    const rec = Buffer.concat([head, body])
    expect(decodeRecord(rec, 0)).toEqual({ ok: true, record: { type: RecordType.FANOUT, fields: f, tubes: ['ga', 'g'.repeat(255)], body: Buffer.from('hello\r\n') }, size: rec.length })
    const both = Buffer.concat([Buffer.alloc(7), rec])
    expect(findIntactRecord(both, 0)).toBe(7)
    for (const i of [FRAME, rec.length - 1]) {
      const bad = Buffer.from(rec)
      bad[i]! ^= 1
      expect(decodeRecord(bad, 0)).toMatchObject({ ok: false, kind: 'torn' })
    }
  })

  it('DELETE_MANY round-trips (ids up to 2^53 - 1), is found by the resync scan; a flipped byte is torn, a wrong count invalid', () => {
    const ids = [1, 2, 3, 4097, 2 ** 32, 2 ** 53 - 1]
    const rec = encodeDeleteMany(ids)
    expect(rec.length).toBe(deleteManyRecordSize(ids.length))
    expect(decodeRecord(rec, 0)).toEqual({ ok: true, record: { type: RecordType.DELETE_MANY, ids }, size: rec.length })
    const slice = encodeDeleteMany(Array.from({ length: 2048 }, (_, i) => 1000 + i))
    expect(decodeRecord(slice, 0)).toMatchObject({ ok: true, size: FRAME + 8 + 8 * 2048 })
    const both = Buffer.concat([Buffer.alloc(9), rec])
    expect(findIntactRecord(both, 0)).toBe(9)
    for (const i of [FRAME, FRAME + 4, rec.length - 1]) {
      const bad = Buffer.from(rec)
      bad[i]! ^= 1
      expect(decodeRecord(bad, 0)).toMatchObject({ ok: false, kind: 'torn' })
    }
    // The count says 5 ids where 6 are, the CRC sealed over it: never a torn write.
    const lying = Buffer.from(rec)
    lying.writeUInt32LE(5, FRAME + 4)
    lying.writeUInt32LE(crc32Range(lying, FRAME, lying.length, crc32Range(lying, 0, 4)), 4)
    expect(decodeRecord(lying, 0)).toMatchObject({ ok: false, kind: 'invalid' })
    expect(() => encodeDeleteMany([])).toThrow(RangeError)
    expect(() => encodeDeleteMany([5, 0])).toThrow(RangeError)
  })
})

/**
 * The reference-binlog reader on every kind of bad input: what it keeps,
 * what it reports (file, offset, why), and that it never throws on damage
 * (seeded random corruption).
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { RefState } from '../../src/store/beanstalkd/format.js'
import { readReferenceDir } from '../../src/store/beanstalkd/reader.js'
import { tmpDir } from '../binlog/helpers.js'
import { prng } from '../helpers/prng.js'
import { NOW, file7, rec5, rec7, version, writeFiles } from './beanstalkd-fixtures.js'

function dirWith(files: Record<string, Buffer>): string {
  const dir = tmpDir()
  writeFiles(dir, files)
  return dir
}

const bodies = (dir: string): Record<number, string> =>
  Object.fromEntries(readReferenceDir(dir).jobs.map((j) => [j.id, j.body.toString('latin1')]))

describe('reading a beanstalkd binlog directory', () => {
  it('applies full, short and delete records as the reference replays them', () => {
    const dir = dirWith({
      'binlog.1': file7(
        [
          { id: 1, tube: 'a', body: 'one', pri: 3 },
          { id: 2, tube: 'b', body: 'two' },
          { id: 3, tube: 'a', body: 'three', state: RefState.DELAYED, delayMs: 5000, deadlineWall: NOW + 5000 },
          { id: 4, tube: 'a', body: 'four' },
          { id: 2, state: RefState.RESERVED, reserves: 1, bodySize: 5 },
          { id: 2, state: RefState.BURIED, reserves: 1, buries: 1, pri: 9, bodySize: 5 },
          { id: 4, state: RefState.INVALID, bodySize: 6 },
          { id: 99, state: RefState.BURIED }, // its full record is in no file: ignored
          { id: 1, state: RefState.RESERVED, reserves: 1, bodySize: 5, pri: 3 }, // a short record carries every field
        ],
        4096,
      ),
    })
    const r = readReferenceDir(dir)
    expect(r.files).toMatchObject([{ version: 7, records: 9, stopped: null }])
    expect(r.staleRecords).toBe(1)
    expect(r.nextId).toBe(100)
    expect(r.jobs).toMatchObject([
      { id: 1, tube: 'a', state: 'ready', pri: 3, reserves: 1, body: Buffer.from('one\r\n') },
      { id: 2, tube: 'b', state: 'buried', pri: 9, buries: 1, buryKey: 2 },
      { id: 3, state: 'delayed', delayMs: 5000, readyAtWall: NOW + 5000, createdAtWall: NOW },
    ])
  })

  it('reads version 5 files (1.4.x-1.9), microseconds and size_t name lengths', () => {
    const dir = dirWith({
      'binlog.3': Buffer.concat([version(5), rec5({ id: 7, tube: 'old', body: 'v5 body', ttrMs: 120_000 }), rec5({ id: 7, state: RefState.BURIED, bodySize: 9, ttrMs: 120_000 })]),
      'binlog.4': file7([{ id: 8, tube: 'new', body: 'v7 body' }]),
    })
    const r = readReferenceDir(dir)
    expect(r.files.map((f) => f.version)).toEqual([5, 7])
    expect(r.jobs).toMatchObject([
      { id: 7, tube: 'old', state: 'buried', ttrMs: 120_000, createdAtWall: NOW, body: Buffer.from('v5 body\r\n') },
      { id: 8, tube: 'new' },
    ])
  })

  it('keeps bodies of 65,534 and 65,535 bytes (the reference drops them and the rest of their file), and larger ones', () => {
    const big = (n: number, c: string): Buffer => Buffer.concat([Buffer.alloc(n, c), Buffer.from('\r\n')])
    const dir = dirWith({
      'binlog.1': file7([
        { id: 1, tube: 'a', body: big(65534, 'x') },
        { id: 2, tube: 'a', body: big(65535, 'y') },
        { id: 3, tube: 'a', body: big(200_000, 'z') },
        { id: 4, tube: 'a', body: 'after' },
      ]),
    })
    const r = readReferenceDir(dir, 65535)
    expect(r.jobs.map((j) => j.body.length)).toEqual([65536, 65537, 200_002, 7])
    // Above -z + 2 (what a put under this -z can make): reported, and kept.
    expect(r.oversized).toBe(1)
  })

  it('a zero-filled preallocated tail, an empty file and an all-zero (version 0) file hold nothing and are no damage', () => {
    const dir = dirWith({
      'binlog.1': file7([{ id: 1, tube: 'a', body: 'x' }], 10_000),
      'binlog.2': Buffer.alloc(0),
      'binlog.3': Buffer.alloc(4096),
      'binlog.4': Buffer.concat([file7([{ id: 2, tube: 'a', body: 'y' }]), Buffer.alloc(3)]),
    })
    const r = readReferenceDir(dir)
    expect(r.files.map((f) => f.stopped)).toEqual([null, null, null, null])
    expect(r.jobs.map((j) => j.id)).toEqual([1, 2])
  })

  it('a damaged record stops its file (reported with offset), keeps what came before and the later files', () => {
    const good = [{ id: 1, tube: 'a', body: 'one' }, { id: 2, tube: 'a', body: 'two' }]
    const f1 = file7(good)
    const cut = f1.length - 3 // inside job 2's body
    const badLen = Buffer.concat([file7([{ id: 3, tube: 'a', body: 'three' }]), Buffer.from([0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(200, 1)])
    const dir = dirWith({
      'binlog.1': f1.subarray(0, cut),
      'binlog.2': badLen,
      'binlog.3': file7([{ id: 4, tube: 'a', body: 'four' }, { id: 1, state: 9, bodySize: 5 }]),
      'binlog.4': Buffer.concat([version(7), Buffer.from([1, 2])]),
      'binlog.5': Buffer.concat([version(3), Buffer.alloc(20, 7)]),
      'binlog.6': Buffer.concat([version(0), Buffer.alloc(20, 7)]),
    })
    const r = readReferenceDir(dir)
    const second = rec7(good[0]!).length + 4
    expect(r.files.map((f) => f.stopped && { offset: f.stopped.offset, detail: f.stopped.detail })).toEqual([
      { offset: second, detail: expect.stringMatching(/job 2: its 5-byte body runs past the end/) },
      { offset: badLen.length - 204, detail: expect.stringMatching(/tube name length 2147483647/) },
      { offset: expect.any(Number), detail: 'job 1: unknown job state 9' },
      { offset: 4, detail: expect.stringMatching(/2 bytes left/) },
      { offset: 0, detail: expect.stringMatching(/unknown binlog format version 3/) },
      { offset: 0, detail: expect.stringMatching(/unknown binlog format version 0/) },
    ])
    expect(r.files[1]!.stopped!.unreadBytes).toBe(204)
    // Job 1 keeps its last good state (the reference would free it); job 2 never had a whole record.
    expect(r.jobs).toMatchObject([{ id: 1, state: 'ready' }, { id: 3 }, { id: 4 }])
  })

  it('checks what the reference does not: tube names, CRLF, short records that disagree, id 0 with data after it', () => {
    const noCrlf = rec7({ id: 1, tube: 'a', body: Buffer.from('abcd') })
    const dir = dirWith({
      'binlog.1': Buffer.concat([version(7), noCrlf]),
      'binlog.2': file7([{ id: 2, tube: 'bad name!', body: 'x' }]),
      'binlog.3': file7([{ id: 3, tube: 'a', body: 'x' }, { id: 3, state: RefState.BURIED, bodySize: 99 }]),
      'binlog.4': file7([{ id: 4, tube: 'a', body: 'x' }, { id: 0 }, { id: 5, tube: 'a', body: 'hidden' }]),
      'binlog.5': file7([{ id: 6, tube: 'a', body: 'x', state: RefState.INVALID }]),
    })
    const r = readReferenceDir(dir)
    expect(r.files.map((f) => f.stopped?.detail)).toEqual([
      'job 1: the body does not end in CRLF',
      'tube name "bad name!" is not a valid tube name',
      'job 3: a short record says the body has 99 bytes, its full record 3',
      expect.stringMatching(/job id 0 .* bytes after it are not zeros/),
      expect.stringMatching(/full record in state 0/),
    ])
    expect(r.jobs.map((j) => [j.id, j.state])).toEqual([
      [3, 'ready'],
      [4, 'ready'],
    ])
  })

  it('ids that repeat across files: the later full record wins (reported when it changes the tube); a missing file is named', () => {
    const dir = dirWith({
      'binlog.2': file7([{ id: 5, tube: 'a', body: 'first' }, { id: 6, tube: 'a', body: 'gone' }, { id: 6, state: 0, bodySize: 6 }]),
      'binlog.4': file7([{ id: 5, tube: 'b', body: 'second', reserves: 2 }, { id: 6, tube: 'a', body: 'back' }]),
    })
    const r = readReferenceDir(dir)
    expect(r.missing).toEqual([path.join(dir, 'binlog.3')])
    expect(r.notes.some((n) => /job 5: .*from tube a to b/.test(n))).toBe(true)
    expect(bodies(dir)).toEqual({ 5: 'second\r\n', 6: 'back\r\n' })
  })

  it('streams a 1 GiB file (a sparse zero tail) without reading it into memory at once', () => {
    const dir = dirWith({ 'binlog.1': file7([{ id: 1, tube: 'a', body: 'start' }]) })
    const file = path.join(dir, 'binlog.1')
    fs.chmodSync(file, 0o600)
    fs.truncateSync(file, 1 << 30)
    const fd = fs.openSync(file, 'r+')
    const tail = rec7({ id: 2, tube: 'a', body: 'past the zero tail' })
    fs.writeSync(fd, tail, 0, tail.length, (1 << 30) - tail.length)
    fs.closeSync(fd)
    const rss = process.memoryUsage().rss
    const r = readReferenceDir(dir)
    expect(process.memoryUsage().rss - rss).toBeLessThan(256 << 20)
    expect(r.jobs.map((j) => j.id)).toEqual([1])
    // Like the reference it stops at the zero tail; unlike it, it says data was left after it.
    expect(r.files[0]!.stopped).toMatchObject({ detail: expect.stringMatching(/job id 0/), unreadBytes: expect.any(Number) })
    expect(r.files[0]!.stopped!.unreadBytes).toBeGreaterThan(0)
  }, 60_000)

  it('random corruption (seeded) never throws; every job it returns is whole', () => {
    const base = file7(
      Array.from({ length: 30 }, (_, i) =>
        i % 3 === 2 ? { id: i - 1, state: RefState.BURIED, bodySize: `job-${i - 1}`.length + 2 } : { id: i + 1, tube: `t${i % 4}`, body: `job-${i + 1}` },
      ),
      512,
    )
    const dir = tmpDir()
    const file = path.join(dir, 'binlog.1')
    for (let seed = 1; seed <= 400; seed++) {
      const rnd = prng(seed)
      let b = Buffer.from(base)
      const edits = 1 + rnd.int(4)
      for (let e = 0; e < edits; e++) {
        const at = rnd.int(b.length)
        switch (rnd.int(4)) {
          case 0:
            b[at] = rnd.int(256)
            break
          case 1:
            b = b.subarray(0, at)
            break
          case 2:
            b = Buffer.concat([b.subarray(0, at), Buffer.from([rnd.int(256), rnd.int(256)]), b.subarray(at)])
            break
          default:
            b.writeInt32LE(rnd.int(2 ** 31) * (rnd.chance(0.5) ? -1 : 1), Math.min(at, b.length - 4))
        }
        if (b.length < 4) break
      }
      fs.writeFileSync(file, b)
      const r = readReferenceDir(dir)
      for (const j of r.jobs) {
        expect(j.body.subarray(-2).toString(), `seed ${seed}`).toBe('\r\n')
        expect(j.tube).toMatch(/^[A-Za-z0-9\-+/;.$_()]+$/)
        expect(Number.isSafeInteger(j.id) && j.id > 0).toBe(true)
      }
      const stopped = r.files[0]?.stopped
      if (stopped) expect(stopped.offset).toBeLessThanOrEqual(b.length)
    }
  })
})

describe('writing a beanstalkd binlog directory (export)', () => {
  it('version 7 files of mode 0400, no lock file; jobs by id then buried in bury order; big bodies alone; reads back the same', async () => {
    const { writeReferenceDir } = await import('../../src/store/beanstalkd/writer.js')
    const job = (id: number, state: 'ready' | 'reserved' | 'buried' | 'delayed', buryKey = 0, body = `b${id}\r\n`) => ({
      id, tube: `t${id % 2}`, state, pri: id, delayMs: state === 'delayed' ? 60_000 : 0, ttrMs: 30_000, createdAtWall: NOW + id,
      readyAtWall: state === 'delayed' ? NOW + 90_000 : 0, buryKey, reserves: 1, timeouts: 2, releases: 3, buries: state === 'buried' ? 1 : 0, kicks: 4,
      body: Buffer.from(body, 'latin1'),
    })
    const big = `${'x'.repeat(70_000)}\r\n`
    const jobs = [job(1, 'buried', 9), job(2, 'reserved'), job(3, 'delayed'), job(4, 'buried', 3), job(5, 'ready', 0, big), job(6, 'ready')]
    const out = path.join(tmpDir(), 'out')
    const res = writeReferenceDir(out, { nextId: 10, jobs }, 1 << 20)
    expect(res).toMatchObject({ jobs: 6, nextId: 10, maxBodySize: big.length })
    const names = fs.readdirSync(out).sort()
    expect(names).toEqual(['binlog.1', 'binlog.2', 'binlog.3'])
    for (const n of names) {
      expect(fs.statSync(path.join(out, n)).mode & 0o777).toBe(0o400)
      expect(fs.readFileSync(path.join(out, n)).readInt32LE(0)).toBe(7)
    }
    const r = readReferenceDir(out, 1 << 20)
    expect(r.files.map((f) => f.stopped)).toEqual([null, null, null])
    expect(r.nextId).toBe(10) // the high-water-mark job, created and deleted
    expect(r.jobs.map((j) => [j.id, j.state])).toEqual([[1, 'buried'], [2, 'ready'], [3, 'delayed'], [4, 'buried'], [5, 'ready'], [6, 'ready']])
    // Bury order: 4 (key 3) before 1 (key 9).
    expect(r.jobs.find((j) => j.id === 4)!.buryKey).toBeLessThan(r.jobs.find((j) => j.id === 1)!.buryKey)
    for (const j of r.jobs) {
      const w = jobs.find((x) => x.id === j.id)!
      expect({ ...j, state: 0, buryKey: 0 }).toEqual({ ...w, state: 0, buryKey: 0 })
    }
    expect(() => writeReferenceDir(out, { nextId: 1, jobs: [] }, 1 << 20)).toThrow(/not empty/)
  })
})

/**
 * Preallocated binlog files (spare.ts): unless -F, each file is filled with
 * zeros before records go in, the first at start and the next ones ahead of
 * time on the thread pool as DIR/binlog.spare. Replay reads a preallocated
 * file's zeros after its last record as its end; a torn record before them
 * is cut like any torn tail; a binlog.spare tsbeanstalkd did not write
 * stops the start; a full disk gives the spare up first.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { HEADER_SIZE, HeaderFlag, PREALLOCATED_VERSION, decodeHeader, encodeHeader } from '../../src/store/binlog/record.js'
import { nodeFs, type BinlogFs } from '../../src/store/io.js'
import { Model, WARN, binlogFiles, fileRecords, openError, tmpDir } from './helpers.js'

const FILE_SIZE = 4096

const headerOf = (file: string): ReturnType<typeof decodeHeader> => decodeHeader(fs.readFileSync(file).subarray(0, HEADER_SIZE))
const isPreallocated = (file: string): boolean => {
  const h = headerOf(file)
  return typeof h !== 'string' && h.version === PREALLOCATED_VERSION && (h.flags & HeaderFlag.PREALLOCATED) !== 0
}
const bodies = (m: Model): string[] => m.recovered.map((r) => r.body.toString().trim())

const until = async (cond: () => boolean, ms = 2000): Promise<void> => {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 5))
  }
}

/**
 * `io` with the spare's fill watched: `ready()` is true once the spare
 * tsbeanstalkd created last has been synced (what makes it ready), so a
 * test can wait for it instead of guessing how long a fill takes.
 */
function watchSpare(io: BinlogFs = nodeFs): { io: BinlogFs; ready: () => boolean } {
  let spareFd = -1
  let synced = false
  return {
    ready: () => spareFd >= 0 && synced,
    io: {
      ...io,
      openSync: (p, flags, mode) => {
        const fd = io.openSync(p, flags, mode)
        if (path.basename(p) === 'binlog.spare') [spareFd, synced] = [fd, false]
        return fd
      },
      fdatasync: (fd, cb) =>
        io.fdatasync(fd, (err) => {
          cb(err)
          if (fd === spareFd && err === null) synced = true
        }),
      fdatasyncSync: (fd) => {
        io.fdatasyncSync(fd)
        if (fd === spareFd) synced = true // the first file's, at start
      },
    },
  }
}

/** Puts (committing each) until the spare exists; at most 200. */
async function putUntilSpare(m: Model, spare: string): Promise<void> {
  for (let i = 0; i < 200 && !fs.existsSync(spare); i++) {
    m.put('z'.repeat(200))
    await m.commit()
  }
  expect(fs.existsSync(spare)).toBe(true)
}

/** Puts until the binlog has moved past `files` files, committing each (and, with `settled`, waiting for it before each put). */
async function fillFiles(m: Model, files: number, settled?: () => boolean): Promise<string[]> {
  const put: string[] = []
  for (let i = 0; i < 1000 && m.bl.stats().currentIndex <= files; i++) {
    if (settled !== undefined) await until(settled)
    const b = `${put.length} ${'x'.repeat(300)}`
    m.put(b)
    put.push(b)
    await m.commit()
  }
  return put
}

describe('preallocated files', () => {
  it('every file is filled to -s before its records, the next one ahead of time; replay keeps their zeros and every job', async () => {
    // The spare's fill is let finish before each put, so every rotation finds it ready (on a loaded machine it may not be: a later test).
    const w = watchSpare()
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0, fs: w.io })
    await m.open()
    const first = path.join(m.dir, 'binlog.1')
    expect(fs.statSync(first).size).toBe(FILE_SIZE) // before any record
    expect(isPreallocated(first)).toBe(true)
    const put = await fillFiles(m, 4, () => w.ready() || !fs.existsSync(path.join(m.dir, 'binlog.spare')))
    const files = binlogFiles(m.dir)
    expect(files.length).toBeGreaterThanOrEqual(5)
    for (const f of files) {
      const file = path.join(m.dir, f)
      expect(isPreallocated(file)).toBe(true)
      expect(fs.statSync(file).size).toBe(FILE_SIZE)
    }
    expect(m.bl.stats().diskBytes).toBe(files.length * FILE_SIZE)
    const sizes = files.map((f) => fs.statSync(path.join(m.dir, f)).size)
    await m.restart()
    expect(bodies(m)).toEqual(put)
    expect(m.lines.some((l) => l.level >= WARN)).toBe(false) // no torn tail, nothing skipped
    expect(files.map((f) => fs.statSync(path.join(m.dir, f)).size)).toEqual(sizes) // nothing cut
  })

  it('a spare is filling or ready while the server runs, and a clean stop removes it', async () => {
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0 })
    await m.open()
    const spare = path.join(m.dir, 'binlog.spare')
    expect(fs.existsSync(spare)).toBe(false) // filled once the current file is half full
    await putUntilSpare(m, spare)
    expect(m.bl.stats().currentIndex).toBe(1) // before the file is full
    await until(() => fs.existsSync(spare) && fs.statSync(spare).size === FILE_SIZE)
    m.bl.close()
    await until(() => !fs.existsSync(spare))
  })

  it('a torn record before the zeros is cut with a warning, at every byte of it; the records before it stay', async () => {
    const base = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0 })
    await base.open()
    base.put('first')
    base.put('second')
    await base.commit()
    base.put('the last record, torn by a crash')
    await base.commit()
    base.bl.close()
    const whole = fs.readFileSync(path.join(base.dir, 'binlog.1'))
    const last = fileRecords(path.join(base.dir, 'binlog.1'))[2]!
    for (let k = 1; k < last.size; k += 3) {
      const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0 })
      const torn = Buffer.alloc(whole.length) // what a crash leaves: part of the record, then the zeros
      whole.copy(torn, 0, 0, last.offset + k)
      const file = path.join(m.dir, 'binlog.1')
      fs.writeFileSync(file, torn)
      await m.open()
      expect(bodies(m)).toEqual(['first', 'second'])
      expect(m.lines.filter((l) => l.level === WARN && /torn tail/.test(l.msg))).toHaveLength(1)
      expect(fs.statSync(file).size).toBe(last.offset)
      m.bl.close()
    }
  })

  it('zeros with an intact record after them are corruption, not an end', async () => {
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0 })
    await m.open()
    for (const s of ['one', 'two', 'three']) m.put(s)
    await m.commit()
    m.bl.close()
    const file = path.join(m.dir, 'binlog.1')
    const [, second, third] = fileRecords(file)
    const buf = fs.readFileSync(file)
    buf.fill(0, second!.offset, third!.offset) // the second record zeroed: the third still follows
    fs.writeFileSync(file, buf)
    const err = await openError(m)
    expect(err).toMatchObject({ code: 'TSB_ERR_BINLOG_CORRUPT', file, offset: second!.offset })
    expect((err as Error).message).toMatch(/intact record follows/)
  })

  it('the current file\'s zeros ahead of its records do not set compaction off; disk bytes still count them', async () => {
    // The spare's fill is let finish before each put, so both rotations find it ready.
    const w = watchSpare()
    const settled = (): boolean => w.ready() || !fs.existsSync(path.join(m.dir, 'binlog.spare'))
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0, fs: w.io })
    await m.open()
    // Two old files, each kept by one long-delayed job among deleted ones: 3 files of -s on disk, little live.
    for (const index of [1, 2]) {
      m.put(`keep ${index}`, { delayMs: 3_600_000 })
      for (let i = 0; i < 1000 && m.bl.stats().currentIndex === index; i++) {
        await until(settled)
        m.delete(m.put('churn '.repeat(20))!)
        await m.commit()
      }
    }
    expect(m.bl.stats().currentIndex).toBe(3)
    m.put('one more')
    await m.commit()
    // Moving the two jobs could free two files, but the files hold less than 2 x live + 2 x -s without the zeros no record reached.
    expect(m.bl.stats().recordsMigrated).toBe(0)
    expect(m.bl.stats().diskBytes).toBe(3 * FILE_SIZE)
  })

  it('under -F nothing is preallocated (there are no fsyncs to make cheaper)', async () => {
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncNever: true })
    await m.open()
    await fillFiles(m, 2)
    for (const f of binlogFiles(m.dir)) expect(isPreallocated(path.join(m.dir, f))).toBe(false)
    expect(fs.existsSync(path.join(m.dir, 'binlog.spare'))).toBe(false)
  })

  it('a rotation that finds the spare still filling appends to a plain file; both kinds replay', async () => {
    let hold = true
    const held: (() => void)[] = []
    const w = watchSpare({
      ...nodeFs,
      write: (fd, buf, off, len, pos, cb) => {
        if (hold) held.push(() => nodeFs.write(fd, buf, off, len, pos, cb))
        else nodeFs.write(fd, buf, off, len, pos, cb)
      },
    })
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0, fs: w.io })
    await m.open()
    const put = await fillFiles(m, 1) // into binlog.2, while the spare's zeros are held
    expect(held.length).toBeGreaterThan(0)
    const second = path.join(m.dir, 'binlog.2')
    expect(isPreallocated(path.join(m.dir, 'binlog.1'))).toBe(true)
    expect(isPreallocated(second)).toBe(false)
    hold = false
    for (const run of held.splice(0)) run()
    await until(w.ready)
    put.push(...(await fillFiles(m, 2))) // binlog.3 comes from the spare
    expect(isPreallocated(path.join(m.dir, 'binlog.3'))).toBe(true)
    await m.restart()
    expect(bodies(m)).toEqual(put)
  })

  it('a full disk gives the spare up before anything else, and no new one is filled until there is room again', async () => {
    let failNext = 0
    let reserveFull = false
    const enospc = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
    const w = watchSpare({
      ...nodeFs,
      writevSync: (fd, bufs, pos) => {
        if (failNext > 0) {
          failNext--
          throw enospc()
        }
        return nodeFs.writevSync(fd, bufs, pos)
      },
      openSync: (p, flags, mode) => {
        if (reserveFull && path.basename(p) === 'reserve') throw enospc()
        return nodeFs.openSync(p, flags, mode)
      },
    })
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0, fs: w.io })
    await m.open()
    const spare = path.join(m.dir, 'binlog.spare')
    await putUntilSpare(m, spare)
    await until(w.ready)
    failNext = 1 // the next record write hits the full disk...
    reserveFull = true // ...and the reserve, once released, cannot be written again
    m.put('hits the full disk')
    m.bl.flush() // fails, gives up the spare and the reserve, and goes out on the reserve's space
    expect(fs.existsSync(spare)).toBe(false)
    expect(m.bl.canPut()).toBe(false)
    m.delete(m.jobs.values().next().value!) // writes go on past half of the file: still no spare into the space left
    await m.commit()
    await new Promise((r) => setTimeout(r, 50))
    expect(fs.existsSync(spare)).toBe(false)
    reserveFull = false
    await until(() => m.bl.canPut())
    await putUntilSpare(m, spare)
    await until(() => fs.statSync(spare).size === FILE_SIZE) // room again: spares again
  })
})

describe('binlog.spare at start', () => {
  it('one a crash left (at any point of its fill) is removed; one that is also binlog.N (a crash between link and unlink) leaves binlog.N whole', async () => {
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0 })
    await m.open()
    m.put('kept')
    await m.commit()
    m.bl.close()
    const spare = path.join(m.dir, 'binlog.spare')
    fs.linkSync(path.join(m.dir, 'binlog.1'), spare)
    await m.open()
    expect(bodies(m)).toEqual(['kept'])
    expect(m.lines.some((l) => /removing the spare file/.test(l.msg))).toBe(true)
    m.bl.close()
    const placeholder = Buffer.alloc(FILE_SIZE)
    encodeHeader({ version: PREALLOCATED_VERSION, index: 0, nextId: 0, flags: HeaderFlag.PREALLOCATED }).copy(placeholder)
    // A fill a crash interrupted; a crash right after creating the file, before or while its header was written.
    for (const left of [placeholder.subarray(0, 1000), Buffer.alloc(0), placeholder.subarray(0, 20), Buffer.alloc(500)]) {
      fs.writeFileSync(spare, left)
      await m.open()
      expect(bodies(m)).toEqual(['kept'])
      expect(fs.existsSync(spare)).toBe(false)
      m.bl.close()
    }
  })

  it('one tsbeanstalkd did not write stops the start, named, and stays as it was', async () => {
    const m = new Model(tmpDir(), { fileSize: FILE_SIZE, fsyncMs: 0 })
    const spare = path.join(m.dir, 'binlog.spare')
    fs.writeFileSync(spare, 'somebody else’s file\n')
    const err = await openError(m)
    expect(err).toMatchObject({ name: 'ForeignFileError', code: 'TSB_ERR_STORE_FOREIGN', file: spare })
    expect((err as Error).message).toContain(spare)
    expect(fs.readFileSync(spare, 'utf8')).toBe('somebody else’s file\n')
    expect(binlogFiles(m.dir)).toEqual([])
  })
})

/**
 * Damage: a torn tail in the last file is cut with a warning at every byte
 * offset of the last record; damage anywhere else stops the start with a
 * BinlogCorruptError that names file and offset, and following its advice
 * gets the server going again.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { BinlogCorruptError } from '../../src/store/binlog/errors.js'
import { Model, WARN, binlogFiles, fileRecords, openError, tmpDir } from './helpers.js'

/** Offsets of the records in a binlog file. */
const recordOffsets = (file: string): number[] => fileRecords(file).map((r) => r.offset)

describe('torn tail in the last file', () => {
  it('is cut at every byte offset of the last record, with a warning; earlier records stay', async () => {
    const base = new Model(tmpDir(), { fsyncNever: true })
    await base.open()
    base.put('first', { pri: 1 })
    base.put('second', { delayMs: 60_000 })
    await base.commit()
    base.put('the last record, torn by a crash', { tube: 'torn' })
    await base.commit()
    base.bl.close()
    const file = path.join(base.dir, 'binlog.1')
    const whole = fs.readFileSync(file)
    const start = recordOffsets(file)[2]!
    for (let k = 0; k < whole.length - start; k++) {
      for (const fill of ['cut', 'zeros'] as const) {
        if (fill === 'zeros' && k % 7 !== 1) continue // a sample: the rest of the record reads as zeros
        const m = new Model(tmpDir(), { fsyncNever: true })
        const torn = Buffer.alloc(fill === 'cut' ? start + k : whole.length)
        whole.copy(torn, 0, 0, start + k)
        fs.writeFileSync(path.join(m.dir, 'binlog.1'), torn)
        await m.open()
        expect(m.recovered.map((r) => r.body.toString().trim())).toEqual(['first', 'second'])
        const warned = m.lines.filter((l) => l.level === WARN && /torn tail/.test(l.msg))
        if (torn.length === start) {
          expect(warned).toEqual([])
        } else {
          expect(warned).toHaveLength(1)
          expect(warned[0]).toMatchObject({ file: path.join(m.dir, 'binlog.1'), offset: start, bytes: torn.length - start })
        }
        expect(fs.statSync(path.join(m.dir, 'binlog.1')).size).toBe(start)
        expect(m.replayedNextId).toBeGreaterThanOrEqual(3)
        m.bl.close()
      }
    }
  })

  it('a torn UPDATE leaves the job as it was before it', async () => {
    const m = new Model(tmpDir(), { fsyncNever: true })
    await m.open()
    const j = m.put('x')!
    m.reserve(j)
    await m.commit()
    m.bury(j)
    await m.commit()
    m.bl.close()
    const file = path.join(m.dir, 'binlog.1')
    fs.truncateSync(file, fs.statSync(file).size - 30)
    await m.open()
    expect(m.recovered).toMatchObject([{ id: 1, state: 'ready', reserves: 1, buries: 0 }])
  })

  it('a last file whose header a crash tore is skipped and kept (it cannot be told from another program\'s)', async () => {
    const m = new Model(tmpDir(), { fsyncNever: true })
    await m.open()
    m.put('kept')
    await m.commit()
    m.bl.close()
    fs.writeFileSync(path.join(m.dir, 'binlog.2'), Buffer.alloc(17))
    await m.open()
    expect(m.recovered).toHaveLength(1)
    expect(m.bl.stats().currentIndex).toBe(3)
    expect(fs.readFileSync(path.join(m.dir, 'binlog.2'))).toEqual(Buffer.alloc(17))
    expect(m.lines.some((l) => l.level === WARN && /holds no data/.test(l.msg))).toBe(true)
  })
})

describe('damage in the middle', () => {
  /** Two files: binlog.1 with four jobs (no longer the last file), binlog.2 with one. */
  async function twoFiles(opts: { fsyncNever?: boolean } = {}): Promise<Model> {
    const m = new Model(tmpDir(), opts)
    await m.open()
    for (const s of ['one', 'two', 'three', 'four']) m.put(s)
    await m.commit()
    await m.restart()
    m.put('five')
    await m.commit()
    m.bl.close()
    return m
  }

  it('a flipped byte in a non-last file: BinlogCorruptError with file, offset and the fix', async () => {
    const m = await twoFiles()
    const file = path.join(m.dir, 'binlog.1')
    const off = recordOffsets(file)[1]!
    const buf = fs.readFileSync(file)
    buf[off + 92]! ^= 0x01 // in its tube name
    fs.writeFileSync(file, buf)
    const err = await openError(m)
    expect(err).toBeInstanceOf(BinlogCorruptError)
    expect(err).toMatchObject({ code: 'TSB_ERR_BINLOG_CORRUPT', file, offset: off })
    expect((err as Error).message).toContain(`truncate -s ${off} '${file}'`)
    // The lock was released; following the advice starts the server, losing what was cut.
    fs.truncateSync(file, off)
    await m.open()
    expect(m.recovered.map((r) => r.body.toString().trim())).toEqual(['one', 'five'])
  })

  it('a truncated non-last file is corruption, not a torn tail', async () => {
    const m = await twoFiles()
    const file = path.join(m.dir, 'binlog.1')
    const records = fileRecords(file)
    const last = records[3]!.offset
    // Into the last record (binlog.1 is preallocated: its zeros come after it).
    fs.truncateSync(file, last + records[3]!.size - 5)
    expect(await openError(m)).toMatchObject({ code: 'TSB_ERR_BINLOG_CORRUPT', file, offset: last })
  })

  it('damage in the middle of the last file, with intact records after it, is corruption', async () => {
    const m = new Model(tmpDir(), { fsyncNever: true })
    await m.open()
    for (const s of ['one', 'two', 'three', 'four']) m.put(s)
    await m.commit()
    m.bl.close()
    const file = path.join(m.dir, 'binlog.1')
    const off = recordOffsets(file)[1]!
    const buf = fs.readFileSync(file)
    buf[off + 9]! ^= 0x40
    fs.writeFileSync(file, buf)
    const err = await openError(m)
    expect(err).toMatchObject({ code: 'TSB_ERR_BINLOG_CORRUPT', file, offset: off })
    expect((err as Error).message).toMatch(/intact record follows/)
  })

  it('a damaged header is corruption unless it is the last file and holds nothing', async () => {
    const m = await twoFiles()
    const file = path.join(m.dir, 'binlog.1')
    const buf = fs.readFileSync(file)
    buf[20]! ^= 0xff
    fs.writeFileSync(file, buf)
    expect(await openError(m)).toMatchObject({ code: 'TSB_ERR_BINLOG_CORRUPT', file, offset: 0 })
  })

  it('a missing file between others is named', async () => {
    const m = await twoFiles()
    await m.open()
    m.put('six')
    await m.commit()
    m.bl.close()
    expect(binlogFiles(m.dir)).toEqual(['binlog.1', 'binlog.2', 'binlog.3'])
    fs.rmSync(path.join(m.dir, 'binlog.2'))
    expect(await openError(m)).toMatchObject({ code: 'TSB_ERR_BINLOG_CORRUPT', file: path.join(m.dir, 'binlog.2') })
  })

  it('a file written under -F may end torn even when it is not the last', async () => {
    const m = await twoFiles({ fsyncNever: true })
    const file = path.join(m.dir, 'binlog.1')
    fs.truncateSync(file, fs.statSync(file).size - 3)
    await m.open()
    expect(m.recovered.map((r) => r.body.toString().trim())).toEqual(['one', 'two', 'three', 'five'])
    expect(m.lines.some((l) => l.level === WARN && /torn tail/.test(l.msg))).toBe(true)
  })
})

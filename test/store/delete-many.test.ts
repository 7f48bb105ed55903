/**
 * A flush slice's deletes (DurableStore.deleteMany), against both engines,
 * through the store as the registry calls it: jobs in every state, one
 * changed and one put in the same turn, deleted together and gone after a
 * restart while the others stay exactly as they were. For the binlog: the
 * slice is one DELETE_MANY record (and one record in `stats`), a torn one
 * deletes none of its jobs, and compaction accounts each id as deleted (the
 * old files go, nothing stays live). For SQLite: no rows stay behind.
 */
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { RecordType } from '../../src/store/binlog/record.js'
import { SQLITE_FILE } from '../../src/store/layout.js'
import { Model, binlogFiles, expectedAll, fileRecords, plain, tmpDir, type TestJob } from '../binlog/helpers.js'
import { ENGINES, binlogEngine } from './engines.js'


describe.each(ENGINES)('$name', (engine) => {
  it('deletes a slice of jobs in every state together; the rest replays unchanged', async () => {
    const m = new Model(tmpDir(), {}, engine)
    await m.open()
    const keep: TestJob[] = []
    const gone: TestJob[] = []
    for (let i = 0; i < 40; i++) {
      const j = m.put(`job ${i}`, { pri: i, tube: i % 2 === 0 ? 'flushed' : 'other', delayMs: i % 5 === 0 ? 3_600_000 : 0 })!
      ;(i % 2 === 0 ? gone : keep).push(j)
    }
    m.reserve(gone[1]!)
    m.bury(gone[1]!)
    m.reserve(keep[1]!)
    m.bury(keep[1]!)
    m.reserve(gone[2]!)
    await m.commit()
    // The same turn: one of them changed, one put, and then the slice.
    m.release(gone[3]!, 7)
    gone.push(m.put('put in the same turn', { tube: 'flushed' })!)
    const before = m.bl.stats().recordsWritten
    m.deleteMany(gone)
    expect(m.bl.stats().recordsWritten - before).toBe(1) // one record (binlog) or one statement (SQLite)
    await m.commit()
    const want = expectedAll(m)
    expect(want.map((j) => j.tube)).toEqual(keep.map(() => 'other'))
    expect(plain(await m.restart())).toEqual(want)
    expect(m.bl.stats().liveJobs).toBe(keep.length)
    expect(m.replayedNextId).toBe(42)
    if (engine.name === 'sqlite') {
      const db = new Database(path.join(m.dir, SQLITE_FILE), { readonly: true })
      try {
        expect(db.prepare("SELECT count(*) FROM jobs WHERE tube = 'flushed'").pluck().get()).toBe(0)
        expect(db.prepare('SELECT count(*) FROM jobs').pluck().get()).toBe(keep.length)
      } finally {
        db.close()
      }
    }
  })
})

describe('binlog DELETE_MANY', () => {
  it('is one record holding the ids of the slice', async () => {
    const m = new Model(tmpDir(), {}, binlogEngine)
    await m.open()
    const js = Array.from({ length: 2048 }, (_, i) => m.put(`j${i}`)!)
    await m.commit()
    m.deleteMany(js.slice(0, 2047))
    m.deleteMany(js.slice(2047)) // a slice of one is a plain DELETE
    await m.commit()
    const recs = fileRecords(path.join(m.dir, 'binlog.1'))
    expect(recs).toHaveLength(2048 + 2)
    expect(recs[2048]!.record).toEqual({ type: RecordType.DELETE_MANY, ids: js.slice(0, 2047).map((j) => j.id) })
    expect(recs[2049]!.record).toEqual({ type: RecordType.DELETE, id: 2048 })
    expect(plain(await m.restart())).toEqual([])
  })

  it('torn at any byte, deletes none of its jobs; whole, all of them', async () => {
    const base = new Model(tmpDir(), { fsyncNever: true }, binlogEngine)
    await base.open()
    const js = Array.from({ length: 50 }, (_, i) => base.put(`j${i}`, { pri: i })!)
    await base.commit()
    const all = expectedAll(base)
    base.deleteMany(js.slice(10, 40))
    await base.commit()
    base.bl.close()
    const file = path.join(base.dir, 'binlog.1')
    const whole = fs.readFileSync(file)
    const last = fileRecords(file).at(-1)!
    expect(last.record.type).toBe(RecordType.DELETE_MANY)
    for (const k of [1, 8, 9, 20, last.size - 9, last.size - 1, last.size]) {
      const m = new Model(tmpDir(), { fsyncNever: true }, binlogEngine)
      fs.writeFileSync(path.join(m.dir, 'binlog.1'), whole.subarray(0, last.offset + k))
      await m.open()
      const ids = m.recovered.map((r) => r.id)
      if (k === last.size) expect(ids).toEqual([...all.slice(0, 10), ...all.slice(40)].map((j) => j.id))
      else expect(plain(m.recovered), `torn after ${k} bytes`).toEqual(all)
      m.bl.close()
    }
  })

  it('compaction counts every id as deleted: nothing stays live, the old files go', async () => {
    const m = new Model(tmpDir(), { fileSize: 64 * 1024, fsyncNever: true }, binlogEngine)
    await m.open()
    const js: TestJob[] = []
    for (let i = 0; i < 3000; i++) {
      js.push(m.put(`${'x'.repeat(200)}${i}`)!)
      if (i % 100 === 99) await m.commit() // a batch goes into one file: many batches, many files
    }
    expect(binlogFiles(m.dir).length).toBeGreaterThan(5)
    for (let i = 0; i < js.length; i += 2048) m.deleteMany(js.slice(i, i + 2048))
    await m.commit()
    expect(m.bl.stats()).toMatchObject({ liveJobs: 0, liveBytes: 0 })
    // More traffic rotates the writer on; every older file can go.
    for (let i = 0; i < 400; i++) {
      m.delete(m.put('y'.repeat(400))!)
      await m.commit()
    }
    await m.settle()
    expect(binlogFiles(m.dir).length).toBeLessThanOrEqual(2)
    expect(plain(await m.restart())).toEqual([])
    expect(m.bl.stats().liveJobs).toBe(0)
  })
})

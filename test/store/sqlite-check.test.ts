/**
 * A large SQLite store is read and checked on worker threads beside the
 * replay (src/store/sqlite/page-worker.ts, check.ts): damage the check or a
 * row shows still stops the start with the store's corruption error, and a
 * sound large store opens whole, every field as stored, in many tubes.
 */
import fs from 'node:fs'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { describe, expect, it } from 'vitest'
import { StoreCorruptError } from '../../src/store/errors.js'
import { SQLITE_FILE } from '../../src/store/layout.js'
import type { SqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import Database from 'better-sqlite3'
import { Model, expectedAll, plain, tmpDir } from '../binlog/helpers.js'
import { sqliteEngine } from './engines.js'

/** A store over the 8 MiB from which the check moves to a worker. */
async function largeStore(): Promise<Model<SqliteStore>> {
  const m = new Model(tmpDir(), { fsyncNever: true }, sqliteEngine)
  await m.open()
  for (let i = 0; i < 40_000; i++) m.put(`large job ${i} `.repeat(18))
  await m.commit()
  m.bl.close()
  expect(fs.statSync(path.join(m.dir, SQLITE_FILE)).size).toBeGreaterThan(8 * 1024 * 1024)
  return m
}

describe('the integrity check of a large store', () => {
  it('opens a sound one whole', async () => {
    const m = await largeStore()
    const again = new Model(m.dir, {}, sqliteEngine)
    await again.open()
    expect(again.recovered).toHaveLength(40_000)
  })

  it('brings back every field of every row, across pages, tubes and states, bodies large and small', async () => {
    const m = new Model(tmpDir(), { fsyncNever: true }, sqliteEngine)
    await m.open()
    for (let i = 0; i < 30_000; i++) {
      const body = i % 997 === 0 ? Buffer.alloc(3000 + i, i & 0xff) : `job ${i} `.repeat(40) // some over the hex limit: BLOBs
      const j = m.put(body, { pri: i % 7 === 0 ? 2 ** 32 - 1 : i, tube: `tube-${i % 13}`, delayMs: i % 11 === 0 ? 3_600_000 : 0, ttrMs: 1000 + i })!
      if (i % 5 === 0) {
        m.reserve(j)
        if (i % 10 === 0) m.bury(j)
        else m.release(j, 7, 0)
      }
    }
    await m.commit()
    m.bl.close()
    expect(fs.statSync(path.join(m.dir, SQLITE_FILE)).size).toBeGreaterThan(8 * 1024 * 1024)
    const want = expectedAll(m)
    await m.open()
    const got = plain(m.recovered)
    expect(got).toHaveLength(want.length)
    // One row at a time: a diff of 30,000 rows would take longer than the test.
    for (let i = 0; i < want.length; i++) if (!isDeepStrictEqual(got[i], want[i])) expect(got[i]).toEqual(want[i])
  })

  it('refuses one with a broken row past the first pages, naming the job', async () => {
    const m = await largeStore()
    const db = new Database(path.join(m.dir, SQLITE_FILE))
    db.prepare("UPDATE jobs SET tube = '' WHERE id = 31000").run()
    db.close()
    const again = new Model(m.dir, {}, sqliteEngine)
    const err = await again.open().then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(StoreCorruptError)
    expect((err as Error).message).toMatch(/job 31000: empty or non-text tube name/)
  })

  it('refuses one whose damage only the check sees (a free-list page: reading the rows never touches it)', async () => {
    const m = await largeStore()
    await m.open()
    for (const j of [...m.jobs.values()].slice(0, 20_000)) m.delete(j)
    await m.commit()
    m.bl.close()
    const file = path.join(m.dir, SQLITE_FILE)
    const fd = fs.openSync(file, 'r+')
    const header = Buffer.alloc(100)
    fs.readSync(fd, header, 0, 100, 0)
    const trunk = header.readUInt32BE(32) // the first free-list trunk page (1-based)
    expect(trunk).toBeGreaterThan(0)
    fs.writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, (trunk - 1) * 4096)
    fs.closeSync(fd)
    const again = new Model(m.dir, {}, sqliteEngine)
    const err = await again.open().then(
      () => null,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(StoreCorruptError)
    expect((err as Error).message).toMatch(/\.recover/)
  })
})

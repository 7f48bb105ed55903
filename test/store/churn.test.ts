/**
 * The SQLite store stays bounded under churn: deleted jobs leave no rows,
 * freed pages are reused, the WAL is checkpointed back to the start (and cut
 * back to one interval after a reader held it), and after a burst the free
 * pages go back to the file system. Replay stays exact throughout.
 */
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { SQLITE_FILE } from '../../src/store/layout.js'
import type { SqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { Model, churn, expectedAll, plain, tmpDir, type TestJob } from '../binlog/helpers.js'
import { sqliteEngine } from './engines.js'

const PAGES = 256 // WAL checkpoint interval in pages (1 MiB)

async function model(overrides: Record<string, unknown> = {}): Promise<Model<SqliteStore>> {
  const m = new Model(tmpDir(), { fsyncNever: true, checkpointPages: PAGES, ...overrides } as object, sqliteEngine)
  await m.open()
  return m
}

/** db + WAL bytes on disk. */
function diskBytes(m: Model<SqliteStore>): number {
  const s = m.bl.fileStats()
  return s.dbBytes + s.walBytes
}

const rowCount = (m: Model<SqliteStore>): number => {
  const db = new Database(path.join(m.dir, SQLITE_FILE), { readonly: true })
  try {
    return db.prepare('SELECT count(*) FROM jobs').pluck().get() as number
  } finally {
    db.close()
  }
}

/** The binlog churn test's mix, sampled every 500 iterations, then committed. */
async function churnSqlite(m: Model<SqliteStore>, iterations: number, sample: (i: number) => void): Promise<number> {
  const written = await churn(m, iterations, { commitEvery: 10, sampleEvery: 500, sample })
  await m.commit()
  return written
}

describe('churn keeps the SQLite store bounded', () => {
  it('20k puts and deletes: rows = live jobs, file and WAL flat after warm-up, replay exact', async () => {
    const m = await model()
    const sizes: number[] = []
    const written = await churnSqlite(m, 20_000, () => {
      expect(rowCount(m)).toBe(m.jobs.size) // deleted jobs leave no rows
      sizes.push(diskBytes(m))
    })
    expect(rowCount(m)).toBe(m.jobs.size)
    const warm = Math.max(...sizes.slice(0, 4))
    const later = Math.max(...sizes.slice(4))
    expect(later).toBeLessThanOrEqual(warm + 64 * 1024) // no growth after warm-up
    expect(m.bl.fileStats().walBytes).toBeLessThanOrEqual(PAGES * 4096 + 256 * 1024)
    expect(m.bl.fileStats().dbBytes).toBeLessThan(512 * 1024) // ~290 live jobs of a few hundred bytes
    expect(written).toBeGreaterThan(8 * later) // far more went through than is kept
    const want = expectedAll(m)
    expect(plain(await m.restart())).toEqual(want)
  })

  it('a reader holding a snapshot lets the WAL grow; once it ends the WAL is cut back to one interval', async () => {
    const m = await model()
    const reader = new Database(path.join(m.dir, SQLITE_FILE), { readonly: true })
    reader.exec('BEGIN')
    reader.prepare('SELECT count(*) FROM jobs').get() // the snapshot is taken here
    await churnSqlite(m, 4000, () => undefined)
    const held = m.bl.fileStats().walBytes
    expect(held).toBeGreaterThan(2 * PAGES * 4096)
    reader.exec('COMMIT')
    reader.close()
    for (let i = 0; i < 2000; i++) {
      m.delete(m.put('after the reader '.repeat(10))!)
      if (i % 10 === 9) await m.commit()
    }
    await m.commit()
    expect(m.bl.fileStats().walBytes).toBeLessThanOrEqual(PAGES * 4096 + 64 * 1024)
  })

  it('freed pages are reused by the next burst, and given back to the file system when idle', async () => {
    const m = await model({ maintenanceMs: 20 })
    const burst = async (): Promise<TestJob[]> => {
      const js: TestJob[] = []
      for (let i = 0; i < 3000; i++) js.push(m.put(`burst ${i} `.repeat(300))!)
      await m.commit()
      return js
    }
    const drain = async (js: TestJob[]): Promise<void> => {
      for (const j of js) m.delete(j)
      await m.commit()
    }
    await drain(await burst())
    const afterFirst = m.bl.fileStats().pages
    expect(afterFirst).toBeGreaterThan(2048)
    // The maintenance timer gives most of the free pages back (bounded steps of 4096).
    const start = Date.now()
    while (m.bl.fileStats().freePages > 1024 && Date.now() - start < 5000) await new Promise((r) => setTimeout(r, 20))
    const shrunk = m.bl.fileStats()
    expect(shrunk.pages).toBeLessThan(afterFirst / 2)
    expect(fs.statSync(path.join(m.dir, SQLITE_FILE)).size).toBeLessThan(afterFirst * 4096 / 2)
    // A second burst of the same size needs no more pages than the first.
    await drain(await burst())
    expect(m.bl.fileStats().pages).toBeLessThanOrEqual(afterFirst + 16)
    expect(await m.restart()).toEqual([])
  })
})

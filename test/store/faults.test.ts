/**
 * The SQLite store's durability levels and runtime faults, on real files:
 * -f 0 fsyncs in every commit, -f N fsyncs the WAL on a timer, -F never; a
 * database locked by another connection holds the turn's callbacks and
 * refuses puts until the lock goes, then commits, losing nothing; the log
 * says so both times.
 */
import path from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { SQLITE_FILE } from '../../src/store/layout.js'
import type { SqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import type { BinlogOptions } from '../../src/store/binlog/binlog.js'
import { Model, tmpDir } from '../binlog/helpers.js'
import { sqliteEngine } from './engines.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function model(overrides: Partial<BinlogOptions> & { holdWriteLock?: boolean } = {}): Promise<Model<SqliteStore>> {
  const m = new Model(tmpDir(), overrides, sqliteEngine)
  await m.open()
  return m
}

describe('durability levels', () => {
  it('-f 0: each flush is one transaction whose COMMIT fsyncs; callbacks at once', async () => {
    const m = await model({ fsyncMs: 0 })
    let acked = 0
    for (let i = 0; i < 20; i++) {
      for (let k = 0; k < 5; k++) m.put(`job ${i}.${k}`) // five changes, one transaction
      m.bl.whenDurable(m.bl.flush(), () => acked++)
      expect(acked).toBe(i + 1)
    }
    expect(m.bl.stats().fsyncs).toBe(20)
    expect(m.bl.stats().recordsWritten).toBe(100)
  })

  it('-f N: callbacks on commit; the WAL is fsynced within N ms, at most once per N ms, even when idle', async () => {
    const m = await model({ fsyncMs: 40 })
    let acked = 0
    for (let i = 0; i < 20; i++) {
      m.put(`job ${i}`)
      m.bl.whenDurable(m.bl.flush(), () => acked++)
    }
    expect(acked).toBe(20)
    expect(m.bl.stats().fsyncs).toBe(0)
    const idle = performance.now()
    while (m.bl.stats().fsyncs === 0 && performance.now() - idle < 2000) await sleep(5)
    expect(performance.now() - idle).toBeLessThan(200)
    await sleep(60)
    expect(m.bl.stats().fsyncs).toBe(1) // nothing new since
    const start = performance.now()
    while (performance.now() - start < 300) {
      m.put('x')
      m.bl.flush()
      await sleep(2)
    }
    const n = m.bl.stats().fsyncs - 1
    expect(n).toBeLessThanOrEqual(Math.ceil((performance.now() - start) / 40) + 1)
    expect(n).toBeGreaterThanOrEqual(2)
  })

  it('-F: never fsyncs while running; close() still makes everything durable', async () => {
    const m = await model({ fsyncNever: true })
    for (let i = 0; i < 50; i++) {
      m.put(`job ${i}`)
      await m.commit()
    }
    await sleep(60)
    expect(m.bl.stats().fsyncs).toBe(0)
    expect(await m.restart()).toHaveLength(50)
  })

  it('a put and a delete in one turn leave no row but still move next_id', async () => {
    const m = await model()
    const j = m.put('short-lived')!
    m.delete(j)
    await m.commit()
    const db = new Database(path.join(m.dir, SQLITE_FILE), { readonly: true })
    expect(db.prepare('SELECT count(*) FROM jobs').pluck().get()).toBe(0)
    expect(db.prepare("SELECT value FROM meta WHERE key = 'next_id'").pluck().get()).toBe(2)
    db.close()
    expect(await m.restart()).toEqual([])
    expect(m.replayedNextId).toBe(2)
  })
})

describe('a database locked by another connection', () => {
  it('holds the turn, refuses puts, says so, then commits once the lock goes: nothing lost', async () => {
    // Without the held write lock, as if someone slipped in between two transactions.
    const m = await model({ holdWriteLock: false, retryMs: 10 })
    const a = m.put('before')!
    await m.commit()
    const other = new Database(path.join(m.dir, SQLITE_FILE), { timeout: 0 })
    other.exec('BEGIN IMMEDIATE')
    m.reserve(a)
    m.bury(a)
    m.put('during')
    let acked = false
    m.bl.whenDurable(m.bl.flush(), () => (acked = true))
    expect(acked).toBe(false)
    expect(m.bl.canPut()).toBe(false)
    expect(m.lines.some((l) => /locked by another connection/.test(l.msg))).toBe(true)
    await sleep(50)
    expect(acked).toBe(false) // the retries keep failing while the lock is held
    other.exec('COMMIT')
    other.close()
    const start = Date.now()
    while (!acked && Date.now() - start < 2000) await sleep(5)
    expect(acked).toBe(true)
    expect(m.bl.canPut()).toBe(true)
    expect(m.lines.some((l) => /the lock is gone/.test(l.msg))).toBe(true)
    const rec = await m.restart()
    expect(rec.map((r) => [r.id, r.state, r.reserves, r.buries])).toEqual([
      [2, 'ready', 0, 0],
      [1, 'buried', 1, 1],
    ])
  })
})

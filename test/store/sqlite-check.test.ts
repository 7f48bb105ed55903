/**
 * The start-up integrity check of a large SQLite store runs on a worker
 * thread beside the replay (src/store/sqlite/check.ts): damage it finds still
 * stops the start with the store's corruption error, and a sound large store
 * opens whole.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { StoreCorruptError } from '../../src/store/errors.js'
import { SQLITE_FILE } from '../../src/store/layout.js'
import type { SqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { Model, tmpDir } from '../binlog/helpers.js'
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

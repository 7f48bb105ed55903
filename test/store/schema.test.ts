/**
 * The SQLite store's file: the documented schema (docs/sqlite-schema.md), a
 * newer schema version refused before anything is written, damaged and
 * foreign files refused, the directory lock and the held write lock, and a
 * directory holding the other engine's data refused. Errors are checked at
 * the module and, for the exit codes and log lines, through the real CLI.
 */
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { BinlogLockedError } from '../../src/store/binlog/errors.js'
import { toConfig } from '../../src/config.js'
import { StoreCorruptError, StoreLockedError, StoreMismatchError, StoreVersionError } from '../../src/store/errors.js'
import { SQLITE_FILE } from '../../src/store/layout.js'
import { openStore } from '../../src/store/open.js'
import { APPLICATION_ID, SCHEMA_VERSION } from '../../src/store/sqlite/schema.js'
import type { SqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { MAX_JOB_SIZE_SQLITE } from '../../src/store/store.js'
import { ensureBuilt, killAll, spawnCli } from '../helpers/process.js'
import { Model, tmpDir } from '../binlog/helpers.js'
import { binlogEngine, sqliteEngine } from './engines.js'

beforeAll(() => ensureBuilt())
afterEach(async () => {
  await killAll()
})

const sqliteModel = (dir = tmpDir()): Model<SqliteStore> => new Model(dir, {}, sqliteEngine)

async function openError(m: Model<SqliteStore>): Promise<Error> {
  try {
    await m.open()
  } catch (err) {
    return err as Error
  }
  throw new Error('open succeeded')
}

/** Starts the CLI on `dir` with --store sqlite and returns its exit code and log messages. */
async function startFails(dir: string, store = 'sqlite'): Promise<{ code: number | null; msgs: string[] }> {
  const proc = spawnCli(['-b', dir, '--store', store, '-p0', '-l127.0.0.1'])
  const exit = await proc.exited(10_000)
  return { code: exit.code, msgs: proc.logLines.map((l) => String(l['msg'])) }
}

describe('schema', () => {
  it('a new store has the documented tables, columns, ids and settings', async () => {
    const m = sqliteModel()
    await m.open()
    m.put('x')
    await m.commit()
    m.bl.close()
    const db = new Database(path.join(m.dir, SQLITE_FILE), { readonly: true })
    try {
      const cols = db.prepare('SELECT name, type, "notnull" AS nn, pk FROM pragma_table_info(?)').raw()
      expect(cols.all('jobs')).toEqual([
        ['id', 'INTEGER', 0, 1],
        ['tube', 'TEXT', 1, 0],
        ['state', 'TEXT', 1, 0],
        ['pri', 'INTEGER', 1, 0],
        ['delay_ms', 'INTEGER', 1, 0],
        ['ttr_ms', 'INTEGER', 1, 0],
        ['created_at', 'INTEGER', 1, 0],
        ['due_at', 'INTEGER', 0, 0],
        ['bury_seq', 'INTEGER', 0, 0],
        ['reserves', 'INTEGER', 1, 0],
        ['timeouts', 'INTEGER', 1, 0],
        ['releases', 'INTEGER', 1, 0],
        ['buries', 'INTEGER', 1, 0],
        ['kicks', 'INTEGER', 1, 0],
        ['body', 'BLOB', 1, 0],
      ])
      expect(cols.all('meta')).toEqual([
        ['key', 'TEXT', 1, 1],
        ['value', 'INTEGER', 1, 0],
      ])
      expect(db.prepare('SELECT key, value FROM meta ORDER BY key').raw().all()).toEqual([
        ['next_id', 2],
        ['schema_version', SCHEMA_VERSION],
      ])
      expect(db.pragma('application_id', { simple: true })).toBe(APPLICATION_ID)
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
      expect(db.pragma('auto_vacuum', { simple: true })).toBe(2) // incremental
      // The body is stored as the client sent it: no CRLF.
      expect(db.prepare('SELECT body FROM jobs').pluck().get()).toEqual(Buffer.from('x'))
    } finally {
      db.close()
    }
  })

  it('the state column accepts only the four states', async () => {
    const m = sqliteModel()
    await m.open()
    m.bl.close()
    const db = new Database(path.join(m.dir, SQLITE_FILE))
    try {
      const insert = db.prepare("INSERT INTO jobs VALUES (?, 'default', ?, 0, 0, 1000, 0, NULL, NULL, 0, 0, 0, 0, 0, x'')")
      expect(() => insert.run(1, 'lost')).toThrow(/CHECK constraint/)
      ;['ready', 'reserved', 'delayed', 'buried'].forEach((state, i) => insert.run(i + 2, state))
    } finally {
      db.close()
    }
  })
})

describe('refused files', () => {
  it('a newer schema version: TSB_ERR_STORE_VERSION, the file untouched; the CLI exits 11 saying why', async () => {
    const m = sqliteModel()
    await m.open()
    m.put('keep me')
    await m.commit()
    m.bl.close()
    const file = path.join(m.dir, SQLITE_FILE)
    const db = new Database(file)
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(SCHEMA_VERSION + 1)
    db.pragma('journal_mode = DELETE') // as a newer build might leave it: this build must not change it
    db.close()
    const before = fs.readFileSync(file)
    const err = await openError(sqliteModel(m.dir))
    expect(err).toBeInstanceOf(StoreVersionError)
    expect(err).toMatchObject({ code: 'TSB_ERR_STORE_VERSION', found: SCHEMA_VERSION + 1, supported: SCHEMA_VERSION })
    expect(err.message).toMatch(/newer tsbeanstalkd/)
    expect(fs.readFileSync(file).equals(before)).toBe(true)
    expect(fs.existsSync(`${file}-wal`)).toBe(false)

    const { code, msgs } = await startFails(m.dir)
    expect(code).toBe(11)
    expect(msgs.some((s) => /schema version 2; this build reads version 1/.test(s))).toBe(true)
  })

  it('a file that is not a database, and a database that is not ours: TSB_ERR_STORE_CORRUPT, exit 11', async () => {
    const dir = tmpDir()
    fs.writeFileSync(path.join(dir, SQLITE_FILE), Buffer.alloc(8192, 0x5a))
    expect(await openError(sqliteModel(dir))).toMatchObject({ code: 'TSB_ERR_STORE_CORRUPT', name: 'StoreCorruptError' })
    expect((await startFails(dir)).code).toBe(11)

    const other = tmpDir()
    const db = new Database(path.join(other, SQLITE_FILE))
    db.exec('CREATE TABLE invoices (id INTEGER PRIMARY KEY)')
    db.close()
    const err = await openError(sqliteModel(other))
    expect(err).toBeInstanceOf(StoreCorruptError)
    expect(err.message).toMatch(/not a tsbeanstalkd store/)
  })

  it('a damaged page is found at start (quick_check); the message says how to salvage', async () => {
    const m = sqliteModel()
    await m.open()
    for (let i = 0; i < 300; i++) m.put(`job ${i} `.repeat(40))
    await m.commit()
    m.bl.close()
    const file = path.join(m.dir, SQLITE_FILE)
    const fd = fs.openSync(file, 'r+')
    fs.writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, 4096 * 5) // scribble over page 6
    fs.closeSync(fd)
    const err = await openError(sqliteModel(m.dir))
    expect(err).toBeInstanceOf(StoreCorruptError)
    expect(err.message).toMatch(/\.recover/)
    const { code, msgs } = await startFails(m.dir)
    expect(code).toBe(11)
    expect(msgs.some((s) => /damaged store/.test(s))).toBe(true)
  })
})

describe('locks', () => {
  it('one server per directory: a second open gets the directory lock error', async () => {
    const dir = tmpDir()
    const a = sqliteModel(dir)
    await a.open()
    expect(await openError(sqliteModel(dir))).toBeInstanceOf(BinlogLockedError)
    a.bl.close()
    await sqliteModel(dir).open()
  })

  it('while the store is open, other connections read but cannot write', async () => {
    const m = sqliteModel()
    await m.open()
    m.put('a')
    await m.commit()
    const db = new Database(path.join(m.dir, SQLITE_FILE), { timeout: 0 })
    try {
      expect(db.prepare('SELECT count(*) FROM jobs').pluck().get()).toBe(1)
      expect(() => db.prepare('DELETE FROM jobs').run()).toThrow(expect.objectContaining({ code: 'SQLITE_BUSY' }))
    } finally {
      db.close()
    }
    m.put('b')
    await m.commit()
    expect(await m.restart()).toHaveLength(2)
  })

  it('an open write transaction elsewhere at start: TSB_ERR_STORE_LOCKED (exit 10)', async () => {
    const m = sqliteModel()
    await m.open()
    m.bl.close()
    const db = new Database(path.join(m.dir, SQLITE_FILE), { timeout: 0 })
    db.exec('BEGIN IMMEDIATE')
    try {
      expect(await openError(sqliteModel(m.dir))).toBeInstanceOf(StoreLockedError)
      const { code, msgs } = await startFails(m.dir)
      expect(code).toBe(10)
      expect(msgs.some((s) => /locked by another connection/.test(s))).toBe(true)
    } finally {
      db.exec('ROLLBACK')
      db.close()
    }
    await sqliteModel(m.dir).open()
  })
})

describe('a directory of the other engine', () => {
  it('is refused both ways with the command that converts it (exit 5)', async () => {
    const b = new Model(tmpDir(), {}, binlogEngine)
    await b.open()
    b.put('in the binlog')
    await b.commit()
    b.bl.close()
    const s = sqliteModel()
    await s.open()
    s.bl.close()
    const opts = (dir: string, engine: 'binlog' | 'sqlite'): Parameters<typeof openStore>[0] => ({ ...new Model(dir).options(), engine })
    const into = new Model(tmpDir())
    await expect(openStore(opts(b.dir, 'sqlite'), into)).rejects.toThrow(StoreMismatchError)
    await expect(openStore(opts(b.dir, 'sqlite'), into)).rejects.toThrow(/convert --from binlog --to sqlite/)
    await expect(openStore(opts(s.dir, 'binlog'), into)).rejects.toThrow(/start with --store sqlite/)
    const { code, msgs } = await startFails(b.dir, 'sqlite')
    expect(code).toBe(5)
    expect(msgs.some((m) => /holds a binlog/.test(m))).toBe(true)
    // The right engine opens each.
    for (const [dir, engine] of [[b.dir, 'binlog'], [s.dir, 'sqlite']] as const) {
      const store = await openStore(opts(dir, engine), new Model(tmpDir()))
      store.close()
    }
  })
})

describe('flags', () => {
  it('--store sqlite clamps -z to what a SQLite row holds; --store without -b only warns', () => {
    const warned: string[] = []
    const c = toConfig({ binlogDir: '/x', store: 'sqlite', maxJobSize: '1073741824' }, (w) => warned.push(w))
    expect(c.maxJobSize).toBe(MAX_JOB_SIZE_SQLITE)
    expect(warned.join()).toMatch(/SQLite store holds at most/)
    expect(toConfig({ binlogDir: '/x', maxJobSize: '1073741824' }, () => undefined).maxJobSize).toBe(1073741824)
    const w2: string[] = []
    expect(toConfig({ store: 'sqlite' }, (w) => w2.push(w)).store).toBe('sqlite')
    expect(w2).toEqual(['--store has no effect without -b'])
    expect(() => toConfig({ store: 'mysql' }, () => undefined)).toThrow(/invalid --store/)
  })
})

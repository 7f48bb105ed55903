/**
 * Converting a -b directory between engines loses nothing: a binlog holding
 * jobs in every state (reserved included, bury order unlike id order,
 * counters, bodies from empty to 1 MiB, a next id above every live id) goes
 * to SQLite and back field for field, and each engine replays it the same.
 * Through the CLI: a real server's directory, converted, restarted on the
 * other engine; refusals; and a conversion interrupted after its new files
 * were complete, which the same command finishes.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { CONVERT_DIR, SQLITE_FILE, layoutOf } from '../../src/store/layout.js'
import { convertDir } from '../../src/store/convert.js'
import { difference, readBinlog, readSqlite } from '../../src/store/snapshot.js'
import type { DurableStore } from '../../src/store/store.js'
import { RawClient } from '../helpers/client.js'
import { ensureBuilt, killAll, spawnCli } from '../helpers/process.js'
import { Model, captureLog, plain, tmpDir } from '../binlog/helpers.js'
import { binlogEngine, sqliteEngine } from './engines.js'

beforeAll(() => ensureBuilt())
afterEach(async () => {
  vi.restoreAllMocks()
  await killAll()
})

/** A binlog with a job in every state and every field set; returns its directory. */
async function everyState(): Promise<string> {
  const m = new Model(tmpDir(), { fileSize: 64 * 1024 }, binlogEngine)
  await m.open()
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
  const js = [
    m.put('ready', { pri: 0, tube: 'alpha' })!,
    m.put('', { pri: 4294967295 })!, // empty body
    m.put(all, { tube: 'bin', ttrMs: 3_600_000 })!,
    m.put('d'.repeat(65535), { delayMs: 90_000_000 })!,
    m.put('m'.repeat(1 << 20), { tube: 'big' })!,
    m.put('soon', { delayMs: 1000 })!, // due before the conversion runs: still recorded delayed
  ]
  m.clock.advance(5000)
  for (const i of [4, 0, 2]) {
    m.reserve(js[i]!)
    m.bury(js[i]!, 10 + i) // bury order 5, 1, 3: unlike id order
  }
  m.kick(js[0]!)
  m.reserve(js[0]!)
  m.bury(js[0]!) // to the back
  m.reserve(js[1]!)
  m.release(js[1]!, 7, 30_000) // released with delay
  m.reserve(js[3]!) // reserved when the server stopped
  const t = m.put('timed out')!
  m.reserve(t)
  m.timeout(t)
  for (let i = 0; i < 5; i++) m.delete(m.put(`gone ${i}`)!) // next id runs ahead of every live id
  await m.commit()
  m.bl.close()
  return m.dir
}

/** What an engine replays from `dir` (and its next id). */
async function replayed(dir: string, engine: typeof binlogEngine | typeof sqliteEngine): Promise<{ rec: unknown[]; nextId: number }> {
  const m = new Model<DurableStore>(dir, {}, engine)
  await m.open()
  // Bodies as strings: a deep equal walks a Buffer byte by byte, far slower on a MiB.
  const out = { rec: plain(m.recovered).map((r) => ({ ...r, body: r.body.toString('base64') })), nextId: m.replayedNextId }
  m.bl.close()
  return out
}

describe('convertDir', () => {
  it('binlog -> sqlite -> binlog keeps every job, every field, bury order and next id', async () => {
    const dir = await everyState()
    const { log } = captureLog()
    const original = readBinlog(dir)
    expect(original.jobs.map((j) => j.state).sort()).toEqual(['buried', 'buried', 'buried', 'delayed', 'delayed', 'ready', 'reserved'])
    expect(original.nextId).toBe(13)
    const fromBinlog = await replayed(dir, binlogEngine)

    const r = convertDir(dir, 'binlog', 'sqlite', 1 << 20, log)
    expect(r).toMatchObject({ jobs: 7, nextId: 13 })
    const l = layoutOf(dir)
    expect(l.binlog).toEqual([])
    expect(l.sqlite).toEqual([SQLITE_FILE])
    expect(l.converting).toBe(false)
    expect(fs.readdirSync(r.backup).filter((f) => f.startsWith('binlog.')).length).toBeGreaterThan(0)
    expect(difference(original, readSqlite(path.join(dir, SQLITE_FILE)))).toBeNull()
    expect(await replayed(dir, sqliteEngine)).toEqual(fromBinlog)

    convertDir(dir, 'sqlite', 'binlog', 1 << 20, log)
    expect(layoutOf(dir).sqlite).toEqual([])
    expect(difference(original, readBinlog(dir))).toBeNull()
    expect(await replayed(dir, binlogEngine)).toEqual(fromBinlog)
  })

  it('refuses to convert onto an existing store, from nothing, or to the same engine', async () => {
    const { log } = captureLog()
    const dir = await everyState()
    expect(() => convertDir(tmpDir(), 'binlog', 'sqlite', 1 << 20, log)).toThrow(/holds no binlog store/)
    expect(() => convertDir(dir, 'sqlite', 'binlog', 1 << 20, log)).toThrow(/already holds a binlog store/)
    expect(() => convertDir(dir, 'binlog', 'binlog', 1 << 20, log)).toThrow(/both binlog/)
    convertDir(dir, 'binlog', 'sqlite', 1 << 20, log)
    expect(() => convertDir(dir, 'binlog', 'sqlite', 1 << 20, log)).toThrow(/already holds a sqlite store/)
  })

  it('interrupted after its new files were complete: servers refuse the directory; the same command finishes', async () => {
    const { log } = captureLog()
    const dir = await everyState()
    const original = readBinlog(dir)
    const real = fs.linkSync
    // Die on the first move of a new file into DIR: the old files have been moved aside already.
    vi.spyOn(fs, 'linkSync').mockImplementation((from, to) => {
      if (String(from).includes(CONVERT_DIR)) throw new Error('simulated crash')
      real(from, to)
    })
    expect(() => convertDir(dir, 'binlog', 'sqlite', 1 << 20, log)).toThrow(/cannot move/)
    vi.restoreAllMocks()
    const l = layoutOf(dir)
    expect(l.converting).toBe(true)
    expect(l.binlog).toEqual([])
    expect(l.sqlite).toEqual([])
    for (const store of ['binlog', 'sqlite']) {
      const proc = spawnCli(['-b', dir, '--store', store, '-p0', '-l127.0.0.1'])
      expect((await proc.exited(10_000)).code).toBe(5)
      expect(proc.logLines.some((x) => /conversion was interrupted/.test(String(x['msg'])))).toBe(true)
    }
    convertDir(dir, 'binlog', 'sqlite', 1 << 20, log)
    expect(layoutOf(dir)).toEqual({ binlog: [], sqlite: [SQLITE_FILE], converting: false })
    expect(difference(original, readSqlite(path.join(dir, SQLITE_FILE)))).toBeNull()
  })
})

describe('tsbeanstalkd convert', () => {
  it("converts a real server's directory; the other engine serves every job with its state; ids continue", { timeout: 30_000 }, async () => {
    const dir = tmpDir()
    const a = spawnCli(['-b', dir, '-f', '0', '-p0', '-l127.0.0.1'])
    const c = await RawClient.connect((await a.listening(10_000)).port!)
    const ids: number[] = []
    for (let i = 0; i < 20; i++) {
      ids.push(Number(/^INSERTED (\d+)/.exec(await c.call(`put ${i} ${i % 5 === 0 ? 600 : 0} 60 6\r\njob-${String(i).padStart(2, '0')}\r\n`))![1]))
    }
    for (let i = 0; i < 3; i++) {
      const m = /^RESERVED (\d+) (\d+)\r\n$/.exec(await c.call('reserve-with-timeout 0\r\n'))!
      await c.read(Number(m[2]) + 2)
      expect(await c.call(`bury ${m[1]} 1\r\n`)).toBe('BURIED\r\n')
    }
    expect(await c.call(`delete ${ids[19]}\r\n`)).toBe('DELETED\r\n')
    const before = new Map<number, string>()
    for (const id of ids.slice(0, 19)) before.set(id, (await c.stats(`stats-job ${id}\r\n`))['state']!)
    c.close()

    // While the server runs, the directory is locked.
    const busy = spawnCli(['convert', '--from', 'binlog', '--to', 'sqlite', dir])
    expect((await busy.exited(10_000)).code).toBe(10)
    a.signal('SIGTERM')
    expect((await a.exited(10_000)).code).toBe(0)

    const conv = spawnCli(['convert', '--from', 'binlog', '--to', 'sqlite', dir])
    expect(await conv.exited(10_000)).toEqual({ code: 0, signal: null })
    expect(conv.logLines.some((l) => /^converted 19 jobs from binlog to sqlite/.test(String(l['msg'])))).toBe(true)
    const again = spawnCli(['convert', '--from', 'binlog', '--to', 'sqlite', dir])
    expect((await again.exited(10_000)).code).toBe(5)
    const bad = spawnCli(['convert', '--from', 'mysql', '--to', 'sqlite', dir])
    expect((await bad.exited(10_000)).code).toBe(5)

    const b = spawnCli(['-b', dir, '--store', 'sqlite', '-p0', '-l127.0.0.1'])
    const d = await RawClient.connect((await b.listening(10_000)).port!)
    for (const [id, state] of before) {
      expect(await d.call(`peek ${id}\r\n`)).toBe(`FOUND ${id} 6\r\n`)
      expect(await d.read(8)).toBe(`job-${String(ids.indexOf(id)).padStart(2, '0')}\r\n`)
      expect((await d.stats(`stats-job ${id}\r\n`))['state'], `job ${id}`).toBe(state)
    }
    expect(await d.call(`peek ${ids[19]}\r\n`)).toBe('NOT_FOUND\r\n')
    expect(await d.call('put 0 0 60 1\r\nz\r\n')).toBe(`INSERTED ${ids[19]! + 1}\r\n`)
    d.close()
  })
})

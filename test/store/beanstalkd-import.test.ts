/**
 * Importing a beanstalkd binlog at start is crash safe: interrupted at each
 * point (writing the new store, marking it complete, moving the reference's
 * files out, moving the new ones in, removing the staging directory), the
 * next start either imports again from the untouched reference files or
 * finishes; the result is always every job once, and the reference's files
 * unchanged in the backup directory. Also: both engines, a directory holding
 * both kinds of files, import-beanstalkd's refusals.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { pino } from 'pino'
import { IMPORT_STAGING, importAtStart, importInto } from '../../src/store/beanstalkd/import.js'
import { RefState } from '../../src/store/beanstalkd/format.js'
import { openStore } from '../../src/store/open.js'
import { MARKER } from '../../src/store/staging.js'
import type { DurableStore, Engine } from '../../src/store/store.js'
import { Model, tmpDir } from '../binlog/helpers.js'
import { NOW, file7, writeFiles } from './beanstalkd-fixtures.js'

const log = pino({ level: 'silent' })
afterEach(() => {
  vi.restoreAllMocks()
})

/** A reference directory: two files (one zero-tailed), its empty lock file. */
function referenceDir(): { dir: string; hashes: Record<string, string> } {
  const dir = tmpDir()
  writeFiles(dir, {
    'binlog.3': file7(
      [
        { id: 1, tube: 'a', body: 'one', pri: 5 },
        { id: 2, tube: 'b', body: 'two', state: RefState.DELAYED, delayMs: 3_600_000, deadlineWall: Date.now() + 3_600_000 },
        { id: 3, tube: 'a', body: 'three' },
        { id: 3, state: RefState.BURIED, buries: 1, bodySize: 7 },
      ],
      4096,
    ),
    'binlog.4': file7([{ id: 4, tube: 'c', body: 'four', reserves: 2, state: RefState.RESERVED, createdAtWall: NOW }]),
  })
  fs.writeFileSync(path.join(dir, 'lock'), '', { mode: 0o600 })
  return { dir, hashes: hashes(dir) }
}

function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of fs.readdirSync(dir)) {
    const p = path.join(dir, name)
    if (fs.statSync(p).isFile()) out[name] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')
  }
  return out
}

/** Opens DIR as a start does (openStore: importing first), replaying into a model (closed after the test). */
async function open(dir: string, engine: Engine = 'binlog'): Promise<Model<DurableStore>> {
  const m = new Model<DurableStore>(dir, { fileSize: 1 << 20, fsyncMs: 0, maxJobSize: 65535 }, { name: engine, flags: [], open: (o, into) => openStore({ ...o, engine }, into) })
  await m.open()
  return m
}

const importNow = (dir: string, engine: Engine = 'binlog'): ReturnType<typeof importAtStart> =>
  importAtStart(dir, { engine, fileSize: 1 << 20, maxJobSize: 65535, log })

/** The store holds the four jobs, and the backup the reference's files unchanged; no staging is left. */
async function expectImported(dir: string, original: Record<string, string>, engine: Engine = 'binlog'): Promise<Model<DurableStore>> {
  const s = await open(dir, engine)
  expect(s.recovered.map((j) => [j.id, j.tube, j.state, j.body.toString()])).toEqual([
    [1, 'a', 'ready', 'one\r\n'],
    [2, 'b', 'delayed', 'two\r\n'],
    [4, 'c', 'ready', 'four\r\n'],
    [3, 'a', 'buried', 'three\r\n'],
  ])
  expect(s.recovered.find((j) => j.id === 4)).toMatchObject({ reserves: 2, createdAtWall: NOW })
  expect(s.replayedNextId).toBe(5)
  const backups = fs.readdirSync(dir).filter((n) => n.startsWith('beanstalkd-binlog-'))
  expect(backups).toHaveLength(1)
  const kept = hashes(path.join(dir, backups[0]!))
  for (const [name, h] of Object.entries(original)) expect(kept[name], name).toBe(h)
  expect(fs.existsSync(path.join(dir, IMPORT_STAGING))).toBe(false)
  expect(fs.statSync(path.join(dir, 'lock')).isDirectory()).toBe(true)
  return s
}

function crashOn<K extends 'linkSync' | 'writeFileSync' | 'fsyncSync' | 'rmdirSync'>(fn: K, when: (args: unknown[]) => boolean): void {
  const real = fs[fn] as (...a: unknown[]) => unknown
  vi.spyOn(fs, fn).mockImplementation(((...args: unknown[]) => {
    if (when(args)) throw new Error('simulated crash')
    return real(...args)
  }) as never)
}

describe('importing a beanstalkd binlog at start', () => {
  it.each(['binlog', 'sqlite'] as const)('imports in place (--store %s); a restart replays the imported store', async (engine) => {
    const { dir, hashes: h } = referenceDir()
    const r = importNow(dir, engine)
    expect(r?.read.files.map((f) => f.stopped)).toEqual([null, null])
    const first = await expectImported(dir, h, engine)
    first.bl.close()
    expect(importNow(dir, engine)).toBeNull()
    await expectImported(dir, h, engine)
  })

  it('interrupted while writing the new store: the reference files are untouched; the next start imports again', async () => {
    const { dir, hashes: h } = referenceDir()
    crashOn('fsyncSync', () => fs.existsSync(path.join(dir, IMPORT_STAGING)))
    expect(() => importNow(dir)).toThrow('simulated crash')
    vi.restoreAllMocks()
    const now = hashes(dir)
    for (const [name, v] of Object.entries(h)) expect(now[name]).toBe(v)
    await expectImported(dir, h)
  })

  it('interrupted writing COMPLETE: the same', async () => {
    const { dir, hashes: h } = referenceDir()
    crashOn('writeFileSync', (a) => String(a[0]).endsWith(MARKER))
    expect(() => importNow(dir)).toThrow('simulated crash')
    vi.restoreAllMocks()
    expect(fs.existsSync(path.join(dir, 'binlog.3'))).toBe(true)
    await expectImported(dir, h)
  })

  it('interrupted moving the reference files out (one moved, one not): the next start finishes', async () => {
    const { dir, hashes: h } = referenceDir()
    let moves = 0
    crashOn('linkSync', (a) => String(a[1]).includes('beanstalkd-binlog-') && ++moves === 2)
    expect(() => importNow(dir)).toThrow(/cannot move/)
    vi.restoreAllMocks()
    expect(fs.readdirSync(dir).filter((n) => /^binlog\.\d+$/.test(n))).toHaveLength(1)
    await expectImported(dir, h)
  })

  it('interrupted moving the new files in, or removing the staging directory: the next start finishes', async () => {
    for (const crash of [
      () => crashOn('linkSync', (a) => String(a[0]).includes(IMPORT_STAGING)),
      () => crashOn('rmdirSync', (a) => String(a[0]).endsWith(IMPORT_STAGING)),
    ]) {
      const { dir, hashes: h } = referenceDir()
      crash()
      expect(() => importNow(dir)).toThrow()
      vi.restoreAllMocks()
      // Moving in: COMPLETE still there; removing: only the (empty) staging directory is left.
      expect(fs.existsSync(path.join(dir, IMPORT_STAGING))).toBe(true)
      const m = await expectImported(dir, h)
      m.bl.close()
    }
  })

  it('a directory holding both tsbeanstalkd and beanstalkd files is refused, and left as it was', async () => {
    const dir = tmpDir()
    const first = await open(dir)
    first.bl.close()
    writeFiles(dir, { 'binlog.9': file7([{ id: 1, tube: 'a', body: 'x' }]) })
    const before = hashes(dir)
    await expect(open(dir)).rejects.toThrow(expect.objectContaining({ code: 'TSB_ERR_STORE_FOREIGN', message: expect.stringMatching(/also holds a tsbeanstalkd store/) }))
    expect(hashes(dir)).toEqual(before)
  })

  it('an empty lock file beside a store of ours is not an import: the lock check names it', async () => {
    const dir = tmpDir()
    const first = await open(dir)
    first.bl.close()
    fs.rmSync(path.join(dir, 'lock'), { recursive: true })
    fs.writeFileSync(path.join(dir, 'lock'), '')
    const before = hashes(dir)
    await expect(open(dir)).rejects.toThrow(expect.objectContaining({ code: 'TSB_ERR_STORE_FOREIGN', message: expect.stringMatching(/lock: a regular file where tsbeanstalkd keeps its lock directory/) }))
    expect(hashes(dir)).toEqual(before)
  })

  it('a staging directory holding a file tsbeanstalkd does not write there is refused', () => {
    const { dir } = referenceDir()
    fs.mkdirSync(path.join(dir, IMPORT_STAGING))
    fs.writeFileSync(path.join(dir, IMPORT_STAGING, 'notes.txt'), 'mine')
    expect(() => importNow(dir)).toThrow(expect.objectContaining({ code: 'TSB_ERR_STORE_FOREIGN' }))
    expect(fs.readFileSync(path.join(dir, IMPORT_STAGING, 'notes.txt'), 'utf8')).toBe('mine')
  })
})

describe('import-beanstalkd SRC DIR', () => {
  it('reads SRC without changing it; refuses a DIR that holds a store and a SRC without binlog files', async () => {
    const { dir: src, hashes: h } = referenceDir()
    const dir = path.join(tmpDir(), 'new')
    const o = { engine: 'binlog' as const, fileSize: 1 << 20, maxJobSize: 65535, log }
    expect(importInto(src, dir, o).read.jobs).toHaveLength(4)
    expect(hashes(src)).toEqual(h)
    expect(() => importInto(src, dir, o)).toThrow(/already holds a store/)
    expect(() => importInto(tmpDir(), path.join(tmpDir(), 'x'), o)).toThrow(/no beanstalkd binlog files/)
    const s = await open(dir)
    expect(s.recovered.map((j) => j.id)).toEqual([1, 2, 4, 3])
  })
})

/**
 * A file tsbeanstalkd did not write is never deleted, truncated, renamed or
 * overwritten: every path that removes or rewrites a file in DIR (replay's
 * torn-file handling, the writer's new files, compaction's removals, the
 * space reserve, the lock, the SQLite store, the Unix socket) either proves
 * the file is ours first or stops the start with a ForeignFileError naming
 * it, leaving the directory as it was.
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { MAGIC } from '../../src/store/binlog/record.js'
import { nodeFs } from '../../src/store/io.js'
import { killAll, ensureBuilt, spawnCli } from '../helpers/process.js'
import { sqliteEngine } from '../store/engines.js'
import { Model, WARN, binlogFiles, tmpDir } from './helpers.js'

beforeAll(() => ensureBuilt(), 120_000)
afterEach(async () => {
  await killAll()
})

function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath, e.name)
    const st = fs.lstatSync(p)
    out[path.relative(dir, p)] = st.isFile() ? crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex') : st.isDirectory() ? 'dir' : 'link'
  }
  return out
}

async function openError(m: Model<never> | Model): Promise<unknown> {
  try {
    await m.open()
  } catch (err) {
    return err
  }
  throw new Error('open succeeded')
}

async function stopped(files = 1): Promise<Model> {
  const m = new Model(tmpDir(), { fileSize: 4096 })
  await m.open()
  for (let i = 0; i < files * 40; i++) m.put('x'.repeat(100))
  await m.commit()
  m.bl.close()
  return m
}

describe('files tsbeanstalkd did not write', () => {
  it('a binlog.N without our magic stops the start (ForeignFileError), nothing changes', async () => {
    const m = await stopped()
    const n = binlogFiles(m.dir).length
    for (const junk of [Buffer.from('hello, this is my file\n'), Buffer.from([7, 0, 0, 0, 1, 2, 3, 4, 5])]) {
      const file = path.join(m.dir, `binlog.${n + 1}`)
      fs.writeFileSync(file, junk)
      const before = tree(m.dir)
      const err = await openError(m)
      expect(err).toMatchObject({ code: 'TSB_ERR_STORE_FOREIGN', file })
      expect((err as Error).message).toMatch(junk[0] === 7 ? /beanstalkd binlog file \(format version 7\)/ : /does not start with the magic/)
      expect(tree(m.dir)).toEqual(before)
      fs.rmSync(file)
    }
  })

  it('a file holding no data (empty, zeros, part of our header) is skipped and kept, through compaction and restarts', async () => {
    const m = await stopped(3)
    const files = binlogFiles(m.dir)
    const last = Number(files[files.length - 1]!.split('.')[1])
    const empties = { [`binlog.${last + 1}`]: Buffer.alloc(0), [`binlog.${last + 2}`]: MAGIC.subarray(0, 5), [`binlog.${last + 3}`]: Buffer.alloc(300) }
    for (const [name, b] of Object.entries(empties)) fs.writeFileSync(path.join(m.dir, name), b)
    await m.open()
    expect(m.recovered).toHaveLength(120)
    expect(m.bl.stats().currentIndex).toBe(last + 4)
    expect(m.lines.filter((l) => l.level === WARN && /holds no data/.test(l.msg))).toHaveLength(3)
    // Delete everything: compaction removes our files, passes the empty ones and keeps them.
    for (const j of [...m.jobs.values()]) m.delete(j)
    for (let i = 0; i < 200; i++) m.delete(m.put('y'.repeat(100))!)
    await m.commit()
    await m.restart()
    for (let i = 0; i < 100; i++) m.delete(m.put('z'.repeat(100))!)
    await m.commit()
    await m.restart()
    for (const [name, b] of Object.entries(empties)) expect(fs.readFileSync(path.join(m.dir, name)), name).toEqual(b)
    expect(binlogFiles(m.dir)).not.toContain('binlog.1') // ours did go
  })

  it('a binlog.N.new a crash left while creating it: removed when it holds only a header, refused otherwise', async () => {
    const m = await stopped()
    const header = fs.readFileSync(path.join(m.dir, 'binlog.1')).subarray(0, 40)
    fs.writeFileSync(path.join(m.dir, 'binlog.77.new'), header.subarray(0, 20))
    await m.open()
    expect(fs.existsSync(path.join(m.dir, 'binlog.77.new'))).toBe(false)
    m.bl.close()
    fs.writeFileSync(path.join(m.dir, 'binlog.78.new'), Buffer.concat([header, Buffer.from('records?')]))
    const before = tree(m.dir)
    expect(await openError(m)).toMatchObject({ code: 'TSB_ERR_STORE_FOREIGN', file: path.join(m.dir, 'binlog.78.new') })
    expect(tree(m.dir)).toEqual(before)
  })

  it('new files get their binlog.N name only with a header on disk; a failed link leaves neither name', async () => {
    const dir = tmpDir()
    const fail = new Model(dir, { fs: { ...nodeFs, linkSync: () => { throw Object.assign(new Error('no space'), { code: 'ENOSPC' }) } } })
    expect(await openError(fail)).toMatchObject({ code: 'TSB_ERR_BINLOG_FULL' })
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('binlog'))).toEqual([])
    const m = new Model(dir)
    await m.open()
    for (const name of fs.readdirSync(dir).filter((n) => n.startsWith('binlog'))) {
      expect(name).toMatch(/^binlog\.\d+$/)
      expect(fs.readFileSync(path.join(dir, name)).subarray(0, 8)).toEqual(MAGIC)
    }
  })

  it('DIR/reserve is rewritten only when it is all zeros', async () => {
    const m = await stopped()
    const reserve = path.join(m.dir, 'reserve')
    fs.writeFileSync(reserve, Buffer.alloc(1000)) // ours, another size: rewritten
    await m.open()
    expect(fs.statSync(reserve).size).toBe(64 * 1024)
    m.bl.close()
    const data = Buffer.concat([Buffer.alloc(5000), Buffer.from('precious')])
    fs.writeFileSync(reserve, data)
    const before = tree(m.dir)
    expect(await openError(m)).toMatchObject({ code: 'TSB_ERR_STORE_FOREIGN', file: reserve })
    expect(((await openError(m)) as Error).message).toMatch(/non-zero byte at offset 5000/)
    expect(tree(m.dir)).toEqual(before)
  })

  it('DIR/lock: an older version\'s holder file is ours; any other file or a symlink is refused', async () => {
    const m = await stopped()
    const lock = path.join(m.dir, 'lock')
    fs.rmSync(lock, { recursive: true })
    fs.writeFileSync(lock, 'not a pid\n')
    const before = tree(m.dir)
    expect(await openError(m)).toMatchObject({ code: 'TSB_ERR_STORE_FOREIGN', file: lock })
    expect(tree(m.dir)).toEqual(before)
    fs.rmSync(lock)
    fs.symlinkSync('/etc/hostname', lock)
    expect(await openError(m)).toMatchObject({ code: 'TSB_ERR_STORE_FOREIGN', file: lock })
    expect(fs.readlinkSync(lock)).toBe('/etc/hostname')
  })

  it('the SQLite store never rewrites a tsbeanstalkd.sqlite it did not make', async () => {
    const m = new Model(tmpDir(), {}, sqliteEngine)
    const file = path.join(m.dir, 'tsbeanstalkd.sqlite')
    fs.writeFileSync(file, 'my notes, not a database\n'.repeat(10))
    const before = tree(m.dir)
    expect(await openError(m as never)).toMatchObject({ code: 'TSB_ERR_STORE_CORRUPT' })
    expect(tree(m.dir)).toEqual(before)
  })

  it('-l unix:PATH never removes a file at PATH that is not a socket', async () => {
    const dir = tmpDir()
    const file = path.join(dir, 'data')
    fs.writeFileSync(file, 'keep me')
    const p = spawnCli(['-l', `unix:${file}`])
    expect((await p.exited(10_000)).code).toBe(111)
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me')
  })
})

/**
 * An operator's view of a running `--store sqlite` server: the README's
 * query through a read-only connection (and the sqlite3 shell, when
 * installed) matches the queue, the server keeps answering while a reader
 * holds a snapshot, writes from outside are refused, and backups taken while
 * the server writes (better-sqlite3's db.backup and the shell's .backup) are
 * consistent: whole transactions only, integrity_check ok.
 */
import { execFile, execFileSync } from 'node:child_process'
import { promisify } from 'node:util'
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { SQLITE_FILE } from '../../src/store/layout.js'
import { RawClient } from '../helpers/client.js'
import { ensureBuilt, killAll, spawnCli } from '../helpers/process.js'
import { tmpDir } from '../binlog/helpers.js'

const QUERY = 'SELECT tube, state, count(*) AS n FROM jobs GROUP BY 1, 2'

const shell = ((): string | null => {
  try {
    execFileSync('sqlite3', ['-version'], { stdio: 'ignore' })
    return 'sqlite3'
  } catch {
    return null
  }
})()

beforeAll(() => ensureBuilt())
afterEach(async () => {
  await killAll()
})

async function start(flags: string[] = []): Promise<{ dir: string; file: string; c: RawClient }> {
  const dir = tmpDir()
  const proc = spawnCli(['-b', dir, '--store', 'sqlite', ...flags, '-p0', '-l127.0.0.1'])
  const c = await RawClient.connect((await proc.listening(10_000)).port!)
  return { dir, file: path.join(dir, SQLITE_FILE), c }
}

const put = async (c: RawClient, body: string, delay = 0): Promise<number> =>
  Number(/^INSERTED (\d+)\r\n$/.exec(await c.call(`put 0 ${delay} 60 ${body.length}\r\n${body}\r\n`))![1])

describe('read-only inspection while the server runs', () => {
  it('the README query shows each tube and state; the server keeps serving meanwhile; writes are refused', async () => {
    const { file, c } = await start(['-f', '0'])
    for (let i = 0; i < 3; i++) await put(c, `default ${i}`)
    await put(c, 'later', 3600)
    expect(await c.call('use emails\r\n')).toBe('USING emails\r\n')
    for (let i = 0; i < 5; i++) await put(c, `email ${i}`)
    expect(await c.call('watch emails\r\n')).toBe('WATCHING 2\r\n')
    const reserve = async (): Promise<number> => {
      const m = /^RESERVED (\d+) (\d+)\r\n$/.exec(await c.call('reserve-with-timeout 0\r\n'))!
      await c.read(Number(m[2]) + 2)
      return Number(m[1])
    }
    expect(await c.call(`bury ${await reserve()} 0\r\n`)).toBe('BURIED\r\n')
    await reserve() // stays reserved; reservations are not recorded (a restart brings them back ready)

    const ro = new Database(file, { readonly: true, fileMustExist: true })
    try {
      const rows = ro.prepare(QUERY).raw().all()
      expect(rows).toEqual([
        ['default', 'buried', 1],
        ['default', 'delayed', 1],
        ['default', 'ready', 2],
        ['emails', 'ready', 5],
      ])
      // A reader holding a snapshot does not stop the server.
      ro.exec('BEGIN')
      ro.prepare(QUERY).all()
      const id = await put(c, 'while a reader holds a snapshot')
      expect(ro.prepare('SELECT count(*) FROM jobs WHERE id = ?').pluck().get(id)).toBe(0) // not in its snapshot
      ro.exec('COMMIT')
      expect(ro.prepare('SELECT count(*) FROM jobs WHERE id = ?').pluck().get(id)).toBe(1)
    } finally {
      ro.close()
    }
    const rw = new Database(file, { timeout: 0 })
    try {
      expect(() => rw.prepare("DELETE FROM jobs WHERE state = 'buried'").run()).toThrow(/locked/)
    } finally {
      rw.close()
    }
    expect(await c.call('use default\r\n')).toBe('USING default\r\n')
    expect(await c.call('peek-buried\r\n')).toMatch(/^FOUND /) // the refused DELETE changed nothing
    if (shell !== null) {
      const out = execFileSync(shell, ['-readonly', file, QUERY], { encoding: 'utf8' })
      expect(out).toBe('default|buried|1\ndefault|delayed|1\ndefault|ready|2\nemails|ready|6\n')
    }
    c.close()
  })
})

describe('backups while the server writes', () => {
  it('db.backup() and sqlite3 .backup give consistent snapshots: whole turns, integrity ok', { timeout: 30_000 }, async () => {
    const { dir, file, c } = await start(['-f', '50'])
    const out = tmpDir()
    let writing = true
    let pairs = 0
    // Each pair of puts (and later its pair of deletes) is one write, so one turn, so one transaction.
    const writer = (async (): Promise<void> => {
      const live: [number, number][] = []
      for (let k = 0; writing; k++) {
        const a = `pair-${k}-a-${'x'.repeat(k % 200)}`
        const b = `pair-${k}-b`
        c.send(`put 0 0 60 ${a.length}\r\n${a}\r\nput 0 0 60 ${b.length}\r\n${b}\r\n`)
        const ida = Number(/^INSERTED (\d+)/.exec(await c.line())![1])
        const idb = Number(/^INSERTED (\d+)/.exec(await c.line())![1])
        live.push([ida, idb])
        pairs++
        if (live.length > 50) {
          const [x, y] = live.shift()!
          c.send(`delete ${x}\r\ndelete ${y}\r\n`)
          expect(await c.line()).toBe('DELETED\r\n')
          expect(await c.line()).toBe('DELETED\r\n')
        }
      }
    })()
    const src = new Database(file, { readonly: true, fileMustExist: true })
    const copies: string[] = []
    try {
      for (let i = 0; i < 8; i++) {
        await new Promise((r) => setTimeout(r, 60))
        const dest = path.join(out, `copy-${i}.sqlite`)
        // Not execFileSync: the writer must keep writing while the shell copies.
        if (shell !== null && i % 2 === 1) await promisify(execFile)(shell, [file, `.backup '${dest}'`])
        else await src.backup(dest)
        copies.push(dest)
      }
    } finally {
      src.close()
      writing = false
      await writer
    }
    expect(pairs).toBeGreaterThan(100)
    const sizes: number[] = []
    for (const dest of copies) {
      const db = new Database(dest, { readonly: true })
      try {
        expect(db.pragma('integrity_check', { simple: true }), dest).toBe('ok')
        const bodies = db.prepare('SELECT CAST(body AS TEXT) FROM jobs').pluck().all() as string[]
        const halves = new Map<string, number>()
        for (const body of bodies) {
          const k = /^pair-(\d+)-/.exec(body)![1]!
          halves.set(k, (halves.get(k) ?? 0) + 1)
        }
        for (const [k, n] of halves) expect(n, `pair ${k} in ${dest}`).toBe(2)
        const maxId = db.prepare('SELECT max(id) FROM jobs').pluck().get() as number
        expect(db.prepare("SELECT value FROM meta WHERE key = 'next_id'").pluck().get()).toBeGreaterThan(maxId)
        sizes.push(bodies.length)
      } finally {
        db.close()
      }
    }
    expect(sizes.every((n) => n > 0)).toBe(true)
    c.close()
    expect(fs.existsSync(path.join(dir, SQLITE_FILE))).toBe(true)
  })
})

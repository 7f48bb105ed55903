/**
 * A full disk, for real, for each engine: the -b directory sits on a small
 * tmpfs the test mounts (needs root, as CI has; skipped with a reason
 * otherwise). Puts get
 * OUT_OF_MEMORY once the disk is full, everything else keeps working,
 * deletes still succeed, puts succeed again once space is freed, and every
 * acknowledged job is back after a restart.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { ensureBuilt, killAll, spawnCli } from '../helpers/process.js'
import { ENGINES } from '../store/engines.js'

let base: string

beforeAll(() => {
  ensureBuilt()
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-full-'))
})
afterEach(async () => {
  await killAll()
})
afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true })
})

/** Mounts a tmpfs of `size` under `base`; null if this machine will not (not root). */
function mountTmpfs(name: string, size: string): string | null {
  const mnt = path.join(base, name)
  fs.mkdirSync(mnt)
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt], { stdio: 'ignore' })
    return mnt
  } catch {
    return null
  }
}

const BODY = 60_000
/**
 * Per engine: the tmpfs size and flags. The SQLite store keeps a larger
 * reserve (one WAL checkpoint interval, about 4 MB, plus 1 MiB), so its disk is larger.
 */
const SETUP: Record<string, { size: string; flags: string[] }> = {
  binlog: { size: '8m', flags: ['-s', '262144'] },
  sqlite: { size: '16m', flags: [] },
}

describe.each(ENGINES)('$name', (engine) => {
  let mnt: string | null = null
  beforeAll(() => {
    mnt = mountTmpfs(engine.name, SETUP[engine.name]!.size)
  })
  afterAll(() => {
    if (mnt !== null) execFileSync('umount', [mnt], { stdio: 'ignore' })
  })

  it('a full disk answers put with OUT_OF_MEMORY, keeps serving, and loses nothing acknowledged', { timeout: 60_000 }, async (ctx) => {
    if (mnt === null) ctx.skip('cannot mount a tmpfs here (needs root)')
    const dir = path.join(mnt!, 'wal')
    const args = ['-b', dir, ...engine.flags, ...SETUP[engine.name]!.flags, '-f', '0', '-p0', '-l127.0.0.1']
    const proc = spawnCli(args)
    const port = (await proc.listening(10_000)).port!
    const c = await RawClient.connect(port)
    const acked: number[] = []
    let full = false
    for (let i = 0; i < 400 && !full; i++) {
      const body = String(i % 10).repeat(BODY)
      const reply = await c.call(`put 0 0 60 ${BODY}\r\n${body}\r\n`, 10_000)
      if (reply === 'OUT_OF_MEMORY\r\n') full = true
      else acked.push(Number(/^INSERTED (\d+)\r\n$/.exec(reply)![1]))
    }
    expect(full).toBe(true)
    expect(acked.length).toBeGreaterThan(20)

    // Everything but put keeps working, on this and on new connections.
    const other = await RawClient.connect(port)
    expect((await other.stats('stats\r\n'))['current-jobs-ready']).toBe(String(acked.length))
    expect(await other.call('put 0 0 60 1\r\nx\r\n', 10_000)).toBe('OUT_OF_MEMORY\r\n')
    // Deletes always fit, and free the space their jobs took.
    const gone = acked.splice(0, Math.floor(acked.length / 2))
    for (const id of gone) expect(await c.call(`delete ${id}\r\n`, 10_000)).toBe('DELETED\r\n')

    // Once the store has given space back (the binlog: compaction removed files; SQLite: free
    // pages vacuumed off the file, WAL truncated), puts are accepted again; it retries on its own.
    let accepted = false
    for (let i = 0; i < 100 && !accepted; i++) {
      const reply = await c.call(`put 0 0 60 1\r\ny\r\n`, 10_000)
      if (reply.startsWith('INSERTED ')) {
        accepted = true
        acked.push(Number(/^INSERTED (\d+)\r\n$/.exec(reply)![1]))
      } else {
        expect(reply).toBe('OUT_OF_MEMORY\r\n')
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    expect(accepted).toBe(true)
    const said = proc.logLines.map((l) => String(l['msg']))
    expect(said.some((m) => /disk full; refusing puts/.test(m)), said.join('\n')).toBe(true)
    expect(said.some((m) => /space available again; accepting puts/.test(m)), said.join('\n')).toBe(true)
    c.close()
    other.close()
    proc.signal('SIGTERM')
    expect(await proc.exited(10_000)).toEqual({ code: 0, signal: null })

    const again = spawnCli(args)
    const d = await RawClient.connect((await again.listening(10_000)).port!)
    for (const id of acked) {
      const head = await d.call(`peek ${id}\r\n`)
      const m = /^FOUND (\d+) (\d+)\r\n$/.exec(head)
      expect(m?.[1], `job ${id}`).toBe(String(id))
      await d.read(Number(m![2]) + 2)
    }
    for (const id of gone) expect(await d.call(`peek ${id}\r\n`)).toBe('NOT_FOUND\r\n')
    d.close()
  })
})

/**
 * A full disk, for real: the binlog directory sits on a small tmpfs the test
 * mounts (needs root, as CI has; skipped with a reason otherwise). Puts get
 * OUT_OF_MEMORY once the disk is full, everything else keeps working,
 * deletes still succeed, puts succeed again once space is freed, and every
 * acknowledged job is back after a restart.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { ensureBuilt, killAll, spawnCli } from '../helpers/process.js'

let base: string
let mnt: string
let mounted = false

beforeAll(() => {
  ensureBuilt()
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-full-'))
  mnt = path.join(base, 'mnt')
  fs.mkdirSync(mnt)
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt], { stdio: 'ignore' })
    mounted = true
  } catch {
    mounted = false
  }
})
afterEach(async () => {
  await killAll()
})
afterAll(() => {
  if (mounted) execFileSync('umount', [mnt], { stdio: 'ignore' })
  fs.rmSync(base, { recursive: true, force: true })
})

const BODY = 60_000

it('a full disk answers put with OUT_OF_MEMORY, keeps serving, and loses nothing acknowledged', { timeout: 60_000 }, async (ctx) => {
  if (!mounted) ctx.skip('cannot mount a tmpfs here (needs root)')
  const dir = path.join(mnt, 'wal')
  const args = ['-b', dir, '-s', '262144', '-f', '0', '-p0', '-l127.0.0.1']
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

  // Once compaction has freed files, puts are accepted again (the binlog retries on its own).
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

/**
 * A full disk for the PostgreSQL store, for real: the test's own cluster
 * keeps its WAL on the temp directory's disk, but its default tablespace (so
 * the store's tables, TOAST included) sits on a small tmpfs the test mounts
 * (needs root, as CI has; skipped with a reason otherwise), so PostgreSQL
 * itself runs out of space (SQLSTATE 53100) while the session and the
 * leader's lock survive. A filler file on the tmpfs is the space an operator
 * frees. What it shows: puts get OUT_OF_MEMORY once the disk is full (as
 * with the other two engines), reads keep working, the put that did not fit
 * and the deletes behind it are held, never answered wrongly, and all of
 * them are answered once space is freed; every acknowledged job is back
 * after a restart and no acknowledged delete comes back.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import postgres from 'postgres'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { PgCluster, pgMissing, stopAllClusters } from '../helpers/postgres.js'
import { ensureBuilt, killAll, spawnCli } from '../helpers/process.js'

const missing = pgMissing()
if (missing !== null) console.warn(`skipping the PostgreSQL disk-full test: ${missing}`)

/** Incompressible (PostgreSQL's TOAST compression gains nothing), 60,000 bytes. */
const BODY = 60_000
const body = (): string => randomBytes((BODY / 4) * 3).toString('base64')
const FILLER = 3 * 1024 * 1024

describe.skipIf(missing !== null)('postgres store, disk full', () => {
  let base: string
  let mnt: string | null = null
  let cluster: PgCluster | null = null
  beforeAll(() => {
    ensureBuilt()
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-pgfull-'))
    mnt = path.join(base, 'small')
    fs.mkdirSync(mnt)
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', mnt], { stdio: 'ignore' })
    } catch {
      mnt = null
      return
    }
    // PostgreSQL (the postgres user) must reach the tablespace through the root-owned temp directory.
    fs.chmodSync(base, 0o755)
    fs.chmodSync(mnt, 0o755)
    fs.mkdirSync(path.join(mnt, 'ts'))
    if (process.getuid?.() === 0) execFileSync('chown', ['postgres:postgres', path.join(mnt, 'ts')])
    cluster = PgCluster.start()
  }, 120_000)
  afterEach(async () => {
    await killAll()
  })
  afterAll(() => {
    stopAllClusters()
    if (mnt !== null) execFileSync('umount', [mnt], { stdio: 'ignore' })
    fs.rmSync(base, { recursive: true, force: true })
  })

  it('a full tablespace answers put with OUT_OF_MEMORY, keeps serving reads, holds (never fails) what did not fit, and loses nothing acknowledged', { timeout: 120_000 }, async (ctx) => {
    if (mnt === null || cluster === null) ctx.skip('cannot mount a tmpfs here (needs root)')
    const sql = postgres({ host: cluster!.dir, port: cluster!.port, user: 'postgres', database: 'postgres', onnotice: () => undefined })
    try {
      await sql.unsafe(`CREATE TABLESPACE tsb_small LOCATION '${path.join(mnt!, 'ts')}'`)
      // New sessions (the store's) create their tables there.
      await sql.unsafe('ALTER DATABASE postgres SET default_tablespace = tsb_small')
    } finally {
      await sql.end()
    }
    const filler = path.join(mnt!, 'filler')
    fs.writeFileSync(filler, Buffer.alloc(FILLER, 1))
    const args = ['--store', 'postgres', '--pg-url', cluster!.url, '--pg-schema', 'tsb_full', '-f', '0', '-p0', '-l127.0.0.1']
    const proc = spawnCli(args)
    const port = (await proc.listening(10_000)).port!
    const c = await RawClient.connect(port)
    const acked: number[] = []
    // Fill: sequential puts until one is not answered within 3 s (its commit failed and is retried).
    let held = false
    for (let i = 0; i < 400 && !held; i++) {
      c.send(`put 0 0 60 ${BODY}\r\n${body()}\r\n`)
      let reply: string
      try {
        reply = await c.line(3000)
      } catch {
        held = true
        break
      }
      acked.push(Number(/^INSERTED (\d+)\r\n$/.exec(reply)![1]))
    }
    expect(held).toBe(true)
    expect(acked.length).toBeGreaterThan(20)
    const said = (): string[] => proc.logLines.map((l) => String(l['msg']))
    expect(said().some((m) => /disk full in PostgreSQL.*refusing puts/.test(m)), said().join('\n')).toBe(true)

    // Puts are refused at once, on new connections too; reads and reserves keep working.
    const other = await RawClient.connect(port)
    expect(await other.call('put 0 0 60 1\r\nx\r\n', 10_000)).toBe('OUT_OF_MEMORY\r\n')
    expect(await other.call(`peek ${acked[0]}\r\n`)).toBe(`FOUND ${acked[0]} ${BODY}\r\n`)
    await other.read(BODY + 2)
    const reserved = /^RESERVED (\d+) (\d+)\r\n$/.exec(await other.call('reserve-with-timeout 0\r\n'))!
    await other.read(Number(reserved[2]) + 2)
    // A delete is not refused, nor acknowledged before it is stored: held behind the put that did not fit.
    const gone = [Number(reserved[1]), ...acked.slice(1, 6)]
    const deleter = await RawClient.connect(port)
    other.send(`delete ${gone[0]}\r\n`)
    for (const id of gone.slice(1)) deleter.send(`delete ${id}\r\n`)
    expect(await other.quiet(1500)).toBe('')
    expect(await deleter.quiet(0)).toBe('')
    expect(await c.quiet(0)).toBe('')

    // Space freed (the operator's part): the retry commits, every held reply goes out.
    fs.rmSync(filler)
    const late = /^INSERTED (\d+)\r\n$/.exec(await c.line(15_000))
    expect(late).not.toBeNull()
    acked.push(Number(late![1]))
    expect(await other.line(10_000)).toBe('DELETED\r\n')
    for (let i = 1; i < gone.length; i++) expect(await deleter.line(10_000)).toBe('DELETED\r\n')
    expect(said().some((m) => /space available again; accepting puts/.test(m)), said().join('\n')).toBe(true)
    const after = /^INSERTED (\d+)\r\n$/.exec(await other.call('put 0 0 60 1\r\ny\r\n', 10_000))
    expect(after).not.toBeNull()
    acked.push(Number(after![1]))
    c.close()
    other.close()
    deleter.close()
    proc.signal('SIGTERM')
    expect(await proc.exited(10_000)).toEqual({ code: 0, signal: null })

    const again = spawnCli(args)
    const d = await RawClient.connect((await again.listening(10_000)).port!)
    const live = acked.filter((id) => !gone.includes(id))
    expect((await d.stats('stats\r\n'))['current-jobs-ready']).toBe(String(live.length))
    for (const id of live) {
      const m = /^FOUND (\d+) (\d+)\r\n$/.exec(await d.call(`peek ${id}\r\n`))
      expect(m?.[1], `job ${id}`).toBe(String(id))
      await d.read(Number(m![2]) + 2)
    }
    for (const id of gone) expect(await d.call(`peek ${id}\r\n`)).toBe('NOT_FOUND\r\n')
    d.close()
  })
})

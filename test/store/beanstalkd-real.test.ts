/**
 * Moving between beanstalkd and tsbeanstalkd with the real reference binary:
 * it writes a binlog (every state, several tubes, delays, bury order, large
 * bodies, several files after compaction, killed with SIGKILL while a
 * producer writes); tsbeanstalkd starts on that directory and must hold
 * every job the reference itself restores from a copy of the same files
 * (stats-job and peek for every id), plus what the reference loses; then
 * export-beanstalkd, and beanstalkd restores every job from the export.
 * Also: neither server can start on a directory the other one uses.
 *
 * What the reference gets wrong, and so is compared differently:
 * - bodies of 65,534 and 65,535 bytes (body_size > -z at replay): it drops
 *   them, and every record after them in the same file (here: the jobs the
 *   producer wrote until the SIGKILL); tsbeanstalkd keeps them all;
 * - it bumps `buries` of every buried job at replay (#668); tsbeanstalkd not;
 * - its next id is 1 + the largest id it recreated; tsbeanstalkd's is above
 *   every id in the files.
 */
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { ensureBuilt, killAll, spawnCli, startReference, type Proc } from '../helpers/process.js'
import { tmpDir } from '../binlog/helpers.js'

const HAVE_REF = spawnSync('beanstalkd', ['-v'], { stdio: 'ignore' }).status === 0
if (!HAVE_REF && process.env['CI'] === 'true') throw new Error('CI needs the reference beanstalkd (apt-get install beanstalkd)')

beforeAll(() => ensureBuilt(), 120_000)
afterEach(async () => {
  await killAll()
})

const FIELDS = ['id', 'tube', 'state', 'pri', 'delay', 'ttr', 'reserves', 'timeouts', 'releases', 'buries', 'kicks'] as const

interface Seen {
  stats: Record<string, string>
  body: string
}

async function put(c: RawClient, tube: string, body: string | Buffer, pri = 10, delay = 0, ttr = 60): Promise<number> {
  await c.call(`use ${tube}\r\n`)
  const b = typeof body === 'string' ? Buffer.from(body, 'latin1') : body
  c.send(Buffer.concat([Buffer.from(`put ${pri} ${delay} ${ttr} ${b.length}\r\n`), b, Buffer.from('\r\n')]))
  const line = await c.line()
  const m = /^INSERTED (\d+)\r\n$/.exec(line)
  if (m === null) throw new Error(`put: ${line}`)
  return Number(m[1])
}

async function reserveFrom(c: RawClient, tube: string): Promise<number> {
  await c.call(`watch ${tube}\r\n`)
  await c.call('ignore default\r\n')
  const line = await c.call('reserve-with-timeout 0\r\n')
  const m = /^RESERVED (\d+) (\d+)\r\n$/.exec(line)
  if (m === null) throw new Error(`reserve: ${line}`)
  await c.read(Number(m[2]) + 2)
  await c.call(`watch default\r\n`)
  await c.call(`ignore ${tube}\r\n`)
  return Number(m[1])
}

/** stats-job and peek for every id up to `maxId`. */
async function snapshot(port: number, maxId: number): Promise<Map<number, Seen>> {
  const c = await RawClient.connect(port)
  const out = new Map<number, Seen>()
  for (let id = 1; id <= maxId; id++) {
    const head = await c.call(`peek ${id}\r\n`)
    if (head === 'NOT_FOUND\r\n') continue
    const m = /^FOUND \d+ (\d+)\r\n$/.exec(head)
    if (m === null) throw new Error(`peek ${id}: ${head}`)
    const body = (await c.read(Number(m[1]) + 2, 10_000)).slice(0, -2)
    out.set(id, { stats: await c.stats(`stats-job ${id}\r\n`), body })
  }
  c.close()
  return out
}

/** The buried jobs of `tube` in kick order (kicks them all, one at a time). */
async function buryOrder(port: number, tube: string): Promise<number[]> {
  const c = await RawClient.connect(port)
  await c.call(`use ${tube}\r\n`)
  const order: number[] = []
  for (;;) {
    const head = await c.call('peek-buried\r\n')
    if (head === 'NOT_FOUND\r\n') break
    const m = /^FOUND (\d+) (\d+)\r\n$/.exec(head)!
    await c.read(Number(m[2]) + 2)
    order.push(Number(m[1]))
    expect(await c.call('kick 1\r\n')).toBe('KICKED 1\r\n')
  }
  c.close()
  return order
}

function hashTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath, e.name)
    const rel = path.relative(dir, p)
    const st = fs.lstatSync(p)
    out[rel] = st.isFile() ? `${st.mode.toString(8)}:${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')}` : st.isDirectory() ? 'dir' : 'other'
  }
  return out
}

async function startOurs(dir: string, extra: string[] = []): Promise<{ proc: Proc; port: number }> {
  const proc = spawnCli(['-l', '127.0.0.1', '-p', '0', '-b', dir, ...extra])
  const l = await proc.listening(30_000)
  return { proc, port: l.port! }
}

async function stop(proc: Proc): Promise<void> {
  proc.signal('SIGTERM')
  await proc.exited(10_000)
}

function expectSame(ours: Map<number, Seen>, ref: Map<number, Seen>, opts: { refBumpsBuries: boolean }): void {
  for (const [id, r] of ref) {
    const o = ours.get(id)
    expect(o, `job ${id}`).toBeDefined()
    expect(o!.body, `job ${id} body`).toBe(r.body)
    for (const k of FIELDS) {
      if (k === 'buries' && opts.refBumpsBuries && r.stats['state'] === 'buried') {
        expect(Number(r.stats[k]), `job ${id} buries`).toBe(Number(o!.stats[k]) + 1)
        continue
      }
      expect(o!.stats[k], `job ${id} ${k}`).toBe(r.stats[k])
    }
    expect(Math.abs(Number(o!.stats['age']) - Number(r.stats['age'])), `job ${id} age`).toBeLessThanOrEqual(3)
    expect(Math.abs(Number(o!.stats['time-left']) - Number(r.stats['time-left'])), `job ${id} time-left`).toBeLessThanOrEqual(3)
  }
}

describe.skipIf(!HAVE_REF)('with the real beanstalkd', () => {
  it('starts on a beanstalkd binlog with every job the reference restores (and the ones it loses); export goes back', async () => {
    const dir = tmpDir()
    const ref = await startReference(['-b', dir, '-s', '131072'])
    const c = await RawClient.connect(ref.port)
    const ids: Record<string, number> = {}
    for (let i = 0; i < 6; i++) ids[`a${i}`] = await put(c, 'alpha', `alpha-${i}`, 100 - i)
    expect(await c.call(`delete ${ids['a2']}\r\n`)).toBe('DELETED\r\n')
    ids['d1'] = await put(c, 'beta', 'later', 5, 3600)
    ids['d2'] = await put(c, 'beta', 'much later', 6, 7200, 120)
    for (let i = 0; i < 3; i++) ids[`b${i}`] = await put(c, 'gamma', `bury-me-${i}`, 50)
    // Bury in the order 2, 0, 1; kick one back; bury it again (so it is last).
    const r = [await reserveFrom(c, 'gamma'), await reserveFrom(c, 'gamma'), await reserveFrom(c, 'gamma')]
    for (const id of [r[2]!, r[0]!, r[1]!]) expect(await c.call(`bury ${id} 7\r\n`)).toBe('BURIED\r\n')
    await c.call('use gamma\r\n')
    expect(await c.call(`kick-job ${r[2]}\r\n`)).toBe('KICKED\r\n')
    expect(await reserveFrom(c, 'gamma')).toBe(r[2])
    expect(await c.call(`bury ${r[2]} 8\r\n`)).toBe('BURIED\r\n')
    // Released with a delay, and one left reserved.
    ids['r1'] = await put(c, 'delta', 'released', 20)
    expect(await reserveFrom(c, 'delta')).toBe(ids['r1'])
    expect(await c.call(`release ${ids['r1']} 21 3600\r\n`)).toBe('RELEASED\r\n')
    ids['res'] = await put(c, 'delta', 'held', 22)
    const holder = await RawClient.connect(ref.port)
    expect(await reserveFrom(holder, 'delta')).toBe(ids['res'])
    // Churn: many files, compaction moves the early jobs forward and removes the head files.
    const filler = 'x'.repeat(10_000)
    for (let i = 0; i < 80; i++) {
      const id = await put(c, 'churn', filler)
      expect(await c.call(`delete ${id}\r\n`)).toBe('DELETED\r\n')
    }
    ids['mid'] = await put(c, 'alpha', 'after the churn', 1)
    // The bodies the reference loses at replay: last, so it loses only them.
    const big1 = Buffer.alloc(65534, 'b')
    const big2 = Buffer.alloc(65535, 'c')
    ids['big1'] = await put(c, 'big', big1)
    ids['big2'] = await put(c, 'big', big2)
    // SIGKILL while a producer is writing.
    const p = await RawClient.connect(ref.port)
    let written = 0
    const producing = (async () => {
      try {
        for (;;) {
          await put(p, 'late', `late-${written}`)
          written++
        }
      } catch {
        // The server died.
      }
    })()
    await new Promise((res) => setTimeout(res, 150))
    ref.proc.signal('SIGKILL')
    await ref.proc.exited()
    await producing
    const files = fs.readdirSync(dir).filter((n) => /^binlog\.\d+$/.test(n))
    expect(files.length).toBeGreaterThan(1)
    expect(files).not.toContain('binlog.1') // compaction removed the first file
    const maxId = 200 + written + 50

    // What the reference itself restores from a copy of the same files.
    const copy = tmpDir()
    fs.cpSync(dir, copy, { recursive: true })
    const refCopy = await startReference(['-b', copy, '-s', '131072'])
    const refSeen = await snapshot(refCopy.port, maxId)
    const refBuried = await buryOrder(refCopy.port, 'gamma')
    refCopy.proc.signal('SIGKILL')
    await refCopy.proc.exited()

    // tsbeanstalkd on the original directory.
    const before = hashTree(dir)
    const ours = await startOurs(dir)
    const imported = ours.proc.logLines.find((l) => /^import: imported/.test(String(l['msg'])))
    expect(imported).toBeDefined()
    const backup = String(imported!['backup'])
    // The reference's files are kept, unchanged, in the backup directory.
    const after = hashTree(backup)
    for (const [name, h] of Object.entries(before)) expect(after[name], name).toBe(h)
    const ourSeen = await snapshot(ours.port, maxId)
    expect(refSeen.has(ids['big1']!)).toBe(false)
    expect(refSeen.has(ids['big2']!)).toBe(false)
    expectSame(ourSeen, refSeen, { refBumpsBuries: true })
    expect(ourSeen.get(ids['big1']!)?.body).toBe(big1.toString('latin1'))
    expect(ourSeen.get(ids['big2']!)?.body).toBe(big2.toString('latin1'))
    // The reference also drops everything after the big bodies in their file: the late jobs. They are all here.
    const lost = [...ourSeen.keys()].filter((id) => !refSeen.has(id))
    for (const id of lost) {
      if (id === ids['big1'] || id === ids['big2']) continue
      expect(ourSeen.get(id)!.stats['tube'], `job ${id}`).toBe('late')
      expect(id).toBeGreaterThan(ids['big2']!)
    }
    expect(lost.length).toBeGreaterThanOrEqual(2)
    expect(ourSeen.get(ids['res']!)?.stats['state']).toBe('ready')
    expect(ourSeen.get(ids['d1']!)?.stats['state']).toBe('delayed')
    expect(ourSeen.get(ids['a2']!)).toBeUndefined()
    expect(ourSeen.get(r[0]!)?.stats['buries']).toBe('1')
    const next = Math.max(...ourSeen.keys()) + 1
    const oc = await RawClient.connect(ours.port)
    const newId = await put(oc, 'alpha', 'new after import')
    expect(newId).toBeGreaterThanOrEqual(next)
    oc.close()
    const ourBuried = await buryOrder(ours.port, 'gamma')
    expect(ourBuried).toEqual(refBuried)
    expect(ourBuried).toEqual([r[0], r[1], r[2]]) // the reference's replay order: first appearance in the log
    // A restart replays the imported store.
    await stop(ours.proc)
    const again = await startOurs(dir)
    const againSeen = await snapshot(again.port, maxId + 5)
    expect([...againSeen.keys()]).toEqual([...ourSeen.keys(), newId].sort((a, b) => a - b))
    // Buried again for the export: bury the gamma jobs in a known order.
    const ac = await RawClient.connect(again.port)
    for (const id of [r[1]!, r[2]!, r[0]!]) {
      await ac.call('use gamma\r\n')
      expect(await reserveFrom(ac, 'gamma')).toBe(id === r[1] ? r[0] : id === r[2] ? r[1] : r[2])
    }
    for (const id of [r[1]!, r[2]!, r[0]!]) expect(await ac.call(`bury ${id} 9\r\n`)).toBe('BURIED\r\n')
    // An id above every live job was handed out: the export must carry the high-water mark.
    const gone = await put(ac, 'alpha', 'deleted before the export')
    expect(await ac.call(`delete ${gone}\r\n`)).toBe('DELETED\r\n')
    ac.close()
    const finalSeen = await snapshot(again.port, maxId + 5)
    await stop(again.proc)

    // The way back: export, and beanstalkd restores every job.
    const dirBefore = hashTree(dir)
    const out = path.join(tmpDir(), 'out')
    const exp = spawnCli(['export-beanstalkd', dir, out])
    expect((await exp.exited(30_000)).code).toBe(0)
    expect(hashTree(dir)).toEqual(dirBefore)
    expect(JSON.parse(exp.stdout)).toMatchObject({ jobs: finalSeen.size })
    const outCopy = path.join(tmpDir(), 'out-copy')
    fs.cpSync(out, outCopy, { recursive: true })
    const back = await startReference(['-b', out, '-z', '70000'])
    const backSeen = await snapshot(back.port, maxId + 5)
    expect([...backSeen.keys()]).toEqual([...finalSeen.keys()])
    expectSame(finalSeen, backSeen, { refBumpsBuries: true })
    const bc = await RawClient.connect(back.port)
    expect(await put(bc, 'alpha', 'after export')).toBe(gone + 1)
    bc.close()
    expect(await buryOrder(back.port, 'gamma')).toEqual([r[1], r[2], r[0]])
    // With its default -z the reference drops the two large bodies at replay, and only them: each has a file of its own.
    const small = await startReference(['-b', outCopy])
    const smallSeen = await snapshot(small.port, maxId + 5)
    expect([...smallSeen.keys()]).toEqual([...finalSeen.keys()].filter((id) => id !== ids['big1'] && id !== ids['big2']))
    c.close()
    holder.close()
    p.close()
  }, 120_000)

  it('neither server starts on a directory the other one uses; nothing in it changes', async () => {
    // beanstalkd on a tsbeanstalkd directory: refused (exit 10), running or stopped.
    const dir = tmpDir()
    const ours = await startOurs(dir)
    const oc = await RawClient.connect(ours.port)
    await put(oc, 'default', 'mine')
    oc.close()
    const running = hashTree(dir)
    const r1 = spawnSync('beanstalkd', ['-l', '127.0.0.1', '-p', '0', '-b', dir], { timeout: 10_000 })
    expect(r1.status).toBe(10)
    expect(hashTree(dir)).toEqual(running)
    await stop(ours.proc)
    const stopped = hashTree(dir)
    const r2 = spawnSync('beanstalkd', ['-l', '127.0.0.1', '-p', '0', '-b', dir], { timeout: 10_000 })
    expect(r2.status).toBe(10)
    expect(hashTree(dir)).toEqual(stopped)

    // tsbeanstalkd on a directory a running beanstalkd holds: refused (exit 10), nothing changed.
    const refDir = tmpDir()
    const ref = await startReference(['-b', refDir])
    const rc = await RawClient.connect(ref.port)
    await put(rc, 'default', 'theirs')
    rc.close()
    const theirs = hashTree(refDir)
    for (const args of [['-b', refDir, '-p', '0', '-l', '127.0.0.1'], ['import-beanstalkd', refDir, path.join(tmpDir(), 'x')]]) {
      const t = spawnCli(args)
      expect((await t.exited(30_000)).code).toBe(10)
      expect(t.logLines.some((l) => /fcntl lock/.test(String(l['msg'])))).toBe(true)
      expect(hashTree(refDir)).toEqual(theirs)
    }
    ref.proc.signal('SIGKILL')
    await ref.proc.exited()
    // Stopped, the same directory imports (SRC left as it was).
    const into = path.join(tmpDir(), 'into')
    const imp = spawnCli(['import-beanstalkd', refDir, into])
    expect((await imp.exited(30_000)).code).toBe(0)
    expect(JSON.parse(imp.stdout)).toMatchObject({ summary: { jobs: 1, ready: 1 }, files: [{ version: 7, stopped: null }] })
    expect(hashTree(refDir)).toEqual(theirs)
    const started = await startOurs(into)
    const sc = await RawClient.connect(started.port)
    expect(await sc.call('peek 1\r\n')).toBe('FOUND 1 6\r\n')
    sc.close()
    await stop(started.proc)
  }, 60_000)
})

/**
 * Extensions II across a restart of the real server (`-b --extensions`),
 * for each engine: a reprioritized and a redelayed job keep their new
 * priority and due time, a job moved to a dead-letter tube by max-retries is
 * there with its counters (its original deleted), a buried one stays
 * buried, a flushed tube stays empty; policies from the config file are in
 * force again after the restart. A flush of tagged jobs completes their
 * group (its after-job is ready) and leaves a key's cooldown, both kept
 * across a restart. And a flush killed with SIGKILL under
 * -f 0 mid-way, a few times, then let finish: each slice's deletes (one
 * record) happened whole or not at all, what is left is the jobs the walk
 * had not reached, the other tube's jobs are untouched, and an answered
 * flush stays done.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { cliFixture } from '../helpers/cli-fixture.js'
import { RawClient } from '../helpers/client.js'
import { pipelined } from '../helpers/bulk.js'
import { spawnCli } from '../helpers/process.js'
import { ENGINES } from '../store/engines.js'

const fx = cliFixture('tsb-admin-restart-')

async function start(args: string[]): Promise<{ c: RawClient; port: number; stop: (sig?: NodeJS.Signals) => Promise<void> }> {
  const proc = spawnCli(args)
  const port = (await proc.listening(30_000)).port!
  const c = await fx.connect(port)
  return {
    c,
    port,
    stop: async (sig: NodeJS.Signals = 'SIGTERM') => {
      c.close()
      proc.signal(sig)
      await proc.exited(30_000)
    },
  }
}

/** A flush walks the job table 2048 id slots a step (queue/extensions/flush.ts), one DELETE_MANY each. */
const SLICE = 2048

/** The ids of a tube's ready jobs (all at one priority: id order), paged with list-jobs; [] once the tube is gone. */
async function readyIds(c: RawClient, tube: string): Promise<number[]> {
  const out: number[] = []
  for (let after = 0; ; ) {
    const head = await c.call(`list-jobs ${tube} ready ${after} 1000\r\n`)
    if (head === 'NOT_FOUND\r\n') return out
    const body = await c.read(Number(/^OK (\d+)\r\n$/.exec(head)![1]) + 2)
    const page = body.split('\n').filter((l) => l.startsWith('- ')).map((l) => Number(l.slice(2)))
    if (page.length === 0) return out
    out.push(...page)
    after = page[page.length - 1]!
  }
}

describe.each(ENGINES)('$name', (engine) => {
  it('keeps reprioritize, redelay, dead-letter moves and flushes; config policies apply again', { timeout: 60_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(fx.tmp(), 'dir-'))
    const conf = path.join(dir, '..', `${path.basename(dir)}.toml`)
    fs.writeFileSync(conf, 'extensions = true\n[[tube_policy]]\ntube = "work"\nmax_retries = 2\ndead_letter = "dlq"\n[[tube_policy]]\ntube = "small"\nmax_jobs = 1\n')
    const args = ['-b', dir, ...engine.flags, '-p0', '-l127.0.0.1', '--config', conf]
    let s = await start(args)
    const c = (): RawClient => s.c
    expect(await c().call('put 5 0 60 1\r\na\r\n')).toBe('INSERTED 1\r\n')
    expect(await c().call('put 5 0 60 1\r\nb\r\n')).toBe('INSERTED 2\r\n')
    expect(await c().call('reprioritize 2 1\r\n')).toBe('REPRIORITIZED\r\n')
    expect(await c().call('redelay 1 3600\r\n')).toBe('REDELAYED\r\n')
    expect(await c().call('use work\r\n')).toBe('USING work\r\n')
    expect(await c().call('put 9 0 60 1\r\nw\r\n')).toBe('INSERTED 3\r\n')
    expect(await c().call('watch work\r\n')).toBe('WATCHING 2\r\n')
    expect(await c().call('ignore default\r\n')).toBe('WATCHING 1\r\n')
    for (let i = 0; i < 2; i++) {
      expect(await c().call('reserve\r\n')).toBe('RESERVED 3 1\r\n')
      await c().read(3)
      expect(await c().call('release 3 9 0\r\n')).toBe('RELEASED\r\n')
    }
    expect(await c().call('use flushme\r\n')).toBe('USING flushme\r\n')
    expect(await c().call('put 0 0 60 1\r\nf\r\n')).toBe('INSERTED 5\r\n')
    expect(await c().call('flush-tube flushme\r\n')).toBe('FLUSHED 1\r\n')
    expect(await c().call('use small\r\n')).toBe('USING small\r\n')
    expect(await c().call('put 0 0 60 1\r\ns\r\n')).toBe('INSERTED 6\r\n')
    await s.stop()

    s = await start(args)
    const job = async (id: number): Promise<Record<string, string>> => c().stats(`stats-job ${id}\r\n`)
    expect(await job(2)).toMatchObject({ state: 'ready', pri: '1' })
    const one = await job(1)
    expect(one).toMatchObject({ state: 'delayed', delay: '3600' })
    expect(Number(one['time-left'])).toBeGreaterThan(3500)
    expect(await c().call('stats-job 3\r\n')).toBe('NOT_FOUND\r\n')
    // The dead-letter copy (id 4): its counters came along; its origin is not journaled.
    expect(await job(4)).toMatchObject({ tube: 'dlq', state: 'ready', pri: '9', reserves: '2', releases: '2' })
    expect(await c().call('stats-job 5\r\n')).toBe('NOT_FOUND\r\n')
    expect(await c().call('use small\r\n')).toBe('USING small\r\n')
    expect(await c().call('put 0 0 60 1\r\nt\r\n')).toBe('TUBE_FULL\r\n')
    expect(await c().stats('stats-tube-policy work\r\n')).toMatchObject({ 'max-retries': '2', 'dead-letter': 'dlq' })
    // Ids go on above every one handed out.
    expect(await c().call('put 0 0 60 1\r\nu\r\n')).toBe('TUBE_FULL\r\n')
    expect(await c().call('use default\r\n')).toBe('USING default\r\n')
    expect(await c().call('put 0 0 60 1\r\nv\r\n')).toBe('INSERTED 9\r\n')
    await s.stop()
  })

  it('keeps tube-policy settings and clears; the binlog keeps them while its old files go', { timeout: 60_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(fx.tmp(), 'dir-'))
    const args = ['-b', dir, ...engine.flags, '-s', '65536', '-p0', '-l127.0.0.1', '--extensions']
    let s = await start(args)
    const c = (): RawClient => s.c
    expect(await c().call('tube-policy a max-jobs 7\r\n')).toBe('POLICY_SET\r\n')
    expect(await c().call('tube-policy b max-retries 3 dead-letter b-dead\r\n')).toBe('POLICY_SET\r\n')
    expect(await c().call('tube-policy gone max-jobs 5\r\n')).toBe('POLICY_SET\r\n')
    expect(await c().call('tube-policy gone max-jobs 0\r\n')).toBe('POLICY_SET\r\n')
    expect(await c().call('tube-policy a max-retries 2\r\n')).toBe('POLICY_SET\r\n')
    expect(await c().call('tube-policy ev fan-out x,y\r\n')).toBe('POLICY_SET\r\n')
    expect(await c().call('use ev\r\n')).toBe('USING ev\r\n')
    expect(await c().call('put 3 0 60 5\r\ncopy!\r\n')).toBe('INSERTED 2 2\r\n')
    expect(await c().call('use default\r\n')).toBe('USING default\r\n')
    // Churn: many files written and, once nothing in them is live, removed.
    const body = 'x'.repeat(4000)
    for (let i = 0; i < 100; i++) {
      const m = /^INSERTED (\d+)\r\n$/.exec(await c().call(`put 0 0 60 ${body.length}\r\n${body}\r\n`))!
      expect(await c().call(`delete ${m[1]}\r\n`)).toBe('DELETED\r\n')
    }
    await s.stop()
    if (engine.name === 'binlog') expect(fs.existsSync(path.join(dir, 'binlog.1'))).toBe(false)

    for (let round = 0; round < 2; round++) {
      s = await start(args)
      expect(await c().stats('stats-tube-policy a\r\n')).toMatchObject({ 'max-jobs': '7', 'max-retries': '2', 'dead-letter': '""' })
      expect(await c().stats('stats-tube-policy b\r\n')).toMatchObject({ 'max-jobs': '0', 'max-retries': '3', 'dead-letter': 'b-dead' })
      expect(await c().stats('stats-tube-policy gone\r\n')).toMatchObject({ 'max-jobs': '0', 'max-retries': '0' })
      expect(await c().stats('stats-tube-policy ev\r\n')).toMatchObject({ 'fan-out': 'x,y' })
      // The copies, whose FANOUT record compaction rewrote as two FULL ones.
      expect(await c().stats('stats-job 2\r\n')).toMatchObject({ tube: 'x', pri: '3' })
      expect(await c().stats('stats-job 3\r\n')).toMatchObject({ tube: 'y', pri: '3' })
      expect(await c().call('peek 3\r\n')).toBe('FOUND 3 5\r\n')
      expect(await c().read(7)).toBe('copy!\r\n')
      for (let i = 0; i < 60; i++) {
        const m = /^INSERTED (\d+)\r\n$/.exec(await c().call(`put 0 0 60 ${body.length}\r\n${body}\r\n`))!
        expect(await c().call(`delete ${m[1]}\r\n`)).toBe('DELETED\r\n')
      }
      await s.stop()
    }
    s = await start(args)
    expect(await c().call('delete-tube a\r\n')).toBe('NOT_FOUND\r\n') // no such tube; the policy stays
    expect(await c().call('use a\r\n')).toBe('USING a\r\n')
    expect(await c().call('delete-tube a\r\n')).toBe('DELETED 0\r\n')
    await s.stop()
    s = await start(args)
    expect(await c().stats('stats-tube-policy a\r\n')).toMatchObject({ 'max-jobs': '0', 'max-retries': '0' })
    expect(await c().stats('stats-tube-policy b\r\n')).toMatchObject({ 'max-retries': '3' })
    await s.stop()
  })

  it('a flush of tagged jobs: a completed group frees its after-job, a key keeps its cooldown across a restart', { timeout: 60_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(fx.tmp(), 'tags-'))
    const args = ['-b', dir, ...engine.flags, '-p0', '-l127.0.0.1', '--extensions']
    let s = await start(args)
    const c = (): RawClient => s.c
    expect(await c().call('use g\r\n')).toBe('USING g\r\n')
    expect(await c().call('put 0 0 60 1 grp:G\r\nm\r\n')).toBe('INSERTED 1\r\n')
    expect(await c().call('put 0 0 60 1 grp:G idp:k:3600\r\nk\r\n')).toBe('INSERTED 2\r\n')
    expect(await c().call('put 0 0 60 1 con:c\r\nc\r\n')).toBe('INSERTED 3\r\n')
    expect(await c().call('use w\r\n')).toBe('USING w\r\n')
    expect(await c().call('put 0 0 60 1 aft:G\r\na\r\n')).toBe('INSERTED 4\r\n')
    expect((await c().stats('stats-tube w\r\n'))['current-jobs-delayed']).toBe('1') // held
    expect(await c().call('flush-tube g\r\n')).toBe('FLUSHED 3\r\n')
    expect(await c().stats('stats-job 4\r\n')).toMatchObject({ state: 'ready' })
    expect(await c().call('use g\r\n')).toBe('USING g\r\n')
    expect(await c().call('put 0 0 60 1 idp:k:3600\r\nk\r\n')).toBe('INSERTED 2 DELETED\r\n')
    await s.stop()

    s = await start(args)
    expect(await c().stats('stats-job 4\r\n')).toMatchObject({ tube: 'w', state: 'ready' })
    for (const id of [1, 2, 3]) expect(await c().call(`stats-job ${id}\r\n`)).toBe('NOT_FOUND\r\n')
    expect(await c().call('use g\r\n')).toBe('USING g\r\n')
    expect(await c().call('put 0 0 60 1 idp:k:3600\r\nk\r\n')).toBe('INSERTED 2 DELETED\r\n')
    await s.stop()
  })

  it('a flush killed with SIGKILL under -f 0 keeps whole slices deleted or not; a finished one stays finished', { timeout: 120_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(fx.tmp(), 'kill-'))
    const args = ['-b', dir, ...engine.flags, '-f', '0', '-p0', '-l127.0.0.1', '--extensions']
    const N = 40_000
    let s = await start(args)
    await pipelined(s.port, 51, (i) => (i === 0 ? 'use keep\r\n' : 'put 0 0 60 4\r\nkeep\r\n'), /^(USING keep|INSERTED \d+)$/, 30_000)
    await pipelined(s.port, N + 1, (i) => (i === 0 ? 'use fl\r\n' : 'put 0 0 60 2\r\nfl\r\n'), /^(USING fl|INSERTED \d+)$/, 90_000)
    const all = Array.from({ length: N }, (_, i) => 51 + i)
    let left = all
    let killedMidway = 0
    for (let round = 0; round < 4; round++) {
      const last = round === 3
      s.c.send('flush-tube fl\r\n')
      let answer = ''
      const answered = s.c.line(60_000).then((l) => (answer = l))
      answered.catch(() => undefined) // a kill ends the connection first
      if (last) {
        await answered
        expect(answer).toBe(`FLUSHED ${left.length}\r\n`)
      } else {
        // Kill once a slice has gone (seen from another client), while the rest is still in the tube.
        const watcher = await fx.connect(s.port)
        for (let i = 0; answer === '' && i < 10_000; i++) {
          const ready = Number((await watcher.stats('stats-tube fl\r\n'))['current-jobs-ready'])
          if (ready < left.length) break
        }
        watcher.close()
        if (answer === '') killedMidway++
      }
      const done = answer !== ''
      await s.stop(last ? 'SIGTERM' : 'SIGKILL')

      s = await start(args)
      const ids = await readyIds(s.c, 'fl')
      expect(await readyIds(s.c, 'keep')).toHaveLength(50)
      if (done) {
        expect(ids, 'an answered flush came back undone').toEqual([])
        break
      }
      // What is left is the jobs from some slice boundary on: a slice went whole or not at all.
      expect(ids.length).toBeLessThanOrEqual(left.length)
      if (ids.length > 0 && ids.length < left.length) expect(ids[0]! % SLICE, `first job left: ${ids[0]}`).toBe(0)
      expect(ids).toEqual(all.filter((id) => id >= (ids[0] ?? Infinity)))
      left = ids
    }
    // Under load the flush may outrun the watcher now and then, not every time.
    expect(killedMidway).toBeGreaterThan(0)
    await s.stop()
  })
})

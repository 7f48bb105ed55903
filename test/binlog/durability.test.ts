/**
 * The fsync policies, counted through an injected fs layer around the real
 * one: -f 0 group commit, -f N timer, -F never; compaction's removals wait
 * for the fsync that covers what was moved, and run on the thread pool in
 * order, each durable before the next; a failed fsync or unlink is fatal.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { nodeFs, type BinlogFs } from '../../src/store/io.js'
import { Model, expectedAll, plain, tmpDir, until } from './helpers.js'

/** Async fsyncs are counted and, while `hold` is on, parked until released. */
class GatedFs {
  hold = true
  calls = 0
  private parked: (() => Promise<void>)[] = []
  readonly io: BinlogFs = {
    ...nodeFs,
    fdatasync: (fd, cb) => {
      this.calls++
      const run = (): Promise<void> =>
        new Promise((resolve) =>
          nodeFs.fdatasync(fd, (err) => {
            cb(err)
            resolve()
          }),
        )
      if (this.hold) this.parked.push(run)
      else void run()
    },
  }

  get waiting(): number {
    return this.parked.length
  }

  /** Lets every parked fsync run, and waits for their callbacks. */
  async release(): Promise<void> {
    const p = this.parked
    this.parked = []
    await Promise.all(p.map((run) => run()))
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('-f 0: group commit', () => {
  it('releases callbacks only after an fsync that started after their write; one fsync covers many flushes', async () => {
    const g = new GatedFs()
    // Every fsync on the pool, as with a slow disk (fast ones run inline: the next test).
    const m = new Model(tmpDir(), { fsyncMs: 0, fs: g.io, inlineSyncMaxMs: 0 })
    await m.open()
    const done: number[] = []
    const j = m.put('first')!
    const s1 = m.bl.flush()
    m.bl.whenDurable(s1, () => done.push(s1))
    expect(g.calls).toBe(1) // started at once: nothing else in flight
    for (let i = 0; i < 50; i++) {
      m.reserve(j)
      m.release(j, i)
      const s = m.bl.flush()
      m.bl.whenDurable(s, () => done.push(s))
    }
    expect(done).toEqual([])
    expect(g.calls).toBe(1) // all 50 wait behind the one in flight
    await g.release()
    expect(done).toEqual([s1]) // that fsync started before the 50 were written
    expect(g.calls).toBe(2) // one more, for all of them
    expect(g.waiting).toBe(1)
    await g.release()
    expect(done).toHaveLength(51)
    expect(done).toEqual([...done].sort((a, b) => a - b))
    expect(g.calls).toBe(2)
    // Already durable: called back at once.
    let now = false
    m.bl.whenDurable(m.bl.flush(), () => (now = true))
    expect(now).toBe(true)
    expect((await m.restart())[0]).toMatchObject({ pri: 49, reserves: 50, releases: 50 })
  })

  it('fast fsyncs run inline in flush; after a slow one they go to the thread pool (group commit) until one is fast again', async () => {
    const g = new GatedFs()
    g.hold = false
    // An fsync is slow above 50 ms here, so that a loaded machine's real fsyncs still count as fast.
    const SLOW_MS = 60
    let inline = 0
    let slow = false
    const io: BinlogFs = {
      ...g.io,
      fdatasyncSync: (fd) => {
        inline++
        nodeFs.fdatasyncSync(fd)
        for (const t0 = performance.now(); slow && performance.now() - t0 < SLOW_MS; );
      },
    }
    const m = new Model(tmpDir(), { fsyncMs: 0, fs: io, inlineSyncMaxMs: 50 })
    await m.open()
    const flushed = (): { acked: () => boolean } => {
      let acked = false
      m.bl.whenDurable(m.bl.flush(), () => (acked = true))
      return { acked: () => acked }
    }
    const before = inline
    const j = m.put('job')!
    // Durable before flush returned: one inline fsync, none on the pool.
    expect(flushed().acked()).toBe(true)
    expect([inline - before, g.calls]).toEqual([1, 0])
    // A slow inline fsync still covers its own batch...
    slow = true
    m.reserve(j)
    expect(flushed().acked()).toBe(true)
    expect([inline - before, g.calls]).toEqual([2, 0])
    slow = false
    // ...and sends the next batches to the pool: one in flight, the next waits for it.
    g.hold = true
    m.release(j, 7)
    const a = flushed()
    m.reserve(j)
    const b = flushed()
    expect([inline - before, g.calls, a.acked(), b.acked()]).toEqual([2, 1, false, false])
    await g.release()
    expect([a.acked(), b.acked(), g.calls]).toEqual([true, false, 2])
    await g.release()
    expect(b.acked()).toBe(true)
    // Fast pool fsyncs bring the inline path back (bounded: each try is one real fsync).
    g.hold = false
    let back = false
    for (let i = 0; i < 20 && !back; i++) {
      const was = inline
      m.release(j, 8)
      const c = flushed()
      back = inline > was
      if (back) expect(c.acked()).toBe(true)
      else await new Promise<void>((r) => m.bl.whenDurable(m.bl.flush(), r))
      m.reserve(j)
      m.bl.flush()
    }
    expect(back).toBe(true)
    expect((await m.restart())[0]).toMatchObject({ pri: 8 })
  })

  it('an inline fsync that fails is fatal: flush throws BinlogFsyncError, onFatal hears it, nothing is acknowledged', async () => {
    const fatal: Error[] = []
    let broken = false
    const io: BinlogFs = {
      ...nodeFs,
      fdatasyncSync: (fd) => {
        if (broken) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })
        nodeFs.fdatasyncSync(fd)
      },
    }
    const m = new Model(tmpDir(), { fsyncMs: 0, fs: io, inlineSyncMaxMs: Infinity, onFatal: (e) => fatal.push(e) })
    await m.open()
    broken = true
    m.put('a')
    expect(() => m.bl.flush()).toThrow(expect.objectContaining({ name: 'BinlogFsyncError' }))
    expect(fatal).toHaveLength(1)
    expect(fatal[0]).toMatchObject({ code: 'TSB_ERR_BINLOG_FSYNC' })
    expect((fatal[0]!.cause as NodeJS.ErrnoException).code).toBe('EIO')
    expect(() => m.bl.whenDurable(1, () => undefined)).toThrow(fatal[0])
  })

  it('concurrent committers share fsyncs (real fsync)', async () => {
    const g = new GatedFs()
    g.hold = false
    const m = new Model(tmpDir(), { fsyncMs: 0, fs: g.io, inlineSyncMaxMs: 0 })
    await m.open()
    const commits: Promise<number>[] = []
    for (let i = 0; i < 200; i++) {
      m.put(`job ${i}`)
      commits.push(m.commit())
      if (i % 10 === 9) await new Promise((r) => setImmediate(r))
    }
    await Promise.all(commits)
    expect(g.calls).toBeGreaterThan(0)
    expect(g.calls).toBeLessThan(100)
    expect(await m.restart()).toHaveLength(200)
  })
})

describe('-f N and -F', () => {
  it('-f N: callbacks on write; the timer fsyncs within N ms, at most once per N ms, even when idle', async () => {
    const g = new GatedFs()
    g.hold = false
    const m = new Model(tmpDir(), { fsyncMs: 40, fs: g.io })
    await m.open()
    let acked = 0
    for (let i = 0; i < 20; i++) {
      m.put(`job ${i}`)
      m.bl.whenDurable(m.bl.flush(), () => acked++)
    }
    expect(acked).toBe(20) // written is enough
    expect(g.calls).toBe(0)
    const idle = performance.now()
    while (g.calls === 0 && performance.now() - idle < 2000) await sleep(5) // idle: the timer still syncs
    await sleep(60)
    expect(g.calls).toBe(1) // and only once: nothing new was written
    const start = performance.now()
    while (performance.now() - start < 300) {
      m.put('x')
      m.bl.flush()
      await sleep(2)
    }
    const elapsed = performance.now() - start
    expect(g.calls - 1).toBeLessThanOrEqual(Math.ceil(elapsed / 40) + 1)
    expect(g.calls - 1).toBeGreaterThanOrEqual(2)
  })

  it('-F never fsyncs while running, and files are flagged so', async () => {
    const m = new Model(tmpDir(), { fsyncNever: true, fileSize: 1024 })
    await m.open()
    for (let i = 0; i < 100; i++) {
      m.put(`job ${i} `.repeat(5))
      await m.commit()
    }
    await sleep(60)
    expect(m.bl.stats().fsyncs).toBe(0)
    expect(m.bl.stats().currentIndex).toBeGreaterThan(3)
  })
})

describe('removal waits for durability', () => {
  it('an old file is removed only after the fsync covering the records moved out of it', async () => {
    const g = new GatedFs()
    const m = new Model(tmpDir(), { fsyncMs: 0, fs: g.io, fileSize: 1024, inlineSyncMaxMs: 0 })
    await m.open()
    const keep = m.put('long-lived', { delayMs: 3_600_000 })!
    m.bl.flush()
    await g.release()
    const home = m.bl.fileOf(keep.id)
    const homeFile = path.join(m.dir, `binlog.${home}`)
    let migrated = false
    for (let i = 0; i < 500 && !migrated; i++) {
      m.delete(m.put('churn '.repeat(30))!)
      m.bl.flush()
      migrated = m.bl.fileOf(keep.id) !== home
      if (!migrated) await g.release()
    }
    expect(migrated).toBe(true)
    // Moved and written, not yet fsynced (the gate holds the writer's fsync, and the spare's if one is filling): the old copy must stay.
    expect(g.waiting).toBeGreaterThanOrEqual(1)
    expect(fs.existsSync(homeFile)).toBe(true)
    await g.release()
    await m.removed()
    expect(fs.existsSync(homeFile)).toBe(false)
    expect((await m.restart()).map((r) => r.id)).toEqual([keep.id])
  })
})

/** Records the unlinks and directory fsyncs the binlog asks for; unlinks wait until released, one by one. */
class HeldUnlinks {
  readonly events: string[] = []
  private held: (() => void)[] = []
  readonly io: BinlogFs = {
    ...nodeFs,
    unlink: (file, cb) => {
      this.events.push(`unlink ${path.basename(file)}`)
      this.held.push(() =>
        nodeFs.unlink(file, (err) => {
          this.events.push(`unlinked ${path.basename(file)}`)
          cb(err)
        }),
      )
    },
    fsync: (fd, cb) => {
      const dir = fs.fstatSync(fd).isDirectory()
      if (dir) this.events.push('fsync dir')
      nodeFs.fsync(fd, (err) => {
        if (dir) this.events.push('fsynced dir')
        cb(err)
      })
    },
  }

  get waiting(): number {
    return this.held.length
  }

  /** Lets the oldest held unlink run. */
  releaseOne(): void {
    this.held.shift()?.()
  }
}

/** Puts `n` jobs, a batch each, into files of 1 KiB: a file or more per job. */
async function spread(m: Model, n: number): Promise<ReturnType<Model['put']>[]> {
  const js = []
  for (let i = 0; i < n; i++) {
    js.push(m.put(`job ${i} `.repeat(100)))
    await m.commit()
  }
  return js
}

describe('removal runs on the thread pool', () => {
  it('one file at a time, oldest first, each durably gone (directory fsynced) before the next unlink', async () => {
    const h = new HeldUnlinks()
    const m = new Model(tmpDir(), { fs: h.io, fileSize: 1024, fsyncMs: 0 })
    await m.open()
    const js = await spread(m, 4)
    for (const j of js) m.delete(j!)
    m.put('rotates the writer on')
    await m.commit()
    const first = h.events.filter((e) => e.startsWith('unlink ')).map((e) => e.slice(7))
    // Asked for at once (all but the file the deletes went to), the commit has returned, and only the oldest is on its way.
    const asked = m.bl.removalsPending
    expect(asked).toBeGreaterThanOrEqual(2)
    expect([first.length, h.waiting]).toEqual([1, 1])
    for (let i = 0; i < 8 && h.waiting > 0; i++) {
      h.releaseOne()
      await until(() => h.waiting > 0 || m.bl.removalsPending === 0)
    }
    await m.removed()
    const seen = h.events.filter((e) => e.includes('unlink') || e.includes('dir'))
    const files = seen.filter((e) => e.startsWith('unlink ')).map((e) => e.slice(7))
    expect(files).toEqual([...files].sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1])))
    expect(files).toHaveLength(asked)
    expect(seen).toEqual(files.flatMap((f) => [`unlink ${f}`, `unlinked ${f}`, 'fsync dir', 'fsynced dir']))
    for (const f of files) expect(fs.existsSync(path.join(m.dir, f))).toBe(false)
    expect(plain(await m.restart())).toEqual(expectedAll(m))
  })

  it('a file still being removed at close stays for the next start, which replays it and removes it', async () => {
    const h = new HeldUnlinks()
    const m = new Model(tmpDir(), { fs: h.io, fileSize: 1024, fsyncMs: 0 })
    await m.open()
    const js = await spread(m, 3)
    m.delete(js[0]!)
    m.put('rotates the writer on')
    await m.commit()
    expect(h.waiting).toBe(1)
    const held = h.events.find((e) => e.startsWith('unlink '))!.slice(7)
    const want = expectedAll(m)
    m.bl.close()
    expect(fs.existsSync(path.join(m.dir, held))).toBe(true)
    const again = new Model(m.dir)
    await again.open()
    expect(plain(again.recovered)).toEqual(want)
    await again.removed()
    expect(fs.existsSync(path.join(m.dir, held))).toBe(false)
    h.releaseOne() // the first writer's unlink, after close: ENOENT, and its directory fd closes
    again.bl.close()
  })

  it('an unlink that fails is fatal: onFatal gets a BinlogIoError naming the file', async () => {
    const fatal: Error[] = []
    const io: BinlogFs = {
      ...nodeFs,
      unlink: (_file, cb) => setImmediate(() => cb(Object.assign(new Error('EIO: i/o error, unlink'), { code: 'EIO' }))),
    }
    const m = new Model(tmpDir(), { fs: io, fileSize: 1024, fsyncMs: 0, onFatal: (e) => fatal.push(e) })
    await m.open()
    const js = await spread(m, 2)
    m.delete(js[0]!)
    m.put('rotates the writer on')
    await m.commit()
    await until(() => fatal.length > 0)
    expect(fatal[0]).toMatchObject({ code: 'TSB_ERR_BINLOG_IO', name: 'BinlogIoError' })
    expect(fatal[0]!.message).toMatch(/binlog\.\d+/)
    expect(() => m.put('after')).toThrow(fatal[0])
    m.bl.close()
  })
})

describe('fsync failure', () => {
  it('is fatal: onFatal gets a BinlogFsyncError, later calls throw it, nothing is acknowledged', async () => {
    const fatal: Error[] = []
    const io: BinlogFs = {
      ...nodeFs,
      fdatasync: (_fd, cb) => setImmediate(() => cb(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }))),
    }
    const m = new Model(tmpDir(), { fsyncMs: 0, fs: io, inlineSyncMaxMs: 0, onFatal: (e) => fatal.push(e) })
    await m.open()
    m.put('a')
    let acked = false
    m.bl.whenDurable(m.bl.flush(), () => (acked = true))
    await sleep(20)
    expect(fatal).toHaveLength(1)
    expect(fatal[0]).toMatchObject({ code: 'TSB_ERR_BINLOG_FSYNC', name: 'BinlogFsyncError' })
    expect((fatal[0]!.cause as NodeJS.ErrnoException).code).toBe('EIO')
    expect(acked).toBe(false)
    expect(() => m.put('b')).toThrow(fatal[0])
    expect(() => m.bl.flush()).toThrow(fatal[0])
  })

  it('another write error is fatal too: flush throws BinlogIoError and onFatal hears it', async () => {
    const fatal: Error[] = []
    let broken = false
    const io: BinlogFs = {
      ...nodeFs,
      writevSync: (fd, bufs, pos) => {
        if (broken) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' })
        return nodeFs.writevSync(fd, bufs, pos)
      },
    }
    const m = new Model(tmpDir(), { fs: io, onFatal: (e) => fatal.push(e) })
    await m.open()
    m.put('a')
    m.bl.flush()
    broken = true
    m.put('b')
    expect(() => m.bl.flush()).toThrow(expect.objectContaining({ code: 'TSB_ERR_BINLOG_IO' }))
    expect(fatal).toHaveLength(1)
    expect(() => m.put('c')).toThrow(fatal[0])
    m.bl.close() // releases the lock without writing
    broken = false
    const again = new Model(m.dir)
    await again.open()
    expect(again.recovered).toHaveLength(1)
  })
})

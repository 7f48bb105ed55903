/**
 * Every beanstalk command driven through a real, unmodified client library
 * (fivebeans 1.5, which parses YAML replies itself) against a real server on
 * 127.0.0.1, port 0. `reserve-job`, which fivebeans lacks, goes over a raw
 * socket. The commands run with and without --extensions. Set TSB_TARGET=reference to run the same file against the reference
 * beanstalkd (the expectations were checked that way).
 */
import { createRequire } from 'node:module'
import type { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { killAll, spawnScript, startTarget, type Target } from '../helpers/process.js'

// fivebeans is CommonJS without type declarations: load it untyped, type it here.
const require = createRequire(import.meta.url)
type Callback = (err: unknown, ...results: unknown[]) => void
type RawFiveBeans = EventEmitter & { connect(): void; end(): void } & Record<string, unknown>
const fivebeans = require('fivebeans') as { client: new (host: string, port: number) => RawFiveBeans }

const CALL_MS = 3000

interface Job {
  readonly id: number
  readonly body: Buffer
}

/** A promise face on a fivebeans client; a failure reply rejects with the reply word. */
class Beans {
  private closed = false
  private readonly closeWaiters: (() => void)[] = []

  private readonly raw: RawFiveBeans

  private constructor(raw: RawFiveBeans) {
    this.raw = raw
    raw.on('close', () => {
      this.closed = true
      for (const w of this.closeWaiters.splice(0)) w()
    })
  }

  static connect(port: number): Promise<Beans> {
    const raw = new fivebeans.client('127.0.0.1', port)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`fivebeans could not connect to ${port}`)), CALL_MS)
      raw.once('connect', () => {
        clearTimeout(t)
        resolve(new Beans(raw))
      })
      raw.on('error', (err: Error) => {
        clearTimeout(t)
        reject(err)
      })
      raw.connect()
    })
  }

  /** Calls a fivebeans method; resolves with its results, bounded by `ms`. */
  private call(method: string, args: readonly unknown[], ms = CALL_MS): Promise<unknown[]> {
    const fn = this.raw[method] as (...a: unknown[]) => void
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`fivebeans ${method} got no reply in ${ms} ms`)), ms)
      const cb: Callback = (err, ...results) => {
        clearTimeout(t)
        if (err !== null && err !== undefined) reject(new Error(String(err)))
        else resolve(results)
      }
      fn.call(this.raw, ...args, cb)
    })
  }

  private async job(method: string, args: readonly unknown[] = [], ms = CALL_MS): Promise<Job> {
    const [id, body] = await this.call(method, args, ms)
    return { id: Number(id), body: body as Buffer }
  }

  private async yaml<T>(method: string, args: readonly unknown[] = []): Promise<T> {
    const [doc] = await this.call(method, args)
    return doc as T
  }

  async use(tube: string): Promise<string> {
    return String((await this.call('use', [tube]))[0])
  }
  async listTubeUsed(): Promise<string> {
    return String((await this.call('list_tube_used', []))[0])
  }
  async watch(tube: string): Promise<number> {
    return Number((await this.call('watch', [tube]))[0])
  }
  async ignore(tube: string): Promise<number> {
    return Number((await this.call('ignore', [tube]))[0])
  }
  listTubesWatched(): Promise<string[]> {
    return this.yaml('list_tubes_watched')
  }
  listTubes(): Promise<string[]> {
    return this.yaml('list_tubes')
  }
  async put(pri: number, delay: number, ttr: number, body: string | Buffer): Promise<number> {
    return Number((await this.call('put', [pri, delay, ttr, body]))[0])
  }
  reserve(ms = CALL_MS): Promise<Job> {
    return this.job('reserve', [], ms)
  }
  reserveWithTimeout(secs: number, ms = CALL_MS + secs * 1000): Promise<Job> {
    return this.job('reserve_with_timeout', [secs], ms)
  }
  async delete(id: number): Promise<void> {
    await this.call('destroy', [id])
  }
  async release(id: number, pri: number, delay: number): Promise<void> {
    await this.call('release', [id, pri, delay])
  }
  async bury(id: number, pri: number): Promise<void> {
    await this.call('bury', [id, pri])
  }
  async touch(id: number): Promise<void> {
    await this.call('touch', [id])
  }
  peek(id: number): Promise<Job> {
    return this.job('peek', [id])
  }
  peekReady(): Promise<Job> {
    return this.job('peek_ready')
  }
  peekDelayed(): Promise<Job> {
    return this.job('peek_delayed')
  }
  peekBuried(): Promise<Job> {
    return this.job('peek_buried')
  }
  async kick(n: number): Promise<number> {
    return Number((await this.call('kick', [n]))[0])
  }
  async kickJob(id: number): Promise<void> {
    await this.call('kick_job', [id])
  }
  stats(): Promise<Record<string, unknown>> {
    return this.yaml('stats')
  }
  statsJob(id: number): Promise<Record<string, unknown>> {
    return this.yaml('stats_job', [id])
  }
  statsTube(tube: string): Promise<Record<string, unknown>> {
    return this.yaml('stats_tube', [tube])
  }
  async pauseTube(tube: string, secs: number): Promise<void> {
    await this.call('pause_tube', [tube, secs])
  }

  /** `quit` has no reply: resolves when the server has closed the connection. */
  quit(ms = CALL_MS): Promise<void> {
    ;(this.raw['quit'] as (cb: Callback) => void).call(this.raw, () => undefined)
    return this.closedByServer(ms)
  }

  closedByServer(ms = CALL_MS): Promise<void> {
    if (this.closed) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms)
      this.closeWaiters.push(() => {
        clearTimeout(t)
        resolve()
      })
    })
  }

  end(): void {
    this.raw.end()
  }
}

let target: Target
let clients: Beans[] = []
let raws: RawClient[] = []

async function client(): Promise<Beans> {
  const c = await Beans.connect(target.port)
  clients.push(c)
  return c
}

async function raw(): Promise<RawClient> {
  const c = await RawClient.connect(target.port)
  raws.push(c)
  return c
}

afterEach(async () => {
  for (const c of clients) c.end()
  for (const r of raws) r.close()
  clients = []
  raws = []
  await killAll()
  await target.close()
})

// The standard commands answer the same with the extensions on (--extensions).
for (const extensions of [false, true]) describe(`fivebeans against the server${extensions ? ' with --extensions' : ''}`, () => {
  beforeEach(async () => {
    target = await startTarget({ extensions })
  })

  it('use, list-tube-used, watch, ignore, list-tubes-watched and list-tubes', async () => {
    const b = await client()
    expect(await b.listTubeUsed()).toBe('default')
    expect(await b.use('emails')).toBe('emails')
    expect(await b.listTubeUsed()).toBe('emails')
    expect(await b.watch('emails')).toBe(2)
    expect(await b.watch('emails')).toBe(2) // already watched: unchanged
    expect(await b.watch('reports')).toBe(3)
    expect(await b.listTubesWatched()).toEqual(['default', 'emails', 'reports'])
    expect(await b.ignore('default')).toBe(2)
    expect(await b.ignore('never-seen')).toBe(2)
    expect(await b.ignore('emails')).toBe(1)
    await expect(b.ignore('reports')).rejects.toThrow('NOT_IGNORED')
    expect(await b.listTubesWatched()).toEqual(['reports'])
    // emails lives on: this client still uses it.
    expect((await b.listTubes()).sort()).toEqual(['default', 'emails', 'reports'])
  })

  it('moves jobs from a producer to a worker across tubes, best priority first', async () => {
    const producer = await client()
    const worker = await client()
    expect(await worker.watch('emails')).toBe(2)
    expect(await worker.watch('reports')).toBe(3)
    expect(await worker.ignore('default')).toBe(2)

    // A worker already waiting gets the first job the moment it is put.
    const waiting = worker.reserve()
    await producer.use('emails')
    const first = await producer.put(500, 0, 60, 'welcome alice')
    expect(await waiting).toEqual({ id: first, body: Buffer.from('welcome alice') })
    await worker.delete(first)

    const e1 = await producer.put(100, 0, 60, 'e1')
    const e2 = await producer.put(10, 0, 60, 'e2')
    await producer.use('reports')
    const r1 = await producer.put(10, 0, 60, 'r1')
    const r2 = await producer.put(5000, 0, 60, 'r2')
    const big = randomBytes(60_000) // binary, CRLFs and all
    const r3 = await producer.put(7000, 0, 60, big)
    await producer.use('default')
    const unwatched = await producer.put(0, 0, 60, 'not for this worker')

    // Lowest priority value first; ties go to the older job, whatever the tube.
    const order: number[] = []
    for (let i = 0; i < 5; i++) {
      const j = await worker.reserve()
      order.push(j.id)
      if (j.id === r3) expect(j.body.equals(big)).toBe(true)
      await worker.delete(j.id)
    }
    expect(order).toEqual([e2, r1, e1, r2, r3])
    await expect(worker.reserveWithTimeout(0)).rejects.toThrow('TIMED_OUT')

    const s = await producer.stats()
    expect(s).toMatchObject({
      'current-jobs-ready': 1,
      'current-jobs-reserved': 0,
      'cmd-put': 7,
      'cmd-delete': 6,
      'cmd-reserve': 6,
      'cmd-reserve-with-timeout': 1,
      'total-jobs': 7,
      'current-producers': 1,
      'current-workers': 1,
      'current-connections': 2,
    })
    expect(await producer.statsTube('emails')).toMatchObject({
      name: 'emails',
      'total-jobs': 3,
      'cmd-delete': 3,
      'current-jobs-ready': 0,
      'current-using': 0,
      'current-watching': 1,
    })
    expect(await producer.statsTube('default')).toMatchObject({
      'total-jobs': 1,
      'current-jobs-ready': 1,
      'current-jobs-urgent': 1,
      'current-using': 2, // both clients still use default
      'current-watching': 1,
    })
    expect((await producer.peekReady()).id).toBe(unwatched)
  })

  it('release with a delay keeps the job back for that delay', async () => {
    const b = await client()
    const id = await b.put(100, 0, 60, 'retry me')
    expect((await b.reserve()).id).toBe(id)
    await b.release(id, 7, 1)

    expect(await b.statsJob(id)).toMatchObject({ id, state: 'delayed', pri: 7, delay: 1, reserves: 1, releases: 1 })
    expect((await b.peekDelayed()).id).toBe(id)
    await expect(b.peekReady()).rejects.toThrow('NOT_FOUND')
    expect(await b.stats()).toMatchObject({ 'current-jobs-delayed': 1, 'current-jobs-ready': 0, 'cmd-release': 1 })
    await expect(b.reserveWithTimeout(0)).rejects.toThrow('TIMED_OUT')

    const t0 = performance.now()
    const again = await b.reserveWithTimeout(3)
    const waited = performance.now() - t0
    expect(again).toEqual({ id, body: Buffer.from('retry me') })
    expect(waited).toBeGreaterThan(800)
    expect(waited).toBeLessThan(2500)
    expect(await b.statsJob(id)).toMatchObject({ state: 'reserved', reserves: 2, releases: 1, pri: 7 })
  })

  it('bury, peek-buried, kick and kick-job', async () => {
    const b = await client()
    const a = await b.put(10, 0, 60, 'a')
    const c = await b.put(20, 0, 60, 'c')
    const d = await b.put(30, 100, 60, 'delayed')
    await expect(b.bury(a, 1)).rejects.toThrow('NOT_FOUND') // only a reserved job can be buried

    expect((await b.reserve()).id).toBe(a)
    await b.bury(a, 55)
    expect((await b.reserve()).id).toBe(c)
    await b.bury(c, 66)

    expect(await b.peekBuried()).toEqual({ id: a, body: Buffer.from('a') }) // FIFO: first buried first
    expect(await b.statsJob(a)).toMatchObject({ state: 'buried', pri: 55, buries: 1, kicks: 0 })
    expect(await b.stats()).toMatchObject({ 'current-jobs-buried': 2, 'current-jobs-delayed': 1, 'cmd-bury': 3 })

    // kick takes buried jobs first and leaves delayed ones alone in that call.
    expect(await b.kick(1)).toBe(1)
    expect(await b.statsJob(a)).toMatchObject({ state: 'ready', kicks: 1 })
    await b.kickJob(c)
    expect(await b.statsJob(c)).toMatchObject({ state: 'ready', kicks: 1, pri: 66 })
    await expect(b.kickJob(c)).rejects.toThrow('NOT_FOUND')
    await expect(b.peekBuried()).rejects.toThrow('NOT_FOUND')
    expect(await b.kick(5)).toBe(1) // now the delayed one
    expect(await b.statsJob(d)).toMatchObject({ state: 'ready', kicks: 1 })
    expect(await b.kick(5)).toBe(0)

    const e = await b.put(0, 100, 60, 'later')
    await b.kickJob(e)
    expect(await b.statsJob(e)).toMatchObject({ state: 'ready', kicks: 1 })
    await expect(b.kickJob(999)).rejects.toThrow('NOT_FOUND')
    expect(await b.stats()).toMatchObject({ 'current-jobs-ready': 4, 'current-jobs-buried': 0, 'cmd-kick': 3 })
  })

  it('touch restarts the time to run; other clients cannot touch, release, bury or delete', async () => {
    const owner = await client()
    const other = await client()
    const id = await owner.put(1, 0, 2, 'slow work')
    expect(await owner.peek(id)).toEqual({ id, body: Buffer.from('slow work') })
    expect((await owner.reserve()).id).toBe(id)
    await expect(owner.peekReady()).rejects.toThrow('NOT_FOUND')
    expect(await other.peek(id)).toEqual({ id, body: Buffer.from('slow work') }) // peek sees reserved jobs

    await expect(other.touch(id)).rejects.toThrow('NOT_FOUND')
    await expect(other.release(id, 0, 0)).rejects.toThrow('NOT_FOUND')
    await expect(other.bury(id, 0)).rejects.toThrow('NOT_FOUND')
    await expect(other.delete(id)).rejects.toThrow('NOT_FOUND')

    await new Promise((r) => setTimeout(r, 1100))
    expect((await owner.statsJob(id))['time-left']).toBe(0)
    await owner.touch(id)
    expect(await owner.statsJob(id)).toMatchObject({ state: 'reserved', 'time-left': 1, ttr: 2, timeouts: 0 })

    await owner.release(id, 1, 0)
    expect((await other.reserve()).id).toBe(id)
    await other.delete(id)
    await expect(owner.peek(id)).rejects.toThrow('NOT_FOUND')
    await expect(owner.statsJob(id)).rejects.toThrow('NOT_FOUND')
    await expect(owner.delete(id)).rejects.toThrow('NOT_FOUND')
    await expect(owner.touch(id)).rejects.toThrow('NOT_FOUND')
  })

  it('pause-tube holds jobs back for the pause but still lets them be peeked', async () => {
    const b = await client()
    await expect(b.pauseTube('nope', 1)).rejects.toThrow('NOT_FOUND')
    await expect(b.statsTube('nope')).rejects.toThrow('NOT_FOUND')
    const id = await b.put(0, 0, 60, 'after the pause')
    await b.pauseTube('default', 1)
    expect(await b.statsTube('default')).toMatchObject({ name: 'default', pause: 1, 'cmd-pause-tube': 1 })
    expect((await b.peekReady()).id).toBe(id)

    const t0 = performance.now()
    expect((await b.reserveWithTimeout(3)).id).toBe(id)
    const waited = performance.now() - t0
    expect(waited).toBeGreaterThan(800)
    expect(waited).toBeLessThan(2500)
  })

  it('stats counts each command once', async () => {
    const b = await client()
    const other = await client()
    await b.use('t')
    await b.watch('t')
    await b.ignore('default')
    const id = await b.put(0, 0, 60, 'x')
    await b.peek(id)
    await b.peekReady()
    await expect(b.peekDelayed()).rejects.toThrow('NOT_FOUND')
    await expect(b.peekBuried()).rejects.toThrow('NOT_FOUND')
    await b.reserve()
    await b.touch(id)
    await b.release(id, 0, 0)
    await b.reserveWithTimeout(0)
    await b.bury(id, 0)
    await b.kick(1)
    await b.statsJob(id)
    await b.statsTube('t')
    await b.listTubes()
    await b.listTubeUsed()
    await b.listTubesWatched()
    await b.pauseTube('t', 0)
    await b.delete(id)
    await expect(b.delete(id)).rejects.toThrow('NOT_FOUND') // counted: it parsed

    const s = await other.stats()
    expect(s).toMatchObject({
      'cmd-put': 1,
      'cmd-peek': 1,
      'cmd-peek-ready': 1,
      'cmd-peek-delayed': 1,
      'cmd-peek-buried': 1,
      'cmd-reserve': 1,
      'cmd-reserve-with-timeout': 1,
      'cmd-delete': 2,
      'cmd-release': 1,
      'cmd-use': 1,
      'cmd-watch': 1,
      'cmd-ignore': 1,
      'cmd-bury': 1,
      'cmd-kick': 1,
      'cmd-touch': 1,
      'cmd-stats': 1,
      'cmd-stats-job': 1,
      'cmd-stats-tube': 1,
      'cmd-list-tubes': 1,
      'cmd-list-tube-used': 1,
      'cmd-list-tubes-watched': 1,
      'cmd-pause-tube': 1,
      'job-timeouts': 0,
      'total-jobs': 1,
      'current-jobs-ready': 0,
      'current-tubes': 2,
      'current-connections': 2,
      'current-producers': 1,
      'current-workers': 1,
      'current-waiting': 0,
      'max-job-size': 65535,
      draining: false,
    })
    expect(s['version']).toBe('1.12')
    expect(s['uptime']).toEqual(expect.any(Number))
  })

  it('reserve-job (over a raw socket) takes a specific job from under fivebeans', async () => {
    const b = await client()
    const r = await raw()
    const first = await b.put(0, 0, 60, 'first')
    const second = await b.put(0, 0, 60, 'second')

    expect(await r.call(`reserve-job ${second}\r\n`)).toBe(`RESERVED ${second} 6\r\n`)
    expect(await r.read(8)).toBe('second\r\n')
    expect(await b.statsJob(second)).toMatchObject({ state: 'reserved', reserves: 1 })
    expect(await r.call(`reserve-job ${second}\r\n`)).toBe('NOT_FOUND\r\n') // already reserved

    expect((await b.reserve()).id).toBe(first)
    await expect(b.reserveWithTimeout(0)).rejects.toThrow('TIMED_OUT')
    expect(await r.call(`release ${second} 0 0\r\n`)).toBe('RELEASED\r\n')
    expect(await b.reserve()).toEqual({ id: second, body: Buffer.from('second') })
  })

  it('quit closes the connection and the server forgets it', async () => {
    const b = await client()
    const watcher = await client()
    expect((await watcher.stats())['current-connections']).toBe(2)
    await b.quit()
    // The server may see the close a moment after the client does.
    let connections: unknown
    for (let i = 0; i < 50 && connections !== 1; i++) {
      connections = (await watcher.stats())['current-connections']
      if (connections !== 1) await new Promise((r) => setTimeout(r, 10))
    }
    expect(connections).toBe(1)
  })
})

/**
 * Sequences from real clients' own integration tests, run through fivebeans
 * over one socket: where a client that works with beanstalkd broke.
 */
describe('client test suites', () => {
  beforeEach(async () => {
    target = await startTarget()
  })

  // The semver fivebeans itself depends on (its tests use it), not a copy of ours.
  const semver = createRequire(require.resolve('fivebeans'))('semver') as { satisfies(v: string, range: string): boolean }

  it("fivebeans' #kick_job(): the version check it makes (stats version + '.0' through semver) passes, then kick-job works", async () => {
    const producer = await client()
    const consumer = await client()
    const id = await producer.put(0, 0, 60, JSON.stringify({ type: 'test', payload: 'kick me' }))
    // test-client.js: version = response.version + '.0'; four-part versions lose their last part.
    let version = `${String((await producer.stats())['version'])}.0`
    if (/\d+\.\d+\.\d+\.\d+/.test(version)) version = version.replace(/\.\d+$/, '')
    expect(version).toBe('1.12.0')
    expect(semver.satisfies(version, '>= 1.8.0')).toBe(true)
    expect((await consumer.reserve()).id).toBe(id)
    await consumer.bury(id, 4294967295)
    await producer.kickJob(id)
    expect(await producer.statsJob(id)).toMatchObject({ state: 'ready', kicks: 1 })
  })

  it("pheanstalk's testPauseTube: pause, reserve-with-timeout 0 times out, resume (pause 0), reserve-with-timeout 0 at once gets the job", async () => {
    const b = await client()
    const tube = 'test-pause-tube'
    await b.use(tube)
    await b.watch(tube)
    await b.ignore('default')
    const body = Buffer.from('PheanstalkTest::testPauseTube')
    const id = await b.put(1024, 0, 60, body)
    // Repeated: how soon after the resume the reserve arrives varies from run to run.
    for (let round = 0; round < 20; round++) {
      await b.pauseTube(tube, 60)
      await expect(b.reserveWithTimeout(0)).rejects.toThrow('TIMED_OUT')
      // resumeTube (pause-tube T 0), then reserveWithTimeout(0) at once.
      const resumed = b.pauseTube(tube, 0)
      const reserved = b.reserveWithTimeout(0)
      await resumed
      expect(await reserved).toEqual({ id, body })
      await b.release(id, 1024, 0)
    }
  })
})

describe('the README examples (examples/producer.js, examples/worker.js)', () => {
  beforeEach(async () => {
    target = await startTarget()
  })

  it('the producer queues jobs and the worker processes and deletes them', async () => {
    const env = { BEANSTALK_PORT: String(target.port) }
    const producer = spawnScript('examples/producer.js', ['3'], env)
    expect(await producer.exited()).toEqual({ code: 0, signal: null })
    expect(producer.stdout).toMatch(/queued job 3 on emails/)
    const b = await client()
    expect(await b.statsTube('emails')).toMatchObject({ 'current-jobs-ready': 3, 'total-jobs': 3 })

    const worker = spawnScript('examples/worker.js', [], { ...env, FAIL_RATE: '0' })
    await worker.until(() => worker.stdout.includes('processed job 3'), 'the worker to process job 3')
    expect(worker.stdout).toContain('sent email to user1@example.com: Hello #1')
    expect(await b.statsTube('emails')).toMatchObject({ 'current-jobs-ready': 0, 'cmd-delete': 3, 'current-watching': 1 })
  })

  it('a failing job is released with a delay', async () => {
    const b = await client()
    await b.use('emails')
    const id = await b.put(1024, 0, 60, JSON.stringify({ to: 'x@example.com', subject: 'hi' }))
    const worker = spawnScript('examples/worker.js', [], { BEANSTALK_PORT: String(target.port), FAIL_RATE: '1' })
    await worker.until(() => worker.stdout.includes(`job ${id} failed`), 'the worker to fail the job')
    expect(await b.statsJob(id)).toMatchObject({ state: 'delayed', delay: 1, releases: 1, pri: 1024 })
  })
})

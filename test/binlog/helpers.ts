/**
 * Binlog test helpers: temp directories (removed after each test), a pino
 * logger that captures records, and a small job model that makes the same
 * state changes the registry makes and tells the store about them (the
 * binlog unless another engine is given: test/store/engines.ts). The model
 * is also the store's ReplaySink, as the registry is: replay puts its jobs
 * back into the model's map, and `recovered` lists what came back.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pino, type Logger } from 'pino'
import { afterEach } from 'vitest'
import type { Binlog, BinlogOptions, JobView } from '../../src/store/binlog/binlog.js'
import type { DurableStore, ReplaySink, RestoredFields } from '../../src/store/store.js'
import { HEADER_SIZE, HeaderFlag, decodeHeader, decodeRecord, type BinlogRecord } from '../../src/store/binlog/record.js'
import { ManualClock } from '../../src/util/clock.js'
import { prng } from '../helpers/prng.js'
import { binlogEngine, type EngineFactory } from '../store/engines.js'

const dirs: string[] = []
const open = new Set<DurableStore>()

afterEach(() => {
  for (const b of open) {
    try {
      b.close()
    } catch {
      // A test that broke its binlog on purpose.
    }
  }
  open.clear()
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

export function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-binlog-'))
  dirs.push(d)
  return d
}

export interface LogLine {
  level: number
  msg: string
  [key: string]: unknown
}

export function captureLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const dest = { write: (s: string): void => void lines.push(JSON.parse(s) as LogLine) }
  return { log: pino({ level: 'debug' }, dest), lines }
}

export const WARN = 40

/** The records of a binlog file, in order, up to a preallocated file's zeros; throws at damage. */
export function fileRecords(file: string): { record: BinlogRecord; offset: number; size: number }[] {
  const buf = fs.readFileSync(file)
  const h = decodeHeader(buf)
  const preallocated = typeof h !== 'string' && (h.flags & HeaderFlag.PREALLOCATED) !== 0
  const out: { record: BinlogRecord; offset: number; size: number }[] = []
  for (let off = HEADER_SIZE; off < buf.length; ) {
    if (preallocated && buf.subarray(off).every((b) => b === 0)) break
    const d = decodeRecord(buf, off)
    if (!d.ok) throw new Error(`damage at ${off}: ${d.detail}`)
    out.push({ record: d.record, offset: off, size: d.size })
    off += d.size
  }
  return out
}

/** The error an open of `m` fails with (it must fail). */
export async function openError(m: Model): Promise<unknown> {
  try {
    await m.open()
  } catch (err) {
    return err
  }
  throw new Error('open succeeded')
}

/** Sizes of the binlog files in `dir` (the reserve and lock not counted). */
export function binlogBytes(dir: string): number {
  let n = 0
  for (const f of fs.readdirSync(dir)) if (/^binlog\.\d+$/.test(f)) n += fs.statSync(path.join(dir, f)).size
  return n
}

export function binlogFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^binlog\.\d+$/.test(f))
    .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)))
}

export const JS = { READY: 1, RESERVED: 2, BURIED: 3, DELAYED: 4 } as const

export interface TestJob extends JobView {
  tube: { name: string }
}

/** A replayed job as a test looks at it: its state as the registry files it, plus its wall-clock times. */
export interface RecoveredJob {
  readonly id: number
  readonly tube: string
  readonly pri: number
  readonly delayMs: number
  readonly ttrMs: number
  readonly body: Buffer
  readonly state: 'ready' | 'delayed' | 'buried'
  readonly createdAt: number
  readonly deadline: number
  readonly createdAtWall: number
  /** Delayed: the due time; otherwise 0. */
  readonly readyAtWall: number
  readonly reserves: number
  readonly timeouts: number
  readonly releases: number
  readonly buries: number
  readonly kicks: number
}

const CRLF = Buffer.from('\r\n')

const WALL_BASE = 1_700_000_000_000

/** Resolves once `cond` holds; polls every 2 ms, throws after `ms`. */
export async function until(cond: () => boolean, what = 'the condition', ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); await new Promise((r) => setTimeout(r, 2))) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
  }
}

/**
 * Jobs and a store (the binlog by default), with the registry's transitions.
 * Wall and monotonic clocks move together (wall = base + mono) unless a test
 * moves `wallSkew`.
 */
export class Model<S extends DurableStore = Binlog> implements ReplaySink {
  readonly clock = new ManualClock(5_000)
  wallSkew = 0
  readonly now = (): number => WALL_BASE + this.wallSkew + this.clock.now()
  readonly jobs = new Map<number, TestJob>()
  /** Ids of buried jobs in bury order, as the tube's buried list holds them. */
  buried: number[] = []
  nextId = 1
  /** What the last open replayed: non-buried jobs by id, then buried ones in bury order. */
  recovered: RecoveredJob[] = []
  /** The next id the last open's replay gave (restoreEnd). */
  replayedNextId = 0
  bl!: S
  readonly engine: EngineFactory<S>
  readonly dir: string
  readonly lines: LogLine[]
  readonly overrides: Partial<BinlogOptions>
  private readonly log: Logger

  constructor(dir = tmpDir(), overrides: Partial<BinlogOptions> = {}, engine?: EngineFactory<S>) {
    this.engine = engine ?? (binlogEngine as unknown as EngineFactory<S>)
    this.dir = dir
    this.overrides = overrides
    const c = captureLog()
    this.log = c.log
    this.lines = c.lines
  }

  options(): BinlogOptions {
    return {
      dir: this.dir,
      fileSize: 1 << 20,
      fsyncMs: 50,
      fsyncNever: false,
      maxJobSize: 1 << 21,
      log: this.log,
      clock: this.clock,
      now: this.now,
      reserveBytes: 64 * 1024,
      retryMs: 10,
      ...this.overrides,
    }
  }

  /** Opens the store, which replays into this model (its jobs map is rebuilt). */
  async open(): Promise<S> {
    this.jobs.clear()
    this.buried = []
    this.recovered = []
    this.bl = await this.engine.open(this.options(), this)
    open.add(this.bl)
    return this.bl
  }

  /** close(), then open again: the jobs come back through replay, as the server's would. */
  async restart(): Promise<readonly RecoveredJob[]> {
    this.bl.close()
    open.delete(this.bl)
    await this.open()
    return this.recovered
  }

  // --- the ReplaySink, as the registry implements it ----------------------------------

  restoreJob(f: RestoredFields, tube: string, body: Buffer, start: number, end: number): void {
    const b = Buffer.concat([body.subarray(start, end), CRLF])
    const j: TestJob = { ...f, tube: { name: tube }, body: b, bodyLen: b.length }
    this.jobs.set(j.id, j)
  }

  restoreUpdate(f: RestoredFields): boolean {
    const j = this.jobs.get(f.id)
    if (j === undefined) return false
    Object.assign(j, { ...f })
    return true
  }

  restoreDelete(id: number): boolean {
    return this.jobs.delete(id)
  }

  restoreEnd(buried: readonly number[], nextId: number): void {
    const now = this.clock.now()
    for (const j of this.jobs.values()) {
      if (j.state === JS.RESERVED || (j.state === JS.DELAYED && j.deadline <= now)) j.state = JS.READY
      if (j.state !== JS.DELAYED) j.deadline = 0
    }
    const plainJobs = [...this.jobs.values()].filter((j) => j.state !== JS.BURIED).sort((a, b) => a.id - b.id)
    const buriedJobs = buried.map((id) => this.jobs.get(id)!)
    if (buriedJobs.some((j) => j.state !== JS.BURIED) || plainJobs.length + buriedJobs.length !== this.jobs.size) {
      throw new Error(`restoreEnd: bury order ${buried.join(',')} does not match the buried jobs`)
    }
    this.buried = [...buried]
    this.replayedNextId = nextId
    if (nextId > this.nextId) this.nextId = nextId
    const off = this.now() - now
    this.recovered = [...plainJobs, ...buriedJobs].map((j) => ({
      id: j.id,
      tube: j.tube.name,
      pri: j.pri,
      delayMs: j.delayMs,
      ttrMs: j.ttrMs,
      body: j.body,
      state: j.state === JS.BURIED ? 'buried' : j.state === JS.DELAYED ? 'delayed' : 'ready',
      createdAt: j.createdAt,
      deadline: j.deadline,
      createdAtWall: j.createdAt + off,
      readyAtWall: j.state === JS.DELAYED ? j.deadline + off : 0,
      reserves: j.reserves,
      timeouts: j.timeouts,
      releases: j.releases,
      buries: j.buries,
      kicks: j.kicks,
    }))
  }

  peek(id: number): TestJob | undefined {
    return this.jobs.get(id)
  }

  put(body: string | Buffer, o: { pri?: number; delayMs?: number; ttrMs?: number; tube?: string } = {}): TestJob | null {
    const now = this.clock.now()
    const delayMs = o.delayMs ?? 0
    const b = Buffer.concat([typeof body === 'string' ? Buffer.from(body, 'latin1') : body, CRLF])
    const j: TestJob = {
      id: this.nextId++,
      tube: { name: o.tube ?? 'default' },
      pri: o.pri ?? 100,
      delayMs,
      ttrMs: o.ttrMs ?? 60_000,
      body: b,
      bodyLen: b.length,
      state: delayMs > 0 ? JS.DELAYED : JS.READY,
      createdAt: now,
      deadline: delayMs > 0 ? now + delayMs : 0,
      reserves: 0,
      timeouts: 0,
      releases: 0,
      buries: 0,
      kicks: 0,
    }
    if (!this.bl.put(j)) return null
    this.jobs.set(j.id, j)
    return j
  }

  private unbury(j: TestJob): void {
    if (j.state === JS.BURIED) this.buried.splice(this.buried.indexOf(j.id), 1)
  }

  reserve(j: TestJob): void {
    this.unbury(j)
    j.state = JS.RESERVED
    j.reserves++
    j.deadline = this.clock.now() + j.ttrMs
    this.bl.update(j)
  }

  release(j: TestJob, pri = j.pri, delayMs = 0): void {
    j.pri = pri
    j.delayMs = delayMs
    j.releases++
    j.state = delayMs > 0 ? JS.DELAYED : JS.READY
    j.deadline = delayMs > 0 ? this.clock.now() + delayMs : 0
    this.bl.update(j)
  }

  bury(j: TestJob, pri = j.pri): void {
    j.pri = pri
    j.state = JS.BURIED
    this.buried.push(j.id)
    j.buries++
    this.bl.update(j)
  }

  kick(j: TestJob): void {
    this.unbury(j)
    j.state = JS.READY
    j.kicks++
    this.bl.update(j)
  }

  timeout(j: TestJob): void {
    j.state = JS.READY
    j.timeouts++
    this.bl.update(j)
  }

  delete(j: TestJob): void {
    this.unbury(j)
    j.state = 0
    this.jobs.delete(j.id)
    this.bl.delete(j)
  }

  /** A flush slice: the jobs deleted together (deleteMany where the store has it). */
  deleteMany(js: readonly TestJob[]): void {
    for (const j of js) {
      this.unbury(j)
      j.state = 0
      this.jobs.delete(j.id)
    }
    if (this.bl.deleteMany !== undefined) this.bl.deleteMany(js)
    else for (const j of js) this.bl.delete(j)
  }

  /** Flushes and waits until the batch is durable per the policy. */
  async commit(): Promise<number> {
    const seq = this.bl.flush()
    await new Promise<void>((resolve) => this.bl.whenDurable(seq, resolve))
    return seq
  }

  /** Until the binlog's file removals (on the thread pool) are done: the directory matches its books. */
  async removed(): Promise<void> {
    const pending = (): number => (this.bl as unknown as { removalsPending?: number }).removalsPending ?? 0
    await until(() => pending() === 0, 'the binlog file removals')
  }

  /** commit(), then removed(). */
  async settle(): Promise<number> {
    const seq = await this.commit()
    await this.removed()
    return seq
  }

  /** What replay should bring back for a job as the model has it now. */
  expected(j: TestJob): Omit<RecoveredJob, 'createdAt' | 'deadline'> {
    const wallOffset = this.now() - this.clock.now()
    const delayedStill = j.state === JS.DELAYED && j.deadline > this.clock.now()
    return {
      id: j.id,
      tube: j.tube.name,
      pri: j.pri,
      delayMs: j.delayMs,
      ttrMs: j.ttrMs,
      body: j.body,
      state: j.state === JS.BURIED ? 'buried' : delayedStill ? 'delayed' : 'ready',
      createdAtWall: Math.round(j.createdAt + wallOffset),
      readyAtWall: delayedStill ? Math.round(j.deadline + wallOffset) : 0,
      reserves: j.reserves,
      timeouts: j.timeouts,
      releases: j.releases,
      buries: j.buries,
      kicks: j.kicks,
    }
  }
}

/** What `recovered` should be: non-buried jobs by id, then buried ones in bury order. */
export function expectedAll(m: Model<DurableStore>): Omit<RecoveredJob, 'createdAt' | 'deadline'>[] {
  const plainJobs = [...m.jobs.values()].filter((j) => j.state !== JS.BURIED).sort((a, b) => a.id - b.id)
  return [...plainJobs, ...m.buried.map((id) => m.jobs.get(id)!)].map((j) => m.expected(j))
}

/** `recovered` without the monotonic fields (they depend on the clock at open). */
export function plain(r: readonly RecoveredJob[]): Omit<RecoveredJob, 'createdAt' | 'deadline'>[] {
  return r.map(({ createdAt: _c, deadline: _d, ...rest }) => rest)
}

/**
 * Churn (the reference's #622): fast put/delete traffic among 100 long-delayed,
 * 50 buried and 20 repeatedly released jobs. Commits every `commitEvery`
 * iterations; every `sampleEvery` it commits and calls `sample`. Returns the
 * body bytes put.
 */
export async function churn<S extends DurableStore>(
  m: Model<S>,
  iterations: number,
  opts: { commitEvery: number; sampleEvery: number; sample: (i: number) => void },
): Promise<number> {
  const rnd = prng(622)
  for (let i = 0; i < 100; i++) m.put('delayed '.repeat(25), { delayMs: 86_400_000 })
  for (let i = 0; i < 50; i++) {
    const j = m.put('buried '.repeat(30))!
    m.reserve(j)
    m.bury(j)
  }
  const bouncing: TestJob[] = []
  for (let i = 0; i < 20; i++) bouncing.push(m.put('bounce '.repeat(20))!)
  const fast: TestJob[] = []
  let written = 0
  for (let i = 0; i < iterations; i++) {
    const j = m.put('x'.repeat(100 + rnd.int(900)))!
    written += j.body.length
    fast.push(j)
    if (fast.length > 30) m.delete(fast.splice(rnd.int(fast.length), 1)[0]!)
    const b = bouncing[i % bouncing.length]!
    m.reserve(b)
    m.release(b, rnd.int(1000))
    if (i % opts.commitEvery === opts.commitEvery - 1) await m.commit()
    if (i % opts.sampleEvery === 0) {
      await m.settle()
      opts.sample(i)
    }
  }
  return written
}

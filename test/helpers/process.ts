/**
 * Spawns the real command line (`node bin/tsbeanstalkd.js`) for tests, and,
 * for differential runs, the reference beanstalkd binary.
 *
 * Invariants: every child started here is tracked until it exits, and
 * `killAll()` (call it in afterEach) SIGKILLs whatever is still running and
 * waits for it; every wait is bounded and names what it waited for.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startServer } from './server.js'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = path.join(ROOT, 'bin/tsbeanstalkd.js')
const DIST_CLI = path.join(ROOT, 'dist/cli.js')
const DEFAULT_WAIT_MS = 5000

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** The fields of the CLI's startup log line that tests look at. */
export interface Listening {
  readonly address: string
  readonly port: number | undefined
  readonly maxJobSize: number
  readonly [key: string]: unknown
}

const live = new Set<Proc>()

export class Proc {
  readonly child: ChildProcess
  private out = ''
  private err = ''
  private exit: Exit | null = null
  private readonly wakers = new Set<() => void>()

  constructor(child: ChildProcess) {
    this.child = child
    child.stdout?.setEncoding('utf8').on('data', (d: string) => this.wake(() => (this.out += d)))
    child.stderr?.setEncoding('utf8').on('data', (d: string) => this.wake(() => (this.err += d)))
    child.on('exit', (code, signal) => this.wake(() => (this.exit = { code, signal })))
    // 'close' comes after both pipes are drained: only then is all output in.
    child.on('close', () => {
      live.delete(this)
      this.wake(() => undefined)
    })
    live.add(this)
  }

  get pid(): number {
    return this.child.pid!
  }

  get stdout(): string {
    return this.out
  }

  get stderr(): string {
    return this.err
  }

  /** stdout and stderr together (commander prints help to stdout, the reference to stderr). */
  get output(): string {
    return this.out + this.err
  }

  /** The JSON lines the logger wrote to stderr (other lines are skipped). */
  get logLines(): Record<string, unknown>[] {
    const lines: Record<string, unknown>[] = []
    for (const l of this.err.split('\n')) {
      if (!l.startsWith('{')) continue
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>)
      } catch {
        // a line still being written
      }
    }
    return lines
  }

  /** Resolves once `cond` holds, or rejects after `ms` with what was seen. */
  until(cond: () => boolean, what: string, ms = DEFAULT_WAIT_MS): Promise<void> {
    if (cond()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!cond()) return
        clearTimeout(t)
        this.wakers.delete(check)
        resolve()
      }
      const t = setTimeout(() => {
        this.wakers.delete(check)
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; stderr: ${this.err}; stdout: ${this.out}`))
      }, ms)
      this.wakers.add(check)
    })
  }

  /** Waits for the `"msg":"listening"` line and returns it. */
  async listening(ms = DEFAULT_WAIT_MS): Promise<Listening> {
    const find = (): Listening | undefined =>
      this.logLines.find((l) => l['msg'] === 'listening') as Listening | undefined
    await this.until(() => find() !== undefined || this.exit !== null, 'the "listening" log line', ms)
    const line = find()
    if (line === undefined) throw new Error(`exited ${JSON.stringify(this.exit)} before listening; stderr: ${this.err}`)
    return line
  }

  /** Waits for the process to exit with all its output read. */
  async exited(ms = DEFAULT_WAIT_MS): Promise<Exit> {
    await this.until(() => this.exit !== null && !live.has(this), 'the process to exit', ms)
    return this.exit!
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig)
  }

  private wake(update: () => void): void {
    update()
    for (const w of [...this.wakers]) w()
  }
}

/** Runs `node bin/tsbeanstalkd.js ...args` with piped output. */
export function spawnCli(args: readonly string[], cwd = ROOT): Proc {
  return new Proc(spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }))
}

/** Runs a Node script of the repo (e.g. examples/worker.js) with extra environment. */
export function spawnScript(script: string, args: readonly string[] = [], env: Record<string, string> = {}): Proc {
  return new Proc(
    spawn(process.execPath, [path.join(ROOT, script), ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
}

/** Kills every child still running and waits (bounded) until each is gone. */
export async function killAll(): Promise<void> {
  const procs = [...live]
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
  await Promise.all(procs.map((p) => p.exited(DEFAULT_WAIT_MS)))
}

function newestMtime(dir: string): number {
  let newest = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs)
  }
  return newest
}

/**
 * `npm test` builds before it runs vitest; when a test file is run on its
 * own and dist/ is missing or older than src/, build it here (bounded).
 */
export function ensureBuilt(): void {
  const built = fs.existsSync(DIST_CLI) ? fs.statSync(DIST_CLI).mtimeMs : 0
  if (built >= newestMtime(path.join(ROOT, 'src'))) return
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'pipe', timeout: 120_000 })
}

/** A TCP port that was free a moment ago (for the reference, which cannot report a `-p 0` port). */
export async function freePort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', resolve)
  })
  const { port } = srv.address() as net.AddressInfo
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

/** Resolves once something accepts TCP connections on `port` (bounded). */
export async function waitConnectable(port: number, ms = DEFAULT_WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/**
 * The reference beanstalkd, for running a suite differentially
 * (`TSB_TARGET=reference`). Its path comes from BEANSTALKD_BIN.
 */
export async function startReference(args: readonly string[] = []): Promise<{ proc: Proc; port: number }> {
  const bin = process.env['BEANSTALKD_BIN'] ?? '/usr/bin/beanstalkd'
  const port = await freePort()
  const proc = new Proc(spawn(bin, ['-l', '127.0.0.1', '-p', String(port), ...args], { stdio: ['ignore', 'pipe', 'pipe'] }))
  await waitConnectable(port)
  return { proc, port }
}

/** A server under test: ours in-process by default, the reference with TSB_TARGET=reference. */
export interface Target {
  readonly port: number
  readonly reference: boolean
  close(): Promise<void>
}

export async function startTarget(opts: { maxJobSize?: number; extensions?: boolean } = {}): Promise<Target> {
  if (process.env['TSB_TARGET'] === 'reference') {
    const args = opts.maxJobSize === undefined ? [] : ['-z', String(opts.maxJobSize)]
    const { proc, port } = await startReference(args)
    return {
      port,
      reference: true,
      close: async () => {
        proc.signal('SIGKILL')
        await proc.exited()
      },
    }
  }
  const s = await startServer(opts)
  return { port: s.port, reference: false, close: () => s.close() }
}

/** `p`, or a rejection naming `what` after `ms`; the timer never outlives the race. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_resolve, reject) => {
        t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
      }),
    ])
  } finally {
    clearTimeout(t)
  }
}

/** A plain socket, connected (bounded); for clients that must not read, or must misbehave. */
export function connectSocket(opts: net.NetConnectOpts, ms = DEFAULT_WAIT_MS): Promise<net.Socket> {
  const s = net.connect(opts)
  s.on('error', () => undefined) // a reset after the test is done with it is fine
  return withTimeout(
    new Promise<net.Socket>((resolve, reject) => {
      s.once('connect', () => resolve(s))
      s.once('error', reject)
    }),
    ms,
    'a connection',
  ).catch((err: unknown) => {
    s.destroy()
    throw err
  })
}

/**
 * kill -9 under load, `rounds` times: start the CLI with `args`, `check` what
 * it replayed, run `load` (clients that end when their connection dies) for
 * a random 100 ms plus up to `spreadMs`, SIGKILL it, wait for the clients.
 * Then a last start, checked, which is returned (its port and store).
 */
export async function killNineRounds(
  args: readonly string[],
  rounds: number,
  random: (n: number) => number,
  check: (port: number) => Promise<void>,
  load: (port: number, round: number) => Promise<void>[],
  spreadMs = 400,
): Promise<Listening> {
  for (let round = 0; round < rounds; round++) {
    const proc = spawnCli(args)
    const port = (await proc.listening(10_000)).port!
    await check(port)
    const clients = load(port, round)
    await new Promise((r) => setTimeout(r, 100 + random(spreadMs)))
    proc.signal('SIGKILL')
    await proc.exited(10_000)
    await Promise.all(clients)
  }
  const last = await spawnCli(args).listening(10_000)
  await check(last.port!)
  return last
}

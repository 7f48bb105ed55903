/**
 * The server: accepts connections (TCP or Unix socket), hands each stream to a
 * Connection, and owns the one Node timer that drives the timing wheel. A
 * listener with TLS or token authentication passes its sockets through the
 * gatekeeper first (gatekeeper.ts); one without takes them straight to a
 * Connection, exactly as before either existed.
 */
import net from 'node:net'
import os from 'node:os'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { Registry } from '../queue/registry.js'
import { QueueExtensions } from '../queue/extensions/queue-extensions.js'
import type { TubePolicySpec } from '../queue/extensions/policies.js'
import { TimingWheel } from '../queue/timing-wheel.js'
import type { ProcessInfo } from '../protocol/replies.js'
import { systemClock, type Clock } from '../util/clock.js'
import { Connection, type ConnectionHost, type Reading } from './connection.js'
import { Gatekeeper, type ListenerSecurity, type SecurityFigures, type SecurityOptions } from './gatekeeper.js'
import type { TlsMaterial } from './credentials.js'
import type { TokenSet } from '../util/token-set.js'
import type { ServerContext } from './dispatch.js'
import { Output } from './output.js'
import { PROTOCOL_VERSION } from '../version.js'
import type { DurableStore, ReplaySink } from '../store/store.js'
import { NO_BINLOG } from '../protocol/replies.js'
import { BinlogGate } from './reply-gate.js'
import { Throttled } from '../util/throttled.js'
import { unixSocketPath } from './systemd.js'
import { MemoryReclaimer } from './memory-reclaim.js'

export interface ServerOptions {
  readonly maxJobSize: number
  readonly binlogMaxSize: number
  readonly log: Logger
  readonly clock?: Clock
  /**
   * Connections served at once, across every listener (the process's
   * file-descriptor budget, fd-limit.ts); one more is closed at once and
   * counted, with a warning at most every REFUSAL_LOG_MS. Connections that
   * wait for a replay count too. Default: no limit; serve() may set it anew.
   */
  readonly maxConnections?: number
  /** --extensions: parse and serve the commands beyond the reference's. Default: off. */
  readonly extensions?: boolean
  /** With --extensions: tube policies from the config file ([[tube_policy]]), in force from the start. */
  readonly tubePolicies?: readonly TubePolicySpec[]
  /**
   * -b: the store replays into `restoreInto` after listen() and is handed
   * over with serve(store). Until then accepted connections wait unread, as
   * a client of the reference waits in its listen backlog while it replays.
   * Without it, connections are served at once (no store).
   */
  readonly awaitStore?: boolean
  /** TLS material, tokens and the limits before trust, for listeners that ask for TLS or auth. */
  readonly security?: SecurityOptions | undefined
}

/**
 * Where to listen: a TCP host and port, a Unix socket path, or a listening
 * socket the process inherited (systemd socket activation, systemd.ts).
 */
export type ListenAddress = (
  | { readonly host: string; readonly port: number }
  | { readonly path: string }
  | { readonly fd: number; readonly name?: string }
) &
  ListenerSecurity

/** At most one "connections refused" warning per this many ms, with the count since the last. */
const REFUSAL_LOG_MS = 10_000

const EMPTY = Buffer.alloc(0)

/** Node's timers take at most 2**31-1 ms. */
const MAX_TIMER_MS = 2147483647

export class BeanstalkServer implements ConnectionHost {
  readonly ctx: ServerContext
  readonly log: Logger
  readonly registry: Registry
  /** Where a store replays (the registry, as the store's ReplaySink sees it). */
  readonly restoreInto: ReplaySink
  /** The -b store's reply gate; set once, by serve(), before any connection exists. */
  gate: BinlogGate | null = null
  private store: DurableStore | null = null
  /** Sockets accepted before serve(): they wait, unread, for the replay to end. */
  private waiting: { readonly socket: net.Socket; readonly accept: (socket: net.Socket) => void }[] | null
  private readonly clock: Clock
  private readonly wheel: TimingWheel
  private readonly connections = new Set<Connection>()
  private readonly runQueue: Connection[] = []
  private runScheduled = false
  private timer: NodeJS.Timeout | null = null
  private timerAt = Infinity
  private readonly listeners: net.Server[] = []
  private maxConnections: number
  /** Connections closed at once for lack of file descriptors (/metrics). */
  refusedConnections = 0
  private readonly refusals: Throttled
  /** Gives memory back once a backlog has drained (off the command path). */
  private readonly reclaimer: MemoryReclaimer
  private readonly gatekeeper: Gatekeeper | null
  /** [[tube_policy]] tables (--extensions). */
  private readonly filePolicies: readonly TubePolicySpec[]

  constructor(opts: ServerOptions) {
    this.log = opts.log
    this.gatekeeper =
      opts.security === undefined ? null : new Gatekeeper(opts.security, opts.log, (socket, reading, rest) => this.handle(socket, reading).receive(rest ?? EMPTY))
    this.maxConnections = opts.maxConnections ?? Infinity
    this.refusals = new Throttled(REFUSAL_LOG_MS, (count, err) => {
      this.log.warn(
        { refused: count, connections: this.connections.size, maxConnections: this.maxConnections, err },
        `refused ${count} connection${count === 1 ? '' : 's'}: out of file descriptors (raise the open-files limit, ulimit -n or LimitNOFILE=); the others are served`,
      )
    })
    this.clock = opts.clock ?? systemClock
    this.wheel = new TimingWheel(this.clock.now())
    this.wheel.onWake = (tick) => this.arm(tick)
    this.registry = new Registry(this.clock, this.wheel)
    const queueExtensions = opts.extensions === true ? new QueueExtensions(this.registry) : null
    this.registry.ext = queueExtensions
    this.filePolicies = queueExtensions === null ? [] : (opts.tubePolicies ?? [])
    this.applyFilePolicies()
    this.restoreInto = this.registry
    this.waiting = opts.awaitStore === true ? [] : null
    this.reclaimer = new MemoryReclaimer(
      () => ({ jobs: this.registry.jobs.size, bodyBytes: this.registry.bodies.live, connections: this.connections.size }),
      undefined,
      () => this.registry.bodies.dropSpares(),
    )
    this.ctx = {
      registry: this.registry,
      // Indexed by Op: the reference's commands below 40, the extensions' 40-79.
      cmd: new Float64Array(80),
      info: processInfo(opts.maxJobSize, opts.binlogMaxSize, this.clock.now()),
      maxJobSize: opts.maxJobSize,
      extensions: opts.extensions === true,
      queueExtensions,
      out: new Output(),
      deliveryOut: new Output(4096),
      binlogStats: () => (this.store === null ? NO_BINLOG : this.store.stats()),
      flushSoon: () => this.gate?.schedule(),
    }
  }

  /**
   * The store has replayed into the registry: it records every change from
   * now on, and the connections that waited are served, in accept order
   * (past `maxConnections`, when given, the last ones are refused).
   */
  serve(store: DurableStore | undefined, maxConnections?: number): void {
    if (maxConnections !== undefined) this.maxConnections = maxConnections
    if (store !== undefined) {
      this.store = store
      this.registry.journal = store
      this.gate = new BinlogGate(store)
      this.ctx.queueExtensions?.journalRestored()
    }
    // The config file's tables win over what the store replayed for their tubes.
    this.applyFilePolicies()
    const waiting = this.waiting ?? []
    this.waiting = null
    for (const { socket, accept } of waiting) {
      socket.removeListener('error', dropWaiting)
      if (socket.destroyed) continue
      accept(socket)
    }
  }

  private applyFilePolicies(): void {
    for (const spec of this.filePolicies) this.registry.restorePolicy(spec)
  }

  /** Sockets accepted that wait for the replay to end (each holds a file descriptor). */
  get waitingCount(): number {
    return this.waiting?.length ?? 0
  }

  /** Serves one client stream (a socket, or any duplex in tests); `reading`: see Connection. */
  handle(stream: Duplex, reading?: Reading): Connection {
    const c = new Connection(stream, this, reading)
    this.connections.add(c)
    return c
  }

  forget(c: Connection): void {
    this.connections.delete(c)
  }

  get connectionCount(): number {
    return this.connections.size
  }

  scheduleRun(c: Connection): void {
    this.runQueue.push(c)
    if (this.runScheduled) return
    this.runScheduled = true
    setImmediate(() => {
      this.runScheduled = false
      const queue = this.runQueue.splice(0)
      for (const conn of queue) conn.run()
    })
  }

  /** Drain mode (SIGUSR1): every later put is answered DRAINING. */
  drain(): void {
    this.registry.draining = true
  }

  /** (Re)arms the Node timer for the wheel's next wake-up tick. */
  private arm(tick: number | null): void {
    if (tick === null) {
      if (this.timer !== null) clearTimeout(this.timer)
      this.timer = null
      this.timerAt = Infinity
      return
    }
    if (this.timer !== null && tick >= this.timerAt) return
    if (this.timer !== null) clearTimeout(this.timer)
    const delay = Math.min(Math.max(0, tick - this.clock.now()), MAX_TIMER_MS)
    this.timerAt = tick
    this.timer = setTimeout(() => this.onTimer(), delay)
  }

  private onTimer(): void {
    this.timer = null
    this.timerAt = Infinity
    this.wheel.advance(this.clock.now())
    const next = this.wheel.nextWake()
    if (next !== null) this.arm(next)
    // Timeouts are state changes too: their records go out this turn.
    this.gate?.schedule()
  }

  /** Starts listening (once per address; several may be open); resolves with the bound address. */
  async listen(addr: ListenAddress): Promise<net.AddressInfo | string> {
    const gk = this.gatekeeper
    const secured = addr.tls === true || addr.auth === true
    if (secured && gk === null) throw new Error('a listener with TLS or auth needs ServerOptions.security')
    const sec: ListenerSecurity = { ...(addr.tls === true ? { tls: true } : {}), ...(addr.auth === true ? { auth: true } : {}) }
    const serve = secured
      ? (socket: net.Socket): void => {
          if (this.connections.size + gk!.pendingCount >= this.maxConnections) return this.refuse(socket)
          gk!.accept(socket, sec)
        }
      : (socket: net.Socket): void => {
          if (this.connections.size + (gk?.pendingCount ?? 0) >= this.maxConnections) return this.refuse(socket)
          this.handle(socket)
        }
    const accept = (socket: net.Socket): void => {
      if (this.waiting === null) return serve(socket)
      if (this.connections.size + this.waitingCount >= this.maxConnections) return this.refuse(socket)
      socket.on('error', dropWaiting) // a client that gives up while it waits
      this.waiting.push({ socket, accept: serve })
    }
    const srv = net.createServer({ allowHalfOpen: true, noDelay: true, keepAlive: true, pauseOnConnect: true }, accept)
    srv.maxConnections = Infinity
    if ('path' in addr) removeStaleSocket(addr.path)
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject)
      const done = (): void => {
        srv.off('error', reject)
        resolve()
      }
      if ('fd' in addr) srv.listen({ fd: addr.fd }, done)
      else if ('path' in addr) srv.listen({ path: addr.path, backlog: 1024 }, done)
      else srv.listen({ host: addr.host, port: addr.port, backlog: 1024 }, done)
    })
    // Accept errors must not stop the server. libuv answers EMFILE by
    // accepting and closing what waits (its reserve-fd trick) without telling
    // us, so the budget above is what keeps us from getting here.
    srv.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EMFILE' || err.code === 'ENFILE') {
        this.refusedConnections++
        this.refusals.hit(err)
      } else {
        this.log.warn({ err }, 'accept failed')
      }
    })
    this.listeners.push(srv)
    this.reclaimer.start()
    // Node knows no path for a Unix socket it was handed as an fd.
    const bound = srv.address() ?? ('fd' in addr ? (unixSocketPath(addr.fd) ?? `fd ${addr.fd}`) : null)
    if (bound === null) throw new Error('server has no address after listen')
    return bound
  }

  /** Over the budget: close at once (the client sees the connection end) rather than run out of fds. */
  private refuse(socket: net.Socket): void {
    socket.destroy()
    this.refusedConnections++
    this.refusals.hit()
  }

  /** Connections pending and refused before trust, TLS and auth failures; null without security. */
  security(): SecurityFigures | null {
    return this.gatekeeper?.figures() ?? null
  }

  /** A reload: new handshakes and auth lines use these (a null keeps what is in use). */
  updateCredentials(material: TlsMaterial | null, tokens: TokenSet | null): void {
    this.gatekeeper?.update(material, tokens)
  }

  /** Stops accepting, closes every connection and the timer. */
  async close(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.reclaimer.stop()
    const listeners = this.listeners.splice(0)
    this.refusals.stop()
    for (const { socket } of this.waiting ?? []) socket.destroy()
    this.waiting = null
    this.gatekeeper?.stop()
    for (const c of this.connections) c.close()
    this.gate?.commit()
    await Promise.all(listeners.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))))
  }
}

function dropWaiting(this: net.Socket): void {
  this.destroy()
}

/** A socket file left by a previous run is replaced; any other file is an error. */
function removeStaleSocket(path: string): void {
  let st: fs.Stats
  try {
    st = fs.lstatSync(path)
  } catch {
    return
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`)
  fs.unlinkSync(path)
}

function processInfo(maxJobSize: number, binlogMaxSize: number, now: number): ProcessInfo {
  return {
    pid: process.pid,
    version: PROTOCOL_VERSION,
    startedAt: now,
    instanceId: randomBytes(8).toString('hex'),
    hostname: os.hostname(),
    os: os.version(),
    platform: os.machine(),
    maxJobSize,
    binlogMaxSize,
    cpuUsage: () => process.cpuUsage(),
  }
}

/**
 * What stands between an accepted socket on a secured listener and its
 * Connection: the pending limits (pending.ts), then the TLS handshake
 * (tls-engine.ts) where the listener has TLS, then the auth gate
 * (auth-gate.ts) where it has token authentication. A listener with
 * neither never comes here: its sockets become Connections at accept, as
 * before (server.ts), so the plaintext path pays nothing for any of this.
 *
 * It also holds what a reload replaces (certificate, CA, tokens) and the
 * figures /metrics reports. Failures are logged with the peer's address, at
 * most one line per kind every LOG_MS (util/throttled.ts), never with a
 * token.
 */
import type net from 'node:net'
import type tls from 'node:tls'
import type { Logger } from 'pino'
import type { TokenSet } from '../util/token-set.js'
import { Throttled } from '../util/throttled.js'
import { AuthGate, type AuthFailure, type AuthGateHost } from './auth-gate.js'
import type { Reading } from './connection.js'
import type { TlsMaterial } from './credentials.js'
import { Pending, peerOf, type PendingEntry, type PendingLimits } from './pending.js'
import { TlsEngine } from './tls-engine.js'

/** What a listener demands before it serves a client; neither: the reference's plaintext port. */
export interface ListenerSecurity {
  /** TLS (the server's certificate; client certificates too when a CA is set). */
  readonly tls?: boolean
  /** `auth <token>` before anything else. */
  readonly auth?: boolean
}

export interface SecurityOptions {
  /** Certificate, key and CA of the TLS listeners; null when none has TLS. */
  readonly tls: TlsMaterial | null
  /** Tokens of the auth listeners; null when none asks for auth. */
  readonly tokens: TokenSet | null
  readonly pending: PendingLimits
}

/** The figures of /metrics (tsbeanstalkd_tls_*, _auth_*, _pending_*). */
export interface SecurityFigures {
  readonly pending: number
  readonly pendingRefused: number
  readonly pendingTimedOut: number
  readonly handshakeFailures: number
  readonly authFailures: number
  readonly authenticated: number
  /** The TLS certificate's end of validity, ms since the epoch; null without TLS. */
  readonly certificateNotAfter: number | null
}

/** Hands a trusted socket to the server; `rest` are bytes already read past the auth line. */
export type Serve = (socket: net.Socket, reading?: Reading, rest?: Buffer) => void

const LOG_MS = 10_000

export class Gatekeeper {
  private readonly pending: Pending
  private readonly engine: TlsEngine | null
  private material: TlsMaterial | null
  private tokenSet: TokenSet | null
  private readonly serve: Serve
  private authFailures = 0
  private authenticated = 0
  private readonly logs: Throttled[] = []
  private readonly authLog: Throttled
  private readonly handshakeLog: Throttled
  private readonly refusedLog: Throttled

  constructor(opts: SecurityOptions, log: Logger, serve: Serve) {
    this.serve = serve
    this.material = opts.tls
    this.tokenSet = opts.tokens
    const throttled = (emit: (count: number, detail: unknown) => void): Throttled => {
      const t = new Throttled(LOG_MS, emit)
      this.logs.push(t)
      return t
    }
    const many = (n: number, one: string, more: string): string => (n === 1 ? one : `${n} ${more}`)
    this.authLog = throttled((n, d) => {
      const { peer, why } = d as { peer: string; why: AuthFailure }
      log.warn({ peer, reason: why, failures: n }, `auth: refused ${many(n, 'a client', 'clients')} (last ${peer}: ${why}); the connection is closed`)
    })
    this.handshakeLog = throttled((n, d) => {
      const { peer, err } = d as { peer: string; err: NodeJS.ErrnoException }
      log.info({ peer, err: { code: err.code, message: err.message }, failures: n }, `tls: ${many(n, 'a handshake', 'handshakes')} failed (last ${peer}: ${err.code ?? err.message})`)
    })
    const timeoutLog = throttled((n, d) => {
      log.info({ peer: d, closed: n, timeoutMs: opts.pending.timeoutMs }, `closed ${many(n, 'a connection', 'connections')} not trusted within ${opts.pending.timeoutMs} ms (TLS handshake or auth; last ${String(d)})`)
    })
    this.refusedLog = throttled((n, d) => {
      log.warn({ peer: d, refused: n, maxPending: opts.pending.max }, `refused ${many(n, 'a connection', 'connections')}: ${opts.pending.max} are pending already (TLS handshake or auth; last ${String(d)}); trusted clients are served`)
    })
    this.pending = new Pending(opts.pending, (peer) => timeoutLog.hit(peer))
    this.engine =
      opts.tls === null
        ? null
        : new TlsEngine({
            material: opts.tls,
            // Ours comes first; Node's is a backstop.
            handshakeTimeoutMs: 2 * opts.pending.timeoutMs + 1000,
            onFailure: (err, socket) => this.handshakeLog.hit({ peer: peerOf(socket), err }),
          })
  }

  /** Connections in their handshake or before auth now (they count toward the fd budget too). */
  get pendingCount(): number {
    return this.pending.count
  }

  /** A socket accepted on a listener with `sec`: limit, then handshake and auth as asked, then serve. */
  accept(raw: net.Socket, sec: ListenerSecurity): void {
    if (this.pending.full) {
      this.pending.refuse()
      this.refusedLog.hit(peerOf(raw))
      raw.destroy()
      return
    }
    const entry = this.pending.admit(raw)
    if (sec.tls === true) {
      if (this.engine === null) throw new Error('a TLS listener without TLS material')
      this.engine.wrap(raw, (socket) => this.secured(socket, entry, sec))
    } else {
      this.secured(raw, entry, sec)
    }
  }

  private secured(socket: net.Socket, entry: PendingEntry, sec: ListenerSecurity): void {
    if (sec.auth !== true) {
      entry.trusted()
      this.serve(socket)
      return
    }
    if (this.tokenSet === null) throw new Error('an auth listener without tokens')
    const host: AuthGateHost = {
      tokens: () => this.tokenSet!,
      authenticated: (s, reading, rest) => {
        entry.trusted()
        this.authenticated++
        this.serve(s, reading, rest)
      },
      refused: (s, why) => {
        this.authFailures++
        this.authLog.hit({ peer: peerOf(s), why })
      },
    }
    new AuthGate(socket, host)
  }

  /** A reload: handshakes and auth lines from now on use these; connections up keep going. */
  update(material: TlsMaterial | null, tokens: TokenSet | null): void {
    if (material !== null && this.engine !== null) {
      this.engine.setMaterial(material)
      this.material = material
    }
    if (tokens !== null && this.tokenSet !== null) this.tokenSet = tokens
  }

  figures(): SecurityFigures {
    return {
      pending: this.pending.count,
      pendingRefused: this.pending.refused,
      pendingTimedOut: this.pending.timedOut,
      handshakeFailures: this.engine?.failures ?? 0,
      authFailures: this.authFailures,
      authenticated: this.authenticated,
      certificateNotAfter: this.material?.notAfter.getTime() ?? null,
    }
  }

  /** The server stops: pending connections are closed, the log timers stopped. */
  stop(): void {
    this.pending.closeAll()
    for (const t of this.logs) t.stop()
  }
}

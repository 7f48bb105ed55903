/**
 * TLS for the listeners that have it: one tls.Server that never listens
 * itself. Our own net.Server accepts (so the fd budget, the pending cap and
 * systemd's sockets work the same for every listener) and hands the raw
 * socket over with `emit('connection')`, the documented way to feed a
 * tls.Server; its 'secureConnection' gives the TLSSocket back.
 *
 * - TLS 1.2 and 1.3 only (minVersion TLSv1.2).
 * - With a CA (mTLS): requestCert + rejectUnauthorized, so a client without a
 *   certificate, with one from another CA, or with an expired one never gets
 *   to 'secureConnection'.
 * - `setMaterial()` swaps certificate, key and CA for the handshakes that
 *   start afterwards (server.setSecureContext); connections already up keep
 *   theirs.
 * - Until the handshake is done the raw socket does not allow half-open: a
 *   client that closes before its handshake must close the socket (with
 *   allowHalfOpen, Node's TLSSocket would wait for us to end it, and it
 *   would linger until its deadline). Once secure, half-open is allowed as on
 *   the plaintext port (a half-close still gets its replies).
 *
 * Invariant: every socket passed to `wrap()` gets either its `onSecure`
 * call or a 'close' (a failed handshake destroys it), never both.
 */
import type net from 'node:net'
import tls from 'node:tls'
import type { TlsMaterial } from './credentials.js'

export interface TlsEngineOptions {
  readonly material: TlsMaterial
  /** A handshake Node gives up on; above the pending deadline, which comes first. */
  readonly handshakeTimeoutMs: number
  /** A handshake failed (bad client certificate, not TLS, wrong version, ...). */
  readonly onFailure: (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => void
}

export class TlsEngine {
  private readonly server: tls.Server
  /** Raw sockets in their handshake, and what to do once each is secure. */
  private readonly waiting = new Map<net.Socket, (s: tls.TLSSocket) => void>()
  /** Handshakes that failed (any reason, including refused client certificates). */
  failures = 0
  /** Whether client certificates are required (a CA was loaded at start). */
  readonly mutual: boolean
  private readonly onFailure: TlsEngineOptions['onFailure']

  constructor(opts: TlsEngineOptions) {
    this.mutual = opts.material.ca !== null
    this.onFailure = opts.onFailure
    this.server = tls.createServer({
      ...secureOptions(opts.material),
      minVersion: 'TLSv1.2',
      requestCert: this.mutual,
      rejectUnauthorized: this.mutual,
      handshakeTimeout: opts.handshakeTimeoutMs,
    })
    this.server.on('secureConnection', (socket: tls.TLSSocket) => this.onSecure(socket))
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      this.failures++
      this.onFailure(err, socket)
    })
  }

  /** Starts the TLS handshake on an accepted socket; `onSecure` gets the TLSSocket once it is done. */
  wrap(raw: net.Socket, onSecure: (s: tls.TLSSocket) => void): void {
    raw.allowHalfOpen = false
    this.waiting.set(raw, onSecure)
    raw.once('close', () => this.waiting.delete(raw))
    this.server.emit('connection', raw)
  }

  /** New certificate, key and CA for the handshakes from now on (the CA's presence is fixed at start). */
  setMaterial(m: TlsMaterial): void {
    this.server.setSecureContext(secureOptions(m))
  }

  private onSecure(socket: tls.TLSSocket): void {
    // The TLSSocket of a raw socket keeps it as _parent (Node's _tls_wrap.js, since 0.x); a test pins it.
    const raw = (socket as unknown as { _parent?: net.Socket })._parent
    const next = raw === undefined ? undefined : this.waiting.get(raw)
    if (next === undefined) {
      // Not one of ours (cannot happen while Node keeps _parent): refuse rather than serve it untracked.
      this.failures++
      this.onFailure(Object.assign(new Error('TLS socket without its accepted socket'), { code: 'TSB_ERR_TLS_UNTRACKED' }), socket)
      socket.destroy()
      return
    }
    this.waiting.delete(raw!)
    socket.allowHalfOpen = true
    next(socket)
  }
}

function secureOptions(m: TlsMaterial): tls.SecureContextOptions {
  return { cert: m.cert, key: m.key, ...(m.ca === null ? {} : { ca: m.ca }) }
}

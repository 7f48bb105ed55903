// @ts-check
/**
 * A slowloris beside the measured clients: `count` connections to a TLS
 * port that never become clients. Kind `handshake`: a TCP connection that
 * sends nothing (the server waits for its ClientHello); kind `auth`: a TLS
 * handshake completed, then silence (the server waits for its `auth` line).
 * Either is what tsbeanstalkd counts as pending (--max-pending) and closes
 * at --pending-timeout. A connection the server closes is opened again, so
 * the pressure stays at `count` for the whole run; `closed` counts them.
 *
 * Invariant: `open` + connections in their connect or handshake = `count`
 * until close(); at most BATCH are connecting at once (the listen backlog).
 */
import net from 'node:net'
import tls from 'node:tls'

const BATCH = 100

export class SlowLoris {
  /**
   * @param {{ host: string, port: number, count: number, kind: 'handshake' | 'auth', ca: string }} o
   */
  constructor(o) {
    this.o = o
    this.secureContext = o.kind === 'auth' ? tls.createSecureContext({ ca: o.ca }) : null
    /** @type {Set<net.Socket>} */
    this.sockets = new Set()
    this.open = 0
    this.connecting = 0
    /** Opened since start (reopened ones included). */
    this.opened = 0
    /** Closed by the server (deadline, cap) while held. */
    this.closed = 0
    /** Connects or handshakes that failed. */
    this.failed = 0
    this.stopping = false
    /** @type {(() => void) | null} */
    this.onFull = null
  }

  /** Opens them all; resolves once `count` are held at the same time, rejects after `timeoutMs`. */
  start(timeoutMs = 60_000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`slowloris: only ${this.open} of ${this.o.count} connections held after ${timeoutMs} ms`)), timeoutMs)
      this.onFull = () => {
        clearTimeout(t)
        resolve(undefined)
      }
      this.fill()
    })
  }

  fill() {
    while (!this.stopping && this.sockets.size < this.o.count && this.connecting < BATCH) this.one()
  }

  one() {
    const { host, port, kind } = this.o
    this.connecting++
    const s = this.secureContext !== null ? tls.connect({ host, port, servername: 'localhost', secureContext: this.secureContext }) : net.connect({ host, port })
    this.sockets.add(s)
    let held = false
    s.once(kind === 'auth' ? 'secureConnect' : 'connect', () => {
      held = true
      this.connecting--
      this.opened++
      this.open++
      if (this.open === this.o.count && this.onFull) {
        const f = this.onFull
        this.onFull = null
        f()
      }
      this.fill()
    })
    s.on('error', () => undefined)
    s.on('close', () => {
      this.sockets.delete(s)
      if (held) {
        this.open--
        if (!this.stopping) this.closed++
      } else {
        this.connecting--
        this.failed++
      }
      // a refused one is retried after a pause, not in a hot loop
      if (!this.stopping) setTimeout(() => this.fill(), held ? 0 : 50)
    })
  }

  close() {
    this.stopping = true
    for (const s of this.sockets) s.destroy()
  }
}

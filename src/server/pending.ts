/**
 * Limits before trust: a connection on a secured listener (TLS, or `auth`)
 * is pending from its accept until it is trusted (handshake done and, where
 * asked, the right token sent). Pending connections cost the server a file
 * descriptor and a little memory each, and an attacker can open them without
 * knowing anything, so:
 * - each has a deadline (`timeoutMs` from its accept, for handshake and auth
 *   together); at it the socket is destroyed;
 * - at most `max` are pending at once; one more is destroyed at accept.
 * Trusted connections are never counted here, so reaching the cap refuses
 * newcomers only, never the clients already served.
 *
 * Invariant: `sockets` holds the entries neither trusted nor closed; each
 * leaves exactly once (trusted(), its deadline, its socket's 'close', or
 * closeAll(), whichever comes first).
 */
import type { Socket } from 'node:net'

export interface PendingLimits {
  /** From accept to trusted, handshake and auth together. */
  readonly timeoutMs: number
  /** Connections pending at once. */
  readonly max: number
}

export const DEFAULT_PENDING: PendingLimits = { timeoutMs: 10_000, max: 1024 }

/** One pending connection; `trusted()` ends its deadline and its place in the count. */
export interface PendingEntry {
  trusted(): void
}

export class Pending {
  private readonly limits: PendingLimits
  private readonly onTimeout: (peer: string) => void
  private readonly sockets = new Set<Socket>()
  /** Destroyed at accept: the cap was reached. */
  refused = 0
  /** Destroyed at their deadline. */
  timedOut = 0

  constructor(limits: PendingLimits, onTimeout: (peer: string) => void) {
    this.limits = limits
    this.onTimeout = onTimeout
  }

  get count(): number {
    return this.sockets.size
  }

  get full(): boolean {
    return this.sockets.size >= this.limits.max
  }

  /** Counts `socket` as pending (the caller checked `full`). */
  admit(socket: Socket): PendingEntry {
    this.sockets.add(socket)
    let open = true
    const leave = (): void => {
      if (!open) return
      open = false
      this.sockets.delete(socket)
      clearTimeout(timer)
      socket.off('close', leave)
    }
    const timer = setTimeout(() => {
      if (!open) return
      leave()
      this.timedOut++
      this.onTimeout(peerOf(socket))
      socket.destroy()
    }, this.limits.timeoutMs)
    timer.unref()
    socket.once('close', leave)
    return { trusted: leave }
  }

  /** Counted as refused; the caller destroys the socket. */
  refuse(): void {
    this.refused++
  }

  /** The server stops: every pending socket is destroyed (their 'close' empties the set). */
  closeAll(): void {
    for (const s of [...this.sockets]) s.destroy()
  }
}

/** `address:port` of the client, `unix` for a Unix socket. */
export function peerOf(socket: Socket): string {
  const a = socket.remoteAddress
  if (a === undefined) return 'unix'
  return a.includes(':') ? `[${a}]:${socket.remotePort}` : `${a}:${socket.remotePort}`
}

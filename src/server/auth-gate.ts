/**
 * The auth gate: what a connection on a listener with token authentication
 * meets before it is a Connection. It reads the first line only, and either
 * answers AUTHENTICATED and hands the socket (and whatever followed the line
 * in the same read) to a new Connection, or answers UNAUTHORIZED and closes.
 *
 * Nothing before a successful `auth` reaches the parser, the registry or a
 * counter: no session is opened (stats does not count the connection), no
 * cmd-* is counted, no job can be created, whatever bytes follow in the same
 * packet. After it, the connection is exactly a plaintext one: the gate is
 * not on the command path at all (the socket's reads are redirected to the
 * connection, protocol/auth.ts has the line format).
 *
 * Invariant: a gate ends once, in `done`: handed over, refused, or the
 * socket closed; after that its reads are dropped unread.
 */
import type { Socket } from 'node:net'
import { AuthReply, readAuthLine } from '../protocol/auth.js'
import type { TokenSet } from '../util/token-set.js'
import type { Reading } from './connection.js'
import { startReading } from './socket-io.js'

/** Why a client was refused: logged and counted, never with the token. */
export type AuthFailure = 'wrong token' | 'not auth' | 'line too long'

export interface AuthGateHost {
  /** The tokens now (they change on reload). */
  tokens(): TokenSet
  /** The client sent a right token: serve it; `rest` are the bytes after the line. */
  authenticated(socket: Socket, reading: Reading, rest: Buffer): void
  /** The client was refused (the gate has answered UNAUTHORIZED and is closing). */
  refused(socket: Socket, why: AuthFailure): void
}

export class AuthGate {
  private readonly socket: Socket
  private readonly host: AuthGateHost
  /** The start of the first line, when it straddles reads (at most LINE_MAX bytes). */
  private partial: Buffer | null = null
  private done = false
  private readonly direct: boolean
  private readonly onBytes = (chunk: Buffer): void => this.receive(chunk)
  /** A client that half-closes before authenticating has nothing more to say. */
  private readonly onEnd = (): void => {
    this.done = true
    this.socket.destroy()
  }
  /** Errors before trust (resets, bad TLS records) end in 'close'; nothing to report. */
  private readonly onError = (): void => undefined

  constructor(socket: Socket, host: AuthGateHost) {
    this.socket = socket
    this.host = host
    socket.on('end', this.onEnd)
    socket.on('error', this.onError)
    this.direct = startReading(socket, this.onBytes)
  }

  private receive(chunk: Buffer): void {
    if (this.done) return
    const data = this.partial === null ? chunk : Buffer.concat([this.partial, chunk])
    const line = readAuthLine(data)
    if (line.kind === 'more') {
      // `chunk` may be the shared read buffer, reused by the next read: copy.
      this.partial = Buffer.from(data)
      return
    }
    this.partial = null
    if (line.kind === 'bad') return this.refuse(line.why)
    if (!this.host.tokens().has(line.token)) return this.refuse('wrong token')
    this.done = true
    // The connection has its own listeners from here on.
    this.socket.off('end', this.onEnd)
    this.socket.off('error', this.onError)
    this.socket.write(AuthReply.AUTHENTICATED)
    this.host.authenticated(this.socket, { direct: this.direct }, data.subarray(line.end))
  }

  private refuse(why: AuthFailure): void {
    this.done = true
    this.socket.off('end', this.onEnd)
    this.host.refused(this.socket, why)
    // Later reads are dropped until the client closes too (or the pending deadline comes).
    this.socket.end(AuthReply.UNAUTHORIZED)
  }
}

/**
 * Socket I/O that skips Node's stream machinery on the hot path.
 *
 * An unpipelined client costs one read and one write per command, and
 * net.Socket's fixed cost around each (a Buffer allocated per read, push /
 * 'data', a WriteWrap, callbacks and ticks per write) is what kept the server
 * below the C reference (PERFORMANCE.md, and our own profiles: the server's
 * own JavaScript was under 10% of a put). So:
 * - Reads land in one static buffer shared by every connection. This is
 *   net.Socket's own `onread` mode, which Node only offers for sockets it
 *   creates for a client: an accepted socket is switched into it. Only one
 *   callback runs at a time, and the parser copies out whatever it has not
 *   parsed before the next read (`Parser.retain`).
 * - A write goes straight to the libuv handle when nothing is queued before
 *   it. The kernel nearly always takes it whole: no WriteWrap, callback or
 *   tick. When it takes only part, libuv keeps the rest, and the write
 *   reports backpressure until the kernel took it all.
 * - A cork on a direct socket is ours too: what is written meanwhile leaves
 *   in one direct writev at the uncork (a large body's reply, replies the
 *   binlog held), not through the stream's cork, buffer and callbacks.
 * Everything else (half-close, errors, close, writes behind queued bytes)
 * stays with net.Socket, which libuv keeps in order with ours. Where
 * these internals are missing (another Node version, a non-socket stream)
 * or the socket is not a plain TCP or Unix one (TLS), reads and writes go
 * through the stream API as before.
 */
import type { Duplex } from 'node:stream'
import { PrefixViews } from '../util/bytes.js'

/** The read buffer all connections share (Node's own read size). */
const READ_SIZE = 64 * 1024
export const sharedReadBuffer: Buffer = Buffer.allocUnsafeSlow(READ_SIZE)
/** Views of it by read length: a read hands one on without allocating (util/bytes.ts). */
const readViews = new PrefixViews(sharedReadBuffer)

interface StreamHandle {
  writeBuffer(req: object, data: Buffer): number
  /** `allBuffers` true: `chunks` are Buffers, written as they are (no copy). */
  writev(req: object, chunks: Buffer[], allBuffers: boolean): number
  useUserBuffer(buf: Uint8Array): void
}

interface WriteReq {
  oncomplete: ((status: number) => void) | null
  handle: StreamHandle | null
  /** What libuv still writes from: kept referenced until oncomplete. */
  buffer: Buffer | Buffer[] | null
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq
  streamBaseState: Int32Array
  kLastWriteWasAsync: number
}

/** Node's stream_wrap binding (still reachable through process.binding in Node 20), or null. */
const binding: StreamWrapBinding | null = (() => {
  try {
    const b = (process as unknown as { binding(name: string): unknown }).binding('stream_wrap') as StreamWrapBinding
    if (typeof b.WriteWrap !== 'function' || !(b.streamBaseState instanceof Int32Array)) return null
    if (typeof b.kLastWriteWasAsync !== 'number') return null
    return b
  } catch {
    return null
  }
})()

/**
 * Handle kinds whose reads and writes go straight to a file descriptor.
 * Others are streams too (a TLSSocket's TLSWrap has writeBuffer and
 * useUserBuffer), but their writes complete through their own machinery
 * (encryption, then the socket below): they take the stream API.
 */
const DIRECT_HANDLES = new Set(['TCP', 'Pipe'])

function handleOf(socket: Duplex): StreamHandle | null {
  const h = (socket as unknown as { _handle?: unknown })._handle
  if (h === null || typeof h !== 'object') return null
  if (!DIRECT_HANDLES.has((h as { constructor?: { name?: string } }).constructor?.name ?? '')) return null
  const sh = h as Partial<StreamHandle>
  return typeof sh.writeBuffer === 'function' && typeof sh.writev === 'function' && typeof sh.useUserBuffer === 'function' ? (h as StreamHandle) : null
}

/** net.Socket's private symbol for a property set to null in its constructor, found by name. */
function socketSymbol(socket: Duplex, name: string): symbol | null {
  for (const s of Object.getOwnPropertySymbols(socket)) if (s.description === name) return s
  return null
}

/** Where a socket's reads go: one object per socket, called as a method (no closure per socket). */
export interface ByteReceiver {
  onBytes(chunk: Buffer): void
}

/** The socket's current ByteReceiver (a property of the socket, so one shared read callback serves all). */
const kReceiver = Symbol('tsbeanstalkd.receiver')

type Receiving = Duplex & { [kReceiver]: ByteReceiver }

/** net.Socket's onread callback, called as a method of the socket: `buf` is sharedReadBuffer. */
function sharedBufferCb(this: Receiving, nread: number, buf: Buffer): void {
  this[kReceiver].onBytes(buf === sharedReadBuffer ? readViews.get(nread) : buf.subarray(0, nread))
}

/** The 'data' listener of the stream path (EventEmitter calls it with the stream as `this`). */
function sharedDataListener(this: Receiving, chunk: Buffer): void {
  this[kReceiver].onBytes(chunk)
}

/**
 * Starts reading `socket` (created paused) so that each read calls
 * `to.onBytes(view of sharedReadBuffer)`; falls back to 'data' events.
 * Returns true when reads use the shared buffer.
 */
export function startReading(socket: Duplex, to: ByteReceiver | ((chunk: Buffer) => void)): boolean {
  const s = socket as Receiving
  s[kReceiver] = typeof to === 'function' ? { onBytes: to } : to
  const handle = handleOf(socket)
  const kBuffer = socketSymbol(socket, 'kBuffer')
  const kBufferCb = socketSymbol(socket, 'kBufferCb')
  const fast = binding !== null && handle !== null && kBuffer !== null && kBufferCb !== null
  if (fast) {
    const r = socket as unknown as Record<symbol, unknown>
    r[kBuffer] = sharedReadBuffer
    r[kBufferCb] = sharedBufferCb
    handle.useUserBuffer(sharedReadBuffer)
  } else {
    socket.on('data', sharedDataListener)
  }
  socket.resume()
  return fast
}

/**
 * Sends the next reads of a socket that startReading() started to `to`
 * instead (the auth gate handing a trusted socket to its connection). Call
 * it from within the current receiver, so no read falls in between.
 */
export function redirectReading(socket: Duplex, to: ByteReceiver): void {
  ;(socket as Receiving)[kReceiver] = to
}

/**
 * The request object for the next direct write of any connection. A write
 * the kernel takes whole never touches it, so one serves everyone; a write
 * that goes async keeps it, and a new one is made.
 */
let spareReq: WriteReq | null = binding === null ? null : new binding.WriteWrap()

/** Bytes a direct cork holds before it writes them (net.Socket's default high-water mark): backpressure stays as prompt as the stream's. */
const CORK_LIMIT = 16 * 1024

/**
 * Writes to one socket: straight to its handle when nothing is queued, else
 * through the stream.
 *
 * Backpressure: once a write returns false, `drained()` is called exactly once,
 * when nothing written is held any more. That moment can come from a direct
 * write libuv finished or from the last stream write queued behind it, so
 * both report back here; the stream's own 'drain' would miss the case where
 * the stream writes behind a direct one stayed under its high-water mark.
 */
/** Told once when a write that reported backpressure is all out. */
export interface DrainListener {
  drained(): void
}

export class SocketWriter {
  private readonly socket: Duplex
  private readonly listener: DrainListener
  /** Direct writes the kernel has not taken whole yet. */
  private inFlight = 0
  /** The request of the direct write in flight: kept referenced until libuv is done with it. */
  private current: WriteReq | null = null
  /** A write returned false and drained() has not been called since. */
  private owed = false
  private readonly direct: boolean
  /** Direct mode: the socket's handle, its kind checked once here; a write only checks it is still attached. */
  private readonly handle: StreamHandle | null
  /** Direct mode: cork() calls not yet uncorked, what was written meanwhile (made on first cork), its bytes. */
  private corks = 0
  private corked: Buffer[] | null = null
  private corkedBytes = 0
  /** Callbacks made on first need: most connections never have a write go async or through the stream. */
  private complete: ((status: number) => void) | null = null
  private streamWritten: ((err?: Error | null) => void) | null = null

  constructor(socket: Duplex, listener: DrainListener, direct: boolean) {
    this.socket = socket
    this.listener = listener
    this.handle = direct && spareReq !== null ? handleOf(socket) : null
    this.direct = this.handle !== null
  }

  /**
   * Returns false on backpressure: `drained()` is called once everything is
   * taken. While corked (direct mode) the chunk waits for the uncork, unless
   * the cork holds CORK_LIMIT bytes by now: then all of it goes at once.
   */
  write(chunk: Buffer): boolean {
    if (this.corks === 0) return this.writeNow(chunk)
    this.corked!.push(chunk)
    this.corkedBytes += chunk.length
    return this.corkedBytes < CORK_LIMIT || this.writeCorked()
  }

  /** Nothing written is held by libuv, the stream or a cork. */
  get idle(): boolean {
    return this.inFlight === 0 && this.socket.writableLength === 0 && this.corkedBytes === 0
  }

  cork(): void {
    if (!this.direct) return this.socket.cork()
    this.corks++
    this.corked ??= []
  }

  /** Sends what the cork kept, in one writev; returns false on backpressure, as write() does. */
  uncork(): boolean {
    if (!this.direct) {
      this.socket.uncork()
      return true
    }
    if (this.corks === 0 || --this.corks > 0) return true
    return this.writeCorked()
  }

  private writeNow(chunk: Buffer): boolean {
    const handle = this.directHandle()
    if (handle === null) return this.streamWrite(chunk)
    const req = spareReq!
    return this.dispatched(req, handle, chunk, handle.writeBuffer(req, chunk))
  }

  /** What the cork holds, in one write (the cork itself stays as it is). */
  private writeCorked(): boolean {
    const chunks = this.corked!
    this.corkedBytes = 0
    if (chunks.length === 0) return true
    if (chunks.length === 1) {
      const c = chunks[0]!
      chunks.length = 0
      return this.writeNow(c)
    }
    const handle = this.directHandle()
    if (handle === null) {
      // Behind what libuv or the stream holds: the stream's own cork makes it one writev.
      this.socket.cork()
      let ok = true
      for (const c of chunks) ok = this.streamWrite(c) && ok
      this.socket.uncork()
      chunks.length = 0
      return ok
    }
    const req = spareReq!
    const ok = this.dispatched(req, handle, chunks, handle.writev(req, chunks, true))
    // libuv keeps an async writev's array until it is done: the next cork takes a new one.
    if (this.current === req) this.corked = []
    else chunks.length = 0
    return ok
  }

  /** The handle to write to directly now, or null when the write must go behind what the stream holds. */
  private directHandle(): StreamHandle | null {
    const s = this.socket
    if (!this.direct || spareReq === null || this.inFlight > 0 || s.writableLength > 0 || s.writableCorked > 0 || !s.writable) return null
    return (s as unknown as { _handle?: unknown })._handle === this.handle ? this.handle : null
  }

  /** After a direct write or writev was handed to libuv (err: its result). */
  private dispatched(req: WriteReq, handle: StreamHandle, data: Buffer | Buffer[], err: number): boolean {
    if (err !== 0) {
      // EPIPE, ECONNRESET: the peer is gone. 'close' follows and ends the session.
      this.socket.destroy()
      return true
    }
    if (binding!.streamBaseState[binding!.kLastWriteWasAsync] === 0) return true
    // The kernel took part; libuv writes the rest and then calls oncomplete.
    req.handle = handle
    req.buffer = data
    req.oncomplete = this.complete ??= (status) => this.onComplete(status)
    this.current = req
    spareReq = new binding!.WriteWrap()
    this.inFlight++
    this.owed = true
    return false
  }

  private streamWrite(chunk: Buffer): boolean {
    if (this.socket.write(chunk, (this.streamWritten ??= () => this.settled()))) return true
    this.owed = true
    return false
  }

  private onComplete(status: number): void {
    this.inFlight--
    this.current = null
    if (status < 0) {
      this.socket.destroy()
      return
    }
    this.settled()
  }

  /** A write finished: if backpressure was reported and nothing is held now, say so. */
  private settled(): void {
    if (!this.owed || !this.idle) return
    this.owed = false
    this.listener.drained()
  }
}

/**
 * One client: feeds socket bytes to its parser, runs the commands they hold
 * (all replies of one run leave in one write), and stops running while it
 * waits in a reserve or while its socket will not take more output.
 *
 * Flow control:
 * - waiting in reserve: later commands stay queued in the parser (the
 *   reference reads nothing then either); reading continues so a half-close
 *   is seen, up to INPUT_LIMIT buffered bytes, then the socket is paused.
 * - output backpressure (`write` returned false): stop running and stop
 *   reading until 'drain', so a client that never reads cannot make the
 *   server buffer without bound.
 */
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { Op } from '../protocol/commands.js'
import { Reply } from '../protocol/constants.js'
import { Parser } from '../protocol/parser.js'
import { settleViews, type Slab } from '../queue/body-arena.js'
import type { Job } from '../queue/job.js'
import type { Session, Waiter } from '../queue/session.js'
import { dispatch, type DispatchTarget, type ServerContext } from './dispatch.js'
import { Word, type Output, type Sink } from './output.js'
import { SocketWriter, redirectReading, sharedReadBuffer, startReading, type ByteReceiver, type DrainListener } from './socket-io.js'

const SHARED_READ = sharedReadBuffer.buffer

/** Buffered unparsed input beyond which a connection stops reading. */
const INPUT_LIMIT = 256 * 1024

export interface ConnectionHost {
  readonly ctx: ServerContext
  readonly log: Logger
  /** The binlog gate, when one is on: replies leave only once their records are durable. */
  readonly gate: ReplyGate | null
  /** Run `c` again soon, outside the current call stack. */
  scheduleRun(c: Connection): void
  forget(c: Connection): void
}

/** A socket startReading() started for someone else: whether its reads use the shared buffer. */
export interface Reading {
  readonly direct: boolean
}

/** Holds replies until the binlog records behind them are durable. */
export interface ReplyGate {
  /** The connection has held output: release it after the next binlog flush. */
  hold(c: Connection): void
}

/**
 * The socket's Connection. The socket's listeners are shared functions that
 * find it here: an idle connection costs no closures (10,000 idle clients
 * are 10,000 of everything a connection allocates).
 */
const kConnection = Symbol('tsbeanstalkd.connection')
type Owned = Duplex & { [kConnection]: Connection }

function onSocketEnd(this: Owned): void {
  this[kConnection].inputClosed()
}

function onSocketClose(this: Owned): void {
  this[kConnection].socketClosed()
}

function onSocketError(this: Owned, err: NodeJS.ErrnoException): void {
  this[kConnection].socketFailed(err)
}

const NO_CHUNKS: Buffer[] = []

/**
 * Parsers handed back by connections at rest (nothing buffered, no command
 * half-read), for the next connection that reads: an idle connection holds
 * none. One list per flavour (with and without --extensions).
 */
const restingParsers: readonly [Parser[], Parser[]] = [[], []]
/** More resting parsers than this are left to the GC. */
const MAX_RESTING = 256

export class Connection implements DispatchTarget, Waiter, Sink, ByteReceiver, DrainListener {
  /** Null while at rest (see restingParsers). */
  private parserInUse: Parser | null = null
  readonly session: Session
  putId = 0
  putSlab: Slab | null = null
  quitting = false
  inputEnded = false
  private closed = false
  private readPaused = false
  private outputBlocked = false
  private readonly socket: Duplex
  private readonly writer: SocketWriter
  private readonly host: ConnectionHost
  /** Replies waiting for the binlog (only with a gate); made on first use. */
  private held: Buffer[] | null = null
  /** The slabs of the body views in `held` (one entry per view), settled once they are written. */
  private heldViews: Slab[] | null = null
  /** Batches handed to the gate and not yet written. */
  private gated = 0

  /**
   * `reading`: the socket is read already (the auth gate read its `auth`
   * line): its reads are redirected here instead of started.
   */
  constructor(socket: Duplex, host: ConnectionHost, reading?: Reading) {
    this.socket = socket
    this.host = host
    this.session = host.ctx.registry.openSession(this)
    ;(socket as Owned)[kConnection] = this
    socket.on('end', onSocketEnd)
    socket.on('close', onSocketClose)
    socket.on('error', onSocketError)
    let direct: boolean
    if (reading === undefined) {
      direct = startReading(socket, this)
    } else {
      direct = reading.direct
      redirectReading(socket, this)
    }
    this.writer = new SocketWriter(socket, this, direct)
  }

  /** The connection's parser; one is taken (or made) when it had none. */
  get parser(): Parser {
    return (this.parserInUse ??= restingParsers[this.host.ctx.extensions ? 1 : 0].pop() ?? new Parser(this.host.ctx.extensions))
  }

  /** A parser with nothing to remember goes back to the resting list. */
  private parkParser(): void {
    const p = this.parserInUse
    if (p === null || !p.atRest) return
    this.parserInUse = null
    p.forgetBody()
    const resting = restingParsers[this.host.ctx.extensions ? 1 : 0]
    if (resting.length < MAX_RESTING) resting.push(p)
  }

  /** Bytes read before this connection existed (what followed the `auth` line in its read). */
  receive(chunk: Buffer): void {
    if (chunk.length > 0) this.onBytes(chunk)
  }

  /** ByteReceiver: one read of the socket. */
  onBytes(chunk: Buffer): void {
    this.parser.push(chunk)
    this.run()
    // The next read reuses the buffer: keep what is not parsed yet.
    const p = this.parser
    p.retain(SHARED_READ)
    if (!this.readPaused && p.buffered > INPUT_LIMIT) this.pauseReading()
    this.parkParser()
  }

  /** Processes buffered commands until input runs out or the connection must stop. */
  run(): void {
    if (this.closed || this.outputBlocked) return
    const { ctx } = this.host
    const { out } = ctx
    const parser = this.parser
    out.begin(this)
    try {
      for (;;) {
        if (this.session.waiting || this.session.busy || this.quitting) break
        const op = parser.next()
        if (op === Op.NEED_MORE) break
        dispatch(ctx, this, op)
        if (!out.writable) break
      }
    } catch (err) {
      // A bug, not a client mistake: say so and keep the connection usable.
      this.host.log.error({ err, conn: this.session.id }, 'internal error while handling a command')
      out.fixed(Reply.INTERNAL_ERROR)
    }
    // A put whose body spans reads: meanwhile its job exists (peek, stats-job).
    if (this.putSlab !== null) this.noteArrivingPut(this.putSlab)
    const writable = out.end()
    if (this.quitting) return this.closeWhenFlushed()
    if (!writable) return this.blockOutput()
    // After a half-close, everything the client sent has been answered: done
    // (once replies waiting for the binlog are out).
    if (this.inputEnded && !this.session.waiting && !this.session.busy && parser.buffered === 0) return this.closeWhenFlushed()
    if (this.inputEnded) return
    else if (this.readPaused && !this.session.waiting && !this.session.busy && parser.buffered < INPUT_LIMIT / 2) this.resumeReading()
  }

  private noteArrivingPut(slab: Slab): void {
    const p = this.parser
    const len = p.bodyEnd - p.bodyOff
    this.host.ctx.registry.beginArriving(this.session, this.putId, p.pri, p.delay, p.ttr, slab, p.bodyOff, len, p.bodyArrived)
  }

  /** Waiter: a job was reserved while this connection waited. */
  jobReserved(job: Job): void {
    if (this.closed) return
    this.deliveryOut().job(Word.RESERVED, job)
    this.endDelivery()
  }

  /** Waiter: the wait ended with TIMED_OUT or DEADLINE_SOON. */
  waitEnded(reply: Buffer): void {
    if (this.closed) return
    this.deliveryOut().fixed(reply)
    this.endDelivery()
  }

  /**
   * Deliveries happen while another connection may be mid-run with the shared
   * output, so they use the context's delivery output.
   */
  private deliveryOut(): Output {
    const out = this.host.ctx.deliveryOut
    out.begin(this)
    return out
  }

  private endDelivery(): void {
    const writable = this.host.ctx.deliveryOut.end()
    if (!writable) this.blockOutput()
    // Commands that arrived while waiting run on the next turn (with none, a run would do nothing).
    const p = this.parserInUse
    if ((p !== null && p.buffered > 0) || this.inputEnded || this.readPaused || this.quitting) this.host.scheduleRun(this)
  }

  /** Sink: a chunk of replies. With a binlog it waits for the records behind it. */
  write(chunk: Buffer): boolean {
    if (this.host.gate === null) return this.writer.write(chunk)
    if (this.held === null) {
      this.held = []
      this.host.gate.hold(this)
    }
    this.held.push(chunk)
    return true
  }

  /** Sink: held output needs no cork; direct output corks the socket. */
  cork(): void {
    if (this.host.gate === null) this.writer.cork()
  }

  uncork(): boolean {
    return this.host.gate === null ? this.writer.uncork() : true
  }

  /** Sink: the gate holds the batch's replies, and with them its body views, until they are written. */
  holdViews(slabs: readonly Slab[]): boolean {
    if (this.held === null) return false
    const views = (this.heldViews ??= [])
    for (const s of slabs) views.push(s)
    return true
  }

  /** Sink: nothing written is held (by the socket's queue or for the binlog). */
  consumed(): boolean {
    return this.host.gate === null && this.writer.idle
  }

  /**
   * The gate flushed the binlog up to `seq`: write the held replies once
   * that is durable (at once under -F and -f N; after the group fsync under -f 0).
   */
  release(seq: number, whenDurable: (seq: number, cb: () => void) => void): void {
    const chunks = this.held ?? NO_CHUNKS
    const views = this.heldViews
    this.held = null
    this.heldViews = null
    this.gated++
    whenDurable(seq, () => {
      this.gated--
      if (this.closed) {
        // Never written: nothing reads these views.
        if (views !== null) settleViews(views, false)
        return
      }
      const many = chunks.length > 1
      if (many) this.writer.cork()
      let ok = true
      for (const c of chunks) ok = this.writer.write(c) && ok
      if (many) ok = this.writer.uncork() && ok
      if (views !== null) settleViews(views, !this.writer.idle)
      if (!ok) this.blockOutput()
      else if (this.quitting) this.closeWhenFlushed()
      else if (this.inputEnded) this.run()
    })
  }

  /** Closes once no reply is waiting for the binlog (at once without one). */
  private closeWhenFlushed(): void {
    if (this.held === null && this.gated === 0) this.close()
  }

  private blockOutput(): void {
    this.outputBlocked = true
    this.pauseReading()
  }

  /** DrainListener: the socket took everything after backpressure. */
  drained(): void {
    if (!this.outputBlocked) return
    this.outputBlocked = false
    this.resumeReading()
    this.run()
  }

  private pauseReading(): void {
    this.readPaused = true
    this.socket.pause()
  }

  private resumeReading(): void {
    this.readPaused = false
    this.socket.resume()
  }

  /**
   * The client closed its sending side. Commands it sent before still run
   * (as in the reference); a reserve that would wait answers TIMED_OUT at
   * once (protocol.txt), and the connection closes when all is answered.
   */
  inputClosed(): void {
    this.inputEnded = true
    if (this.host.ctx.registry.cancelWait(this.session)) this.waitEnded(Reply.TIMED_OUT)
    else this.run()
  }

  close(): void {
    if (this.closed) return
    this.forgetSession()
    this.socket.end()
  }

  /** The socket closed (either side). */
  socketClosed(): void {
    if (!this.closed) this.forgetSession()
  }

  /** A socket error: 'close' follows. */
  socketFailed(err: NodeJS.ErrnoException): void {
    const { log } = this.host
    if (log.isLevelEnabled('debug')) log.debug({ err, conn: this.session.id }, 'connection error')
  }

  private forgetSession(): void {
    this.closed = true
    const { registry } = this.host.ctx
    // A body cut off mid-read: its space goes back.
    if (this.putSlab !== null) {
      registry.bodies.release(this.putSlab, this.parser.bodyEnd - this.parser.bodyOff)
      registry.endArriving(this.putId)
    }
    this.putSlab = null
    this.parkParser()
    registry.closeSession(this.session)
    this.host.forget(this)
  }
}

/**
 * Reply assembly: every reply produced while one connection processes its
 * buffered input is written into one shared chunk and leaves in a single
 * `socket.write` of a view of it (PERFORMANCE.md: one write per read is the
 * largest single win). Only one connection runs at a time, so one chunk
 * serves all of them and an idle connection costs no output memory.
 *
 * Nothing is copied on the way out and nothing is allocated per reply:
 * numbers are written as digits straight into the chunk, fixed words are
 * pre-encoded, and the chunk is reused as long as the kernel took each write
 * whole (the usual case). A write the socket had to keep (backpressure, a
 * cork, a binlog gate holding replies) pins the bytes it covers: later
 * replies go after them, and once the chunk is full a new one is started, so
 * kept bytes are never overwritten.
 *
 * Large job bodies are not copied either: the chunk is flushed and the body's
 * slab view written as is, both inside a cork so they leave in one writev.
 * The arena may reuse an emptied slab (queue/body-arena.ts), so such a view
 * is counted on its slab until the batch ends, or until the binlog gate let
 * it go to the socket; if the socket kept it then, the slab is marked shared
 * and never reused.
 */
import { settleViews, type Slab } from '../queue/body-arena.js'
import type { Job } from '../queue/job.js'
import { copyBytes, PrefixViews } from '../util/bytes.js'

/** Bodies at least this large are written directly instead of copied. */
const COPY_LIMIT = 2048
const CHUNK = 64 * 1024
/** Up to this many bytes are copied by a loop rather than Buffer#copy (10 bytes: 38 vs 60 ns; 24 bytes: 93 vs 60 ns). */
const SHORT_COPY = 16
const SP = 0x20
const CR = 0x0d
const LF = 0x0a
const ZERO = 0x30

export interface Sink {
  /** Returns false when the socket's buffer is full (backpressure). */
  write(chunk: Buffer): boolean
  /** True when everything written so far is with the kernel: no written Buffer is held anywhere. */
  consumed(): boolean
  cork(): void
  /** Sends what the cork held; false on backpressure, as write(). */
  uncork(): boolean
  /**
   * The batch wrote views of these slabs' bodies. True if the sink holds them
   * (the binlog gate) and settles them once they are written; false leaves
   * them to the caller.
   */
  holdViews(slabs: readonly Slab[]): boolean
}

/** Pre-encoded reply words, with their trailing space. */
const word = (s: string): Buffer => Buffer.from(`${s} `, 'latin1')
export const Word = {
  INSERTED: word('INSERTED'),
  RESERVED: word('RESERVED'),
  FOUND: word('FOUND'),
  KICKED: word('KICKED'),
  WATCHING: word('WATCHING'),
  USING: word('USING'),
} as const

export class Output {
  private buf: Buffer
  /** Views of `buf` from its start, by length, for the writes. */
  private views: PrefixViews
  /** Start of the bytes not yet handed to the sink. */
  private start = 0
  private len = 0
  /** Bytes below this may be held by a socket or the binlog gate: never rewritten. */
  private floor = 0
  private readonly chunkSize: number
  private sink: Sink | null = null
  private corked = false
  /** False once a write reported backpressure during this batch. */
  writable = true
  /** Slabs whose views this batch wrote (one entry per view). */
  private readonly viewed: Slab[] = []

  constructor(size = CHUNK) {
    this.chunkSize = size
    this.buf = Buffer.allocUnsafeSlow(size)
    this.views = new PrefixViews(this.buf)
  }

  begin(sink: Sink): void {
    this.sink = sink
    this.writable = true
  }

  /** Sends what was assembled; returns false on backpressure. */
  end(): boolean {
    this.flush()
    if (this.corked) {
      this.corked = false
      if (!this.sink!.uncork()) this.writable = false
    }
    if (this.viewed.length > 0) this.settleViews()
    this.sink = null
    return this.writable
  }

  /** The batch's slab views wait in the binlog gate, or are with the kernel now, or in the socket's queue. */
  private settleViews(): void {
    const sink = this.sink!
    if (!sink.holdViews(this.viewed)) settleViews(this.viewed, !sink.consumed())
    this.viewed.length = 0
  }

  fixed(reply: Buffer): void {
    this.ensure(reply.length)
    this.put(reply, 0, reply.length)
  }

  /** A reply built as a latin1 string (stats YAML, tube lists). */
  text(s: string): void {
    this.ensure(s.length)
    this.len += this.buf.write(s, this.len, 'latin1')
  }

  /** `<word> <n>\r\n`, e.g. INSERTED, KICKED, WATCHING. */
  numbered(w: Buffer, n: number): void {
    this.ensure(w.length + 22)
    this.put(w, 0, w.length)
    this.digits(n)
    this.crlf()
  }

  /** `<word> <name>\r\n` for a tube name (NAME_CHAR bytes only). */
  named(w: Buffer, name: string): void {
    this.ensure(w.length + name.length + 2)
    this.put(w, 0, w.length)
    // Names are short: a byte loop beats Buffer#write's encoding dispatch.
    const b = this.buf
    let p = this.len
    for (let i = 0; i < name.length; i++) b[p++] = name.charCodeAt(i)
    this.len = p
    this.crlf()
  }

  /** `<word> <id> <bytes>\r\n<body>` where the stored body carries its CRLF. */
  job(w: Buffer, j: Job): void {
    const n = j.bodyLen
    this.ensure(w.length + 44)
    this.put(w, 0, w.length)
    this.digits(j.id)
    this.buf[this.len++] = SP
    this.digits(n - 2)
    this.crlf()
    const { slab, bodyOff } = j
    if (n < COPY_LIMIT) {
      this.ensure(n)
      this.put(slab.buf, bodyOff, bodyOff + n)
    } else {
      if (!this.corked) {
        this.corked = true
        this.sink!.cork()
      }
      this.flush()
      slab.viewsPending++
      this.viewed.push(slab)
      if (!this.sink!.write(slab.buf.subarray(bodyOff, bodyOff + n))) this.writable = false
    }
  }

  /** Appends src[from, to). The caller ensured room. */
  private put(src: Buffer, from: number, to: number): void {
    if (to - from > SHORT_COPY) {
      this.len += copyBytes(src, this.buf, this.len, from, to)
      return
    }
    // Fixed replies and words: a loop costs less than Buffer#copy's native call.
    const b = this.buf
    let p = this.len
    for (let i = from; i < to; i++) b[p++] = src[i]!
    this.len = p
  }

  /** Writes a non-negative integer (< 2^53) in decimal. The caller ensured room. */
  private digits(n: number): void {
    const b = this.buf
    let width = 1
    for (let t = n; t >= 10; t = Math.floor(t / 10)) width++
    let p = this.len + width
    this.len = p
    do {
      const q = Math.floor(n / 10)
      b[--p] = ZERO + (n - q * 10)
      n = q
    } while (n > 0)
  }

  private crlf(): void {
    this.buf[this.len++] = CR
    this.buf[this.len++] = LF
  }

  private flush(): void {
    if (this.len === this.start) return
    const sink = this.sink!
    // From the chunk's start (the usual case) the view is a cached one: nothing allocated per write.
    const view = this.start === 0 ? this.views.get(this.len) : this.buf.subarray(this.start, this.len)
    if (!sink.write(view)) this.writable = false
    // The usual case: the kernel took it all and the bytes can be reused.
    if (!this.corked && sink.consumed()) this.len = this.floor
    else this.floor = this.len
    this.start = this.len
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return
    this.flush()
    if (this.len + n <= this.buf.length) return
    // Full (or held bytes fill it): start a new chunk; held views keep the old one alive.
    this.buf = Buffer.allocUnsafeSlow(Math.max(n, this.chunkSize))
    this.views = new PrefixViews(this.buf)
    this.start = this.len = this.floor = 0
  }
}

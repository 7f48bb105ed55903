/**
 * Bytes -> commands, pull-based and resumable (STYLE.md "Parser").
 *
 * `push(chunk)` queues input; `next()` yields one command at a time, so a
 * connection blocked in `reserve` simply stops calling it and later bytes stay
 * queued, as in beanstalkd's connection loop. Arguments land in fields of the
 * parser (no allocation per command).
 *
 * Framing follows the reference exactly (REFERENCE.md 2.1):
 * - A command line is looked for in a window of at most LINE_MAX bytes from its
 *   first byte. The line ends at the FIRST CR in the window (ignoring the last
 *   buffered byte) and only if an LF follows it: a stray CR earlier means the
 *   line is never found.
 * - A full window with no line end is discarded; discarding continues in
 *   LINE_MAX-byte windows (aligned to the bad line's start) until a window holds
 *   a line end, which yields one BAD_FORMAT. A CRLF split across two windows
 *   is missed, as in the reference.
 * - `expectBody(n)` reads the next n bytes as a put body; `skip(n)` discards n
 *   bytes and then yields PUT_SKIPPED (JOB_TOO_BIG).
 *
 * With the extensions (--extensions) a `put ` or `delete-batch ` line that
 * fills the 224-byte window may go on to EXT_LINE_MAX bytes (put tags,
 * a thousand ids): it is parsed in place when the chunk holds it, else
 * gathered in a buffer of its own (Mode.LONG). Every other line keeps the
 * reference's window.
 *
 * Invariants: `carryLen > 0` only while a window straddles chunks; bytes are
 * copied only then (into the `carry` buffer, made on first use) and into put bodies, which
 * never alias a socket chunk (a job must not pin a 64 KiB read buffer).
 */
import { CR, LF, LINE_MAX, NAME_CHAR, NAME_MAX, Reply, SPACE, U32_MAX } from './constants.js'
import { Op } from './commands.js'
import { Args, VERBS, verbsByFirstByte, type Verb } from './verbs.js'
import { ADMIN_VERBS } from './admin-verbs.js'
import { EXTENSION_VERBS, EXT_LINE_MAX, ExtensionArgs, mayBeLong, readTags } from './extensions.js'
import { copyBytes } from '../util/bytes.js'

const EMPTY = Buffer.alloc(0)

const Mode = { LINE: 0, DISCARD: 1, BODY: 2, SKIP: 3, LONG: 4 } as const
type Mode = (typeof Mode)[keyof typeof Mode]

/** isspace() of the C locale, used by strtoul/strtol. */
const isCSpace = (b: number): boolean => b === SPACE || (b >= 0x09 && b <= 0x0d)
const isDigit = (b: number): boolean => b >= 0x30 && b <= 0x39

/**
 * The usual case of strtoul/strtol input: optional C spaces and sign, 1 to 15
 * digits, then anything. Returns the signed value, or NaN for everything else
 * (no digits, longer numbers), which the exact BigInt path then handles.
 */
function smallInt(buf: Buffer, p: number, end: number): number {
  while (p < end && isCSpace(buf[p]!)) p++
  let neg = false
  if (p < end && (buf[p] === 0x2b || buf[p] === 0x2d)) neg = buf[p++] === 0x2d
  const first = p
  let v = 0
  while (p < end && isDigit(buf[p]!)) v = v * 10 + (buf[p++]! - 0x30)
  const digits = p - first
  if (digits === 0 || digits > 15) return NaN
  return neg ? -v : v
}

const U64_MAX_DIGITS = Buffer.from('18446744073709551615', 'latin1')

/** Whether the 20 digits at buf[p] spell a number above 2**64-1. */
function exceedsU64(buf: Buffer, p: number): boolean {
  for (let i = 0; i < 20; i++) {
    const d = buf[p + i]! - U64_MAX_DIGITS[i]!
    if (d !== 0) return d > 0
  }
  return false
}

/** The first CR followed by LF in `buf[from, to)`, or -1. */
function crlf(buf: Buffer, from: number, to: number): number {
  for (let i = buf.indexOf(CR, from); i !== -1 && i < to - 1; i = buf.indexOf(CR, i + 1)) if (buf[i + 1] === LF) return i
  return -1
}

const STANDARD_BY_FIRST = verbsByFirstByte(VERBS)
const EXTENDED_BY_FIRST = verbsByFirstByte([...EXTENSION_VERBS, ...ADMIN_VERBS, ...VERBS])

export class Parser {
  /** Arguments of the last command. */
  id = 0
  pri = 0
  /** put: delay seconds; release: delay seconds; pause-tube: seconds. */
  delay = 0
  ttr = 0
  /** put: announced body length (without CRLF). */
  bytes = 0
  /** put: something other than the four numbers followed them. */
  trailingJunk = false
  /** kick: how many. */
  count = 0
  /** reserve-with-timeout: seconds, or -1 for "wait forever" (negative after int truncation). */
  timeout = 0
  name = ''
  /** pause-tube: the name breaks a rule checked after counting (BAD_FORMAT). */
  badName = false
  /**
   * PUT_BODY / PUT_BODY_BAD: the body including its last two bytes, at
   * bodyBuf[bodyOff, bodyEnd): wherever expectBody was told to read it to.
   */
  bodyBuf: Buffer = EMPTY
  bodyOff = 0
  bodyEnd = 0
  /** ERROR: the reply. */
  errorReply: Buffer = Reply.BAD_FORMAT

  private readonly queue: Buffer[] = []
  private chunk: Buffer | null = null
  private pos = 0
  /** Made on first use: most connections never split a line across reads. */
  private carry: Buffer | null = null
  private carryLen = 0
  private mode: Mode = Mode.LINE
  private bodyFill = 0
  /** The verbs this parser matches, by first byte: the reference's, or theirs and the extensions'. */
  private readonly verbs: readonly (readonly Verb[])[]
  /** The extension verbs' arguments; null without the extensions. */
  readonly ext: ExtensionArgs | null
  /** What a complete body yields: PUT_BODY, or PUT_BODY_TAGGED (expectBody's `op`). */
  private bodyOp: Op = Op.PUT_BODY
  /** Mode.LONG: the line gathered so far (made on first use, EXT_LINE_MAX bytes). */
  private long: Buffer | null = null
  private longLen = 0

  /** `extensions`: also match the extension verbs (--extensions). */
  constructor(extensions = false) {
    this.verbs = extensions ? EXTENDED_BY_FIRST : STANDARD_BY_FIRST
    this.ext = extensions ? new ExtensionArgs() : null
  }
  private skipLeft = 0
  /** Bytes queued and not yet consumed, for input backpressure. */
  buffered = 0

  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    this.buffered += chunk.length
    if (this.chunk === null) {
      this.chunk = chunk
      this.pos = 0
    } else {
      this.queue.push(chunk)
    }
  }

  /**
   * The caller reuses the buffer behind `shared` for its next read: copy
   * out of it whatever is not parsed yet. Nothing is copied when the read
   * was parsed to its end (the usual case).
   */
  retain(shared: ArrayBufferLike): void {
    const c = this.chunk
    if (c === null) return
    if (this.pos >= c.length && this.queue.length === 0) {
      this.chunk = null
      this.pos = 0
      return
    }
    if (c.buffer === shared) {
      this.chunk = Buffer.from(c.subarray(this.pos))
      this.pos = 0
    }
    const q = this.queue
    for (let i = 0; i < q.length; i++) if (q[i]!.buffer === shared) q[i] = Buffer.from(q[i]!)
  }

  /**
   * Nothing buffered and no line, body or discard under way: nothing a later
   * read needs is kept here, so a connection may hand the parser to another.
   */
  get atRest(): boolean {
    return this.chunk === null && this.buffered === 0 && this.mode === Mode.LINE && this.carryLen === 0
  }

  /** Lets go of the last body's storage (a parser at rest must not keep a job's slab alive). */
  forgetBody(): void {
    this.bodyBuf = EMPTY
    this.bodyOff = this.bodyEnd = this.bodyFill = 0
  }

  /** True while a put body is being read or swallowed (the connection closing now loses it). */
  get inBody(): boolean {
    return this.mode === Mode.BODY || this.mode === Mode.SKIP
  }

  /**
   * After PUT: read the body (n bytes plus CRLF) next, into `into` at `at`
   * (the job store's space, so a body is copied once), or into a new Buffer.
   */
  expectBody(bytes: number, into: Buffer = Buffer.allocUnsafe(bytes + 2), at = 0, op: Op = Op.PUT_BODY): void {
    this.mode = Mode.BODY
    this.bodyOp = op
    this.bodyBuf = into
    this.bodyOff = at
    this.bodyEnd = at + bytes + 2
    this.bodyFill = at
  }

  /** Bytes of the body being read that are in so far. */
  get bodyArrived(): number {
    return this.bodyFill - this.bodyOff
  }

  /** The last body read (a view; for tests and tools). */
  get body(): Buffer {
    return this.bodyBuf.subarray(this.bodyOff, this.bodyEnd)
  }

  /** After PUT: swallow n bytes, then yield PUT_SKIPPED. */
  skip(n: number): void {
    this.mode = Mode.SKIP
    this.skipLeft = n
  }

  /** The next command, or Op.NEED_MORE when the buffered bytes hold none. */
  next(): Op {
    for (;;) {
      const chunk = this.chunk
      if (chunk === null) return Op.NEED_MORE
      if (this.pos >= chunk.length) {
        this.advanceChunk()
        continue
      }
      switch (this.mode) {
        case Mode.LINE:
        case Mode.DISCARD: {
          const op = this.scanLine(chunk)
          if (op !== Op.NEED_MORE) return op
          break
        }
        case Mode.BODY: {
          const op = this.readBody(chunk)
          if (op !== Op.NEED_MORE) return op
          break
        }
        case Mode.LONG: {
          const op = this.scanLong(chunk)
          if (op !== Op.NEED_MORE) return op
          break
        }
        case Mode.SKIP: {
          const n = Math.min(this.skipLeft, chunk.length - this.pos)
          this.consume(n)
          this.skipLeft -= n
          if (this.skipLeft === 0) {
            this.mode = Mode.LINE
            return Op.PUT_SKIPPED
          }
          break
        }
      }
    }
  }

  private consume(n: number): void {
    this.pos += n
    this.buffered -= n
  }

  private advanceChunk(): void {
    const nextChunk = this.queue.shift()
    this.chunk = nextChunk ?? null
    this.pos = 0
  }

  private readBody(chunk: Buffer): Op {
    const body = this.bodyBuf
    const end = this.bodyEnd
    const n = Math.min(end - this.bodyFill, chunk.length - this.pos)
    copyBytes(chunk, body, this.bodyFill, this.pos, this.pos + n)
    this.bodyFill += n
    this.consume(n)
    if (this.bodyFill < end) return Op.NEED_MORE
    this.mode = Mode.LINE
    return body[end - 2] === CR && body[end - 1] === LF ? this.bodyOp : Op.PUT_BODY_BAD
  }

  /**
   * Looks for the end of the current window's line. Returns the command (or
   * the BAD_FORMAT that ends a discard), or NEED_MORE after consuming what the
   * chunk had for this window.
   */
  private scanLine(chunk: Buffer): Op {
    if (this.carryLen === 0) {
      const start = this.pos
      const avail = Math.min(LINE_MAX, chunk.length - start)
      const cr = chunk.indexOf(CR, start)
      if (cr !== -1 && cr < start + avail - 1) {
        if (chunk[cr + 1] === LF) {
          this.consume(cr + 2 - start)
          return this.lineDone(chunk, start, cr)
        }
      }
      if (avail === LINE_MAX) {
        if (this.ext !== null && this.mode === Mode.LINE && mayBeLong(chunk, start)) return this.beginLong(chunk, start)
        this.consume(LINE_MAX)
        this.mode = Mode.DISCARD
        return Op.NEED_MORE
      }
      chunk.copy((this.carry ??= Buffer.allocUnsafe(LINE_MAX)), 0, start, start + avail)
      this.carryLen = avail
      this.consume(avail)
      return Op.NEED_MORE
    }
    // The window straddles chunks: top up the carry buffer and search it.
    const had = this.carryLen
    const carry = this.carry!
    const take = Math.min(LINE_MAX - had, chunk.length - this.pos)
    chunk.copy(carry, had, this.pos, this.pos + take)
    const len = had + take
    const cr = carry.indexOf(CR)
    if (cr !== -1 && cr < len - 1 && carry[cr + 1] === LF) {
      this.consume(cr + 2 - had)
      this.carryLen = 0
      return this.lineDone(carry, 0, cr)
    }
    this.consume(take)
    if (len === LINE_MAX) {
      this.carryLen = 0
      if (this.ext !== null && this.mode === Mode.LINE && mayBeLong(carry, 0)) {
        carry.copy(this.longBuffer(), 0, 0, LINE_MAX)
        this.longLen = LINE_MAX
        this.mode = Mode.LONG
        return Op.NEED_MORE
      }
      this.mode = Mode.DISCARD
    } else {
      this.carryLen = len
    }
    return Op.NEED_MORE
  }

  private longBuffer(): Buffer {
    return (this.long ??= Buffer.allocUnsafe(EXT_LINE_MAX))
  }

  /**
   * A `put `/`delete-batch ` line filled the 224-byte window: parse it in place
   * if its CRLF is in this chunk within EXT_LINE_MAX, else gather it (Mode.LONG).
   */
  private beginLong(chunk: Buffer, start: number): Op {
    const limit = Math.min(chunk.length, start + EXT_LINE_MAX)
    const cr = crlf(chunk, start, limit)
    if (cr !== -1) {
      this.consume(cr + 2 - start)
      return this.parseLine(chunk, start, cr)
    }
    if (limit === start + EXT_LINE_MAX) {
      // Too long even for an extension line: the reference's discard.
      this.consume(LINE_MAX)
      this.mode = Mode.DISCARD
      return Op.NEED_MORE
    }
    chunk.copy(this.longBuffer(), 0, start, limit)
    this.longLen = limit - start
    this.consume(limit - start)
    this.mode = Mode.LONG
    return Op.NEED_MORE
  }

  /** Mode.LONG: top up the gathered line and look for its CRLF. */
  private scanLong(chunk: Buffer): Op {
    const buf = this.long!
    const had = this.longLen
    const take = Math.min(EXT_LINE_MAX - had, chunk.length - this.pos)
    chunk.copy(buf, had, this.pos, this.pos + take)
    const len = had + take
    const cr = crlf(buf, Math.max(0, had - 1), len)
    if (cr !== -1) {
      this.consume(cr + 2 - had)
      this.longLen = 0
      this.mode = Mode.LINE
      return this.parseLine(buf, 0, cr)
    }
    this.consume(take)
    this.longLen = len
    if (len === EXT_LINE_MAX) {
      this.longLen = 0
      this.mode = Mode.DISCARD
    }
    return Op.NEED_MORE
  }

  private lineDone(buf: Buffer, start: number, end: number): Op {
    if (this.mode === Mode.DISCARD) {
      this.mode = Mode.LINE
      return this.fail(Reply.BAD_FORMAT)
    }
    return this.parseLine(buf, start, end)
  }

  private fail(reply: Buffer): Op {
    this.errorReply = reply
    return Op.ERROR
  }

  /** Parses one command line `buf[start, end)` (CRLF excluded). */
  parseLine(buf: Buffer, start: number, end: number): Op {
    // The reference handles the line as a C string: a NUL anywhere is BAD_FORMAT.
    // (A loop: lines are short, and indexOf's native call costs more.)
    for (let i = start; i < end; i++) if (buf[i] === 0) return this.fail(Reply.BAD_FORMAT)
    const v = start < end ? this.matchVerb(buf, start, end) : undefined
    if (v === undefined) return this.fail(Reply.UNKNOWN_COMMAND)
    const p = start + v.bytes.length
    switch (v.args) {
      case Args.NONE:
        return p === end ? v.op : this.fail(Reply.BAD_FORMAT)
      case Args.ANY:
        return v.op
      case Args.PUT:
        return this.parsePut(buf, p, end)
      case Args.ID:
        return this.readU64(buf, p, end, true) ? v.op : this.fail(Reply.BAD_FORMAT)
      case Args.RELEASE:
        return this.readU64(buf, p, end, false) &&
          this.readU32(buf, this.argEnd, end, false) &&
          ((this.pri = this.num), this.readU32(buf, this.argEnd, end, true))
          ? ((this.delay = this.num), v.op)
          : this.fail(Reply.BAD_FORMAT)
      case Args.BURY:
        return this.readU64(buf, p, end, false) && this.readU32(buf, this.argEnd, end, true)
          ? ((this.pri = this.num), v.op)
          : this.fail(Reply.BAD_FORMAT)
      case Args.KICK:
        return this.parseKick(buf, p, end) ? v.op : this.fail(Reply.BAD_FORMAT)
      case Args.TIMEOUT:
        return this.parseTimeout(buf, p, end) ? v.op : this.fail(Reply.BAD_FORMAT)
      case Args.NAME:
        return this.readName(buf, p, end) ? v.op : this.fail(Reply.BAD_FORMAT)
      case Args.PAUSE:
        return this.parsePause(buf, p, end) ? v.op : this.fail(Reply.BAD_FORMAT)
      case Args.EXT:
        return v.parse!(this, buf, p, end)
    }
  }

  private matchVerb(buf: Buffer, start: number, end: number): Verb | undefined {
    const candidates = this.verbs[buf[start]!]!
    const room = end - start
    for (const v of candidates) {
      const b = v.bytes
      if (b.length > room) continue
      let i = 1
      while (i < b.length && buf[start + i] === b[i]) i++
      if (i === b.length) return v
    }
    return undefined
  }

  // --- numbers -----------------------------------------------------------

  /** Result of the last readU32/readU64; `pos` is where it stopped. */
  private num = 0
  private argEnd = 0

  /**
   * ref:prot.c read_u64: skip spaces, a digit must follow, base 10, no
   * overflow past 2**64-1; if `last`, the number must end the line.
   * Values past 2**53 lose precision, which is harmless: no job id gets there.
   */
  private readU64(buf: Buffer, p: number, end: number, last: boolean): boolean {
    while (p < end && buf[p] === SPACE) p++
    if (p >= end || !isDigit(buf[p]!)) return false
    while (p < end - 1 && buf[p] === 0x30 && isDigit(buf[p + 1]!)) p++ // leading zeros
    const first = p
    let v = 0
    while (p < end && isDigit(buf[p]!)) v = v * 10 + (buf[p++]! - 0x30)
    const digits = p - first
    if (digits > 20) return false
    if (digits === 20 && exceedsU64(buf, first)) return false
    if (last && p !== end) return false
    this.id = v
    this.argEnd = p
    return true
  }

  /** ref:prot.c read_u32: as readU64 with a 2**32-1 ceiling; result in `num`. */
  private readU32(buf: Buffer, p: number, end: number, last: boolean): boolean {
    while (p < end && buf[p] === SPACE) p++
    if (p >= end || !isDigit(buf[p]!)) return false
    let v = 0
    while (p < end && isDigit(buf[p]!)) {
      v = v * 10 + (buf[p++]! - 0x30)
      if (v > U32_MAX) return false
    }
    if (last && p !== end) return false
    this.num = v
    this.argEnd = p
    return true
  }

  /**
   * put <pri> <delay> <ttr> <bytes>: the four numbers must parse; junk after
   * them is reported separately because the reference checks the size limit
   * (JOB_TOO_BIG) before it.
   */
  private parsePut(buf: Buffer, p: number, end: number): Op {
    if (!this.readU32(buf, p, end, false)) return this.fail(Reply.BAD_FORMAT)
    this.pri = this.num
    if (!this.readU32(buf, this.argEnd, end, false)) return this.fail(Reply.BAD_FORMAT)
    this.delay = this.num
    if (!this.readU32(buf, this.argEnd, end, false)) return this.fail(Reply.BAD_FORMAT)
    this.ttr = this.num
    if (!this.readU32(buf, this.argEnd, end, false)) return this.fail(Reply.BAD_FORMAT)
    this.bytes = this.num
    this.trailingJunk = this.argEnd !== end
    // With the extensions, what follows the numbers may be tags (anything else stays junk).
    if (this.trailingJunk && this.ext !== null && (this.ext.tags = readTags(buf, this.argEnd, end)) !== null) return Op.PUT_TAGGED
    return Op.PUT
  }

  /**
   * kick <n> uses strtoul: leading white space and a sign are accepted, junk
   * after the digits is ignored, negatives wrap and the count is truncated to
   * 32 bits; only "no digits" and overflow past 2**64-1 are BAD_FORMAT.
   */
  private parseKick(buf: Buffer, p: number, end: number): boolean {
    const small = smallInt(buf, p, end)
    if (small === small) {
      // ToUint32 is strtoul's wrap of a negative and the truncation to 32 bits.
      this.count = small >>> 0
      return true
    }
    const v = this.strtoInt(buf, p, end, 18446744073709551615n, 18446744073709551615n)
    if (v === null) return false
    this.count = Number(BigInt.asUintN(32, v))
    return true
  }

  /**
   * reserve-with-timeout <secs> uses strtol: no digits means 0, overflow of a
   * signed 64-bit value is BAD_FORMAT, and the value is truncated to a C int,
   * so a negative result (e.g. -1 or 2147483648) waits forever.
   */
  private parseTimeout(buf: Buffer, p: number, end: number): boolean {
    const small = smallInt(buf, p, end)
    if (small === small) {
      // ToInt32 is the truncation to a C int.
      const t = small | 0
      this.timeout = t < 0 ? -1 : t
      return true
    }
    const v = this.strtoInt(buf, p, end, 9223372036854775807n, 9223372036854775808n, true)
    if (v === null) return false
    const t = Number(BigInt.asIntN(32, v))
    this.timeout = t < 0 ? -1 : t
    return true
  }

  /**
   * C strtoul/strtol over `buf[p, end)`: returns the value (negatives as
   * their two's complement for strtoul, signed for strtol) or null for an
   * error the reference reports as BAD_FORMAT. With `noDigitsIsZero`
   * (strtol as used by reserve-with-timeout, which does not check the end
   * pointer) a missing number is 0 instead of an error.
   */
  private strtoInt(
    buf: Buffer,
    p: number,
    end: number,
    maxPos: bigint,
    maxNeg: bigint,
    signed = false,
  ): bigint | null {
    while (p < end && isCSpace(buf[p]!)) p++
    let neg = false
    if (p < end && (buf[p] === 0x2b || buf[p] === 0x2d)) neg = buf[p++] === 0x2d
    const first = p
    while (p < end && isDigit(buf[p]!)) p++
    if (p === first) return signed ? 0n : null
    // Short numbers (the usual case) avoid BigInt parsing of a string.
    const mag = p - first <= 15 ? BigInt(parseInt(buf.toString('latin1', first, p), 10)) : BigInt(buf.toString('latin1', first, p))
    if (mag > (neg ? maxNeg : maxPos)) return null
    if (!neg) return mag
    return signed ? -mag : BigInt.asUintN(64, -mag)
  }

  // --- names -------------------------------------------------------------

  /** use/watch/ignore/stats-tube: the whole rest of the line is the name. */
  private readName(buf: Buffer, p: number, end: number): boolean {
    const len = end - p
    if (len < 1 || len > NAME_MAX || buf[p] === 0x2d) return false
    for (let i = p; i < end; i++) if (NAME_CHAR[buf[i]!] === 0) return false
    this.name = buf.toString('latin1', p, end)
    return true
  }

  /**
   * pause-tube: spaces, a run of name characters, then the delay. The
   * reference counts the command before it checks the name's other rules
   * (1-200 bytes, no leading '-'), so those are reported in `badName`.
   */
  private parsePause(buf: Buffer, p: number, end: number): boolean {
    while (p < end && buf[p] === SPACE) p++
    const first = p
    while (p < end && NAME_CHAR[buf[p]!] === 1) p++
    if (p === first) return false
    if (!this.readU32(buf, p, end, true)) return false
    this.badName = p - first > NAME_MAX || buf[first] === 0x2d
    this.name = buf.toString('latin1', first, p)
    this.delay = this.num
    return true
  }
}

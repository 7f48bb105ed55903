// @ts-check
/**
 * The reference's input framing (beanstalkd 1.12 prot.c: conn_process_io,
 * scan_line_end, fill_extra_data, dispatch_cmd, read_u32, strtol), as a pure
 * function of the bytes one client sent: which replies they will get, in
 * order, and which of those may wait (a reserve). It knows nothing of the
 * queue, so it cannot say whether a reserve finds a job; the lockstep runner
 * learns that from the replies.
 *
 * Invariants:
 * - `slots` lists one entry per reply the bytes so far will produce, in
 *   order: 'now' (always answered promptly) or 'wait' (a reserve that may
 *   block); the last may be 'eof' (quit: the server closes).
 * - A lazy model stops at a 'wait' slot, as the reference stops reading,
 *   until resume(): then ids go to put lines in the order the server reads
 *   them. An eager one (the generator's) reads on.
 * - Bytes are consumed exactly as the reference consumes them: a command
 *   buffer of LINE_MAX bytes, a line ends at the first CR only if LF follows,
 *   a full buffer without a line end is discarded in LINE_MAX windows until
 *   one has a line end (one BAD_FORMAT), a put body or a JOB_TOO_BIG skip is
 *   exactly n + 2 bytes. The result does not depend on how the bytes were
 *   split into writes.
 */

/** The reference's command buffer, CRLF included (prot.c LINE_BUF_SIZE). */
export const LINE_MAX = 224;

/**
 * @typedef {{kind: 'now' | 'wait' | 'eof', cmd: string, at: number}} Slot `at`: bytes
 *   consumed once the command was read (what follows it queues behind a waiting reserve)
 * @typedef {'cmd' | 'endline' | 'body' | 'skip' | 'closed'} Mode
 */

/** Ids handed out by put lines, shared by every connection of one server. */
export class IdCounter {
  next = 1;
}

/**
 * prot.c scan_line_end over the first `size` bytes: the first CR, if LF follows.
 * @param {Buffer} b @param {number} size @returns {number} line length with CRLF, or 0
 */
function scanLineEnd(b, size) {
  const cr = b.subarray(0, size - 1).indexOf(0x0d);
  if (cr === -1) return 0;
  return b[cr + 1] === 0x0a ? cr + 2 : 0;
}

const UINT32_MAX = 4294967295n;
const UINT64_MAX = 18446744073709551615n;

/**
 * prot.c read_u32: spaces, then a digit, then base-10 digits (strtoumax), at
 * most 2**32 - 1. Returns the value and where it ended, or null.
 * @param {string} s @param {number} i
 */
export function readU32(s, i) {
  while (s[i] === ' ') i++;
  const start = i;
  while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
  if (i === start) return null;
  const v = BigInt(s.slice(start, i));
  if (v > UINT64_MAX || v > UINT32_MAX) return null;
  return { value: Number(v), end: i };
}

const LONG_MIN = -(2n ** 63n);
const LONG_MAX = 2n ** 63n - 1n;

/**
 * glibc strtol(s, &end, 10) truncated to a C int, as reserve-with-timeout
 * reads its argument. null when strtol overflows (errno: BAD_FORMAT).
 * @param {string} s @returns {number | null}
 */
export function strtolInt(s) {
  let i = 0;
  while (i < s.length && ' \t\n\v\f\r'.includes(/** @type {string} */ (s[i]))) i++;
  let neg = false;
  if (s[i] === '+' || s[i] === '-') neg = s[i++] === '-';
  const start = i;
  while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
  if (i === start) return 0;
  let v = BigInt(s.slice(start, i));
  if (neg) v = -v;
  if (v < LONG_MIN || v > LONG_MAX) return null;
  return Number(BigInt.asIntN(32, v));
}

/**
 * What the reference does with a `put` line: BAD_FORMAT, JOB_TOO_BIG (skip
 * n + 2 bytes first), or read a body of n + 2 bytes.
 * @param {string} line @param {number} maxJobSize
 * @returns {{kind: 'bad'} | {kind: 'toobig', bytes: number} | {kind: 'body', bytes: number}}
 */
export function parsePut(line, maxJobSize) {
  const pri = readU32(line, 4);
  const delay = pri && readU32(line, pri.end);
  const ttr = delay && readU32(line, delay.end);
  const bytes = ttr && readU32(line, ttr.end);
  if (!bytes) return { kind: 'bad' };
  if (bytes.value > maxJobSize) return { kind: 'toobig', bytes: bytes.value };
  if (bytes.end !== line.length) return { kind: 'bad' };
  return { kind: 'body', bytes: bytes.value };
}

/** One client connection's input, as the reference frames it. */
export class Framing {
  /** @param {number} maxJobSize @param {IdCounter} ids @param {{lazy?: boolean}} [opts] */
  constructor(maxJobSize, ids, opts = {}) {
    this.maxJobSize = maxJobSize;
    this.ids = ids;
    this.lazy = opts.lazy ?? false;
    /** A lazy model at a 'wait' slot: reads nothing until resume(). */
    this.waiting = false;
    /** Bytes sent and not consumed yet. */
    this.pending = Buffer.alloc(0);
    /** @type {Mode} */
    this.mode = 'cmd';
    /** Body or skip bytes still to come. */
    this.need = 0;
    /** The put whose body (or skip) is being read. */
    this.putLine = '';
    /** Id the body being read will get (0 while skipping). */
    this.putId = 0;
    /** Size of that body with its CRLF. */
    this.putSize = 0;
    /** @type {Slot[]} */
    this.slots = [];
    /** Bytes fed so far. */
    this.fed = 0;
    /** Bytes fed up to the end of a quit, once one was read (-1 before). */
    this.closedAt = -1;
    /** The client closed it (not a quit, not a half-close). */
    this.closedByClient = false;
  }

  /** Bytes sent after a quit: the server closes with them unread, a reset that can lose replies. */
  get afterQuit() {
    return this.closedAt < 0 ? 0 : this.fed - this.closedAt;
  }

  /** @param {Slot['kind']} kind @param {string} cmd */
  slot(kind, cmd) {
    this.slots.push({ kind, cmd, at: this.fed - this.pending.length });
    if (kind === 'wait' && this.lazy) this.waiting = true;
  }

  /** The reserve it stopped at was answered: read on. */
  resume() {
    this.waiting = false;
    this.feed(Buffer.alloc(0));
  }

  /** Bytes sent after the command of slot k (queued behind it while it waits). @param {number} k */
  behind(k) {
    const s = this.slots[k];
    return s === undefined ? 0 : this.fed - s.at;
  }

  /** The client sent `bytes`. @param {Buffer} bytes */
  feed(bytes) {
    this.fed += bytes.length;
    this.pending = Buffer.concat([this.pending, bytes]);
    for (;;) {
      if (this.waiting) return;
      if (this.mode === 'closed') {
        this.pending = Buffer.alloc(0);
        return;
      }
      if (this.mode === 'body' || this.mode === 'skip') {
        const take = Math.min(this.need, this.pending.length);
        this.pending = this.pending.subarray(take);
        this.need -= take;
        if (this.need > 0) return;
        this.slot('now', this.putLine);
        this.mode = 'cmd';
        this.putId = 0;
        continue;
      }
      const size = Math.min(this.pending.length, LINE_MAX);
      const len = scanLineEnd(this.pending, size);
      if (len === 0) {
        if (size < LINE_MAX) return;
        // A full buffer with no line end: discarded, then discard mode.
        this.pending = this.pending.subarray(LINE_MAX);
        this.mode = 'endline';
        continue;
      }
      const line = this.pending.subarray(0, len - 2);
      this.pending = this.pending.subarray(len);
      if (this.mode === 'endline') {
        this.mode = 'cmd';
        this.slot('now', '(overlong line)');
        continue;
      }
      this.dispatch(line);
    }
  }

  /** @param {Buffer} raw the command line without its CRLF */
  dispatch(raw) {
    const line = raw.toString('latin1');
    const shown = line.length > 60 ? `${line.slice(0, 60)}...` : line;
    // A NUL anywhere: BAD_FORMAT (the line is a C string).
    if (raw.includes(0)) return this.slot('now', shown);
    if (line.startsWith('put ')) {
      const p = parsePut(line, this.maxJobSize);
      if (p.kind === 'bad') return this.slot('now', shown);
      this.putLine = shown;
      this.need = p.bytes + 2;
      this.putSize = p.bytes + 2;
      if (p.kind === 'toobig') {
        this.mode = 'skip';
      } else {
        this.mode = 'body';
        this.putId = this.ids.next++;
      }
      return;
    }
    if (line.startsWith('reserve-with-timeout ')) {
      const t = strtolInt(line.slice('reserve-with-timeout '.length));
      // rwt 0 is answered on the reference's next tick; others may wait.
      return this.slot(t === null || t === 0 ? 'now' : 'wait', shown);
    }
    if (line.startsWith('reserve-job ')) return this.slot('now', shown);
    if (line === 'reserve') return this.slot('wait', shown);
    if (line.startsWith('quit')) {
      this.mode = 'closed';
      this.closedAt = this.fed - this.pending.length;
      return this.slot('eof', shown);
    }
    return this.slot('now', shown);
  }

  /** The put whose body is still arriving: its id and how many bytes are in, or null. */
  arriving() {
    return this.mode === 'body' ? { id: this.putId, arrived: this.putSize - this.need } : null;
  }

  /**
   * An eager copy to try bytes on (it reads past waits): feeding it changes
   * neither this model nor the shared ids.
   */
  clone() {
    const ids = new IdCounter();
    ids.next = this.ids.next;
    const c = new Framing(this.maxJobSize, ids);
    Object.assign(c, this, { ids, lazy: false, waiting: false, slots: this.slots.map((s) => ({ ...s })) });
    return c;
  }

  /** The connection is gone (closed by the client): nothing more is read. */
  close() {
    this.closedByClient = true;
    this.mode = 'closed';
    this.pending = Buffer.alloc(0);
  }

  /**
   * The client half-closed: a waiting reserve ends (TIMED_OUT), whatever
   * follows it runs, and the server closes once its input is used up.
   */
  halfclose() {
    this.lazy = false;
    this.waiting = false;
    this.feed(Buffer.alloc(0));
    for (const s of this.slots) if (s.kind === 'wait') s.kind = 'now';
    if (this.mode !== 'closed') this.slot('eof', '(half-close)');
    this.mode = 'closed';
    this.pending = Buffer.alloc(0);
  }
}

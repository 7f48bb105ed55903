// @ts-check
/**
 * Runs one case against two servers in lockstep: each step goes to both, and
 * the next step is sent only once both have finished with it, so both see
 * the same interleaving of connections.
 *
 * "Finished" is decided without touching the queue: the framing model says
 * which replies the bytes sent so far must produce; once they are in (up to
 * a reserve that may be waiting), two round trips on a connection of the
 * runner's own (`c0`, sending a line the servers answer UNKNOWN_COMMAND to,
 * which no counter sees) make sure the server has also done whatever the
 * step set off elsewhere: the reference handles one event per turn of its
 * loop, in the order they became ready, so an answer on c0 means everything
 * before it was handled, and its replies written by the second.
 *
 * Invariants: every wait is bounded; a case never outlives its servers or
 * its sockets (runCase closes them whatever happens).
 */
import net from 'node:net';
import { Framing, IdCounter } from './framing.mjs';
import { normalize, splitReplies } from './replies.mjs';
import { sleep } from '../../lib/timers.mjs';

const SYNC = Buffer.from('sync\r\n', 'latin1');
const SYNC_REPLY = 'UNKNOWN_COMMAND\r\n';
/** How long a reply the model says must come may take. */
const REPLY_MS = 5000;
/** How long one server may lag behind the other before their replies are compared. */
const LAG_MS = 250;
/**
 * Bytes that may queue behind a waiting reserve. The reference reads nothing
 * while it waits, so beyond what the socket buffers hold a half-close (or
 * anything else) would never reach it.
 */
const QUEUE_LIMIT = 16384;

/** One client connection to one server; `notify` hears of every byte and close. */
class Link {
  /** @param {net.Socket} sock @param {() => void} notify */
  constructor(sock, notify) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    /** Bytes of buf already split into replies. */
    this.used = 0;
    /** @type {Buffer[]} */
    this.replies = [];
    this.eof = false;
    sock.setNoDelay(true);
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      const { replies, used } = splitReplies(this.buf, this.used);
      this.replies.push(...replies);
      this.used += used;
      notify();
    });
    const ended = () => {
      this.eof = true;
      notify();
    };
    sock.on('end', ended);
    sock.on('close', ended);
    sock.on('error', (e) => { if (process.env.FUZZ_DEBUG) console.log('link error', e.message); ended(); });
  }

  /** Bytes after the last whole reply. */
  get tail() {
    return this.buf.subarray(this.used);
  }
}

/** @param {number} port @param {() => void} notify @returns {Promise<Link>} */
function connect(port, notify) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const t = setTimeout(() => {
      sock.destroy();
      reject(new Error(`could not connect to 127.0.0.1:${port}`));
    }, 3000);
    sock.once('connect', () => {
      clearTimeout(t);
      resolve(new Link(sock, notify));
    });
    sock.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** Lets data already in the kernel reach the 'data' handlers. */
const settleTicks = () => new Promise((r) => setTimeout(r, 1));

/** The client side of one server during a case. */
class Side {
  /** @param {string} label @param {number} port */
  constructor(label, port) {
    this.label = label;
    this.port = port;
    /** @type {Map<string, Link>} */
    this.links = new Map();
    /** @type {Link | null} */
    this.sync = null;
    /** Set when a reply the model expects did not come in time. */
    this.stuck = '';
    /** @type {(() => void)[]} */
    this.waiters = [];
    this.notify = () => {
      for (const w of this.waiters.splice(0)) w();
    };
  }

  async start() {
    this.sync = await connect(this.port, this.notify);
  }

  /** Resolves on the next byte or close on any connection, or after ms. @param {number} ms */
  changed(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, Math.max(1, ms));
      this.waiters.push(() => {
        clearTimeout(t);
        resolve(undefined);
      });
    });
  }

  /** One round trip on c0. */
  async syncRound() {
    const s = /** @type {Link} */ (this.sync);
    const want = s.replies.length + 1;
    s.sock.write(SYNC);
    const until = Date.now() + REPLY_MS;
    while (s.replies.length < want && !s.eof && Date.now() < until) await this.changed(until - Date.now());
    if (s.replies.length < want) throw new Error(`${this.label}: no answer on the sync connection`);
    if (s.replies[want - 1]?.toString('latin1') !== SYNC_REPLY) throw new Error(`${this.label}: unexpected sync reply`);
  }

  /** @param {string} conn */
  async open(conn) {
    this.links.get(conn)?.sock.destroy();
    this.links.set(conn, await connect(this.port, this.notify));
  }

  /**
   * Waits until every reply the models say must come is in, then syncs, and
   * again while replies keep coming (a reserve served lets later commands run).
   * @param {Map<string, Framing>} models
   */
  async settle(models) {
    for (let round = 0; round < 64; round++) {
      const until = Date.now() + REPLY_MS;
      let missing = this.missing(models);
      while (missing !== '' && Date.now() < until) {
        await this.changed(until - Date.now());
        missing = this.missing(models);
      }
      if (missing !== '') {
        this.stuck = missing;
        return;
      }
      const before = this.count();
      await this.syncRound();
      await this.syncRound();
      await settleTicks();
      if (this.count() === before && this.missing(models) === '') return;
    }
  }

  /** Replies received on all connections (a progress measure). */
  count() {
    let n = 0;
    for (const l of this.links.values()) n += l.replies.length + (l.eof ? 1 : 0);
    return n;
  }

  /**
   * What is still due: '' when every reply up to the first possibly waiting
   * reserve (and an expected EOF) is in.
   * @param {Map<string, Framing>} models
   */
  missing(models) {
    for (const [conn, m] of models) {
      const l = this.links.get(conn);
      if (l === undefined || m.closedByClient) continue;
      let due = l.replies.length;
      while (due < m.slots.length && m.slots[due]?.kind === 'now') due++;
      if (due > l.replies.length && !l.eof) return `${conn}: reply to "${m.slots[l.replies.length]?.cmd}"`;
      if (m.slots[due]?.kind === 'eof' && due === l.replies.length && !l.eof) return `${conn}: close after "${m.slots[due]?.cmd}"`;
    }
    return '';
  }

  close() {
    this.sync?.sock.destroy();
    for (const l of this.links.values()) l.sock.destroy();
  }
}

/**
 * @typedef {{conn: string, replies: Buffer[], tail: Buffer, eof: boolean}} ConnOutput
 * @typedef {{step: number, skipped: boolean, reopened: boolean, outputs: {ref: ConnOutput[], tsb: ConnOutput[]}}} StepRecord
 * @typedef {{step: number, conn: string, ref: string, tsb: string, sig: string}} Difference
 *   `sig`: the first differing replies' first words, to tell one divergence from another
 * @typedef {{records: StepRecord[], diff: Difference | null, modelError: string | null, ms: number}} CaseResult
 */

/**
 * @param {import('./generate.mjs').Case} c
 * @param {{ref: number, tsb: number}} ports servers already listening
 * @param {{ignore?: string[]}} [opts]
 * @returns {Promise<CaseResult>}
 */
export async function runCase(c, ports, opts = {}) {
  const t0 = Date.now();
  const ref = new Side('reference', ports.ref);
  const tsb = new Side('tsbeanstalkd', ports.tsb);
  const sides = [ref, tsb];
  const ids = new IdCounter();
  /** @type {Map<string, Framing>} */
  const models = new Map();
  /** @type {StepRecord[]} */
  const records = [];
  /** @type {import('./replies.mjs').NormOptions} */
  const norm = { binlog: c.binlog, ignore: opts.ignore ?? [] };
  try {
    await Promise.all(sides.map((s) => s.start()));
    for (let i = 0; i < c.steps.length; i++) {
      const step = /** @type {import('./generate.mjs').Step} */ (c.steps[i]);
      const open = models.get(step.conn)?.mode;
      const idle = step.op !== 'send' && (open === undefined || open === 'closed');
      if (idle || hazard(step, models, ref, c.maxJobSize)) {
        records.push({ step: i, skipped: true, reopened: false, outputs: { ref: [], tsb: [] } });
        continue;
      }
      const marks = sides.map((s) => new Map([...s.links].map(([k, l]) => [k, l.replies.length])));
      let m = models.get(step.conn);
      let reopened = false;
      if (step.op === 'send') {
        if (m === undefined || m.mode === 'closed') {
          const old = ref.links.get(step.conn);
          // A scenario must close the old connection itself (after a quit or a half-close).
          reopened = old !== undefined && !m?.closedByClient;
          m = new Framing(c.maxJobSize, ids, { lazy: true });
          models.set(step.conn, m);
          await Promise.all(sides.map((s) => s.open(step.conn)));
          for (const mk of marks) mk.set(step.conn, 0);
        }
        const model = m;
        await Promise.all(sides.map(async (s) => {
          const link = /** @type {Link} */ (s.links.get(step.conn));
          for (let k = 0; k < step.chunks.length; k++) {
            if (k > 0) await s.syncRound();
            link.sock.write(/** @type {Buffer} */ (step.chunks[k]));
          }
        }));
        for (const ch of step.chunks) model.feed(ch);
      } else if (m !== undefined) {
        if (step.op === 'close') {
          m.close();
          for (const s of sides) s.links.get(step.conn)?.sock.destroy();
        } else {
          m.halfclose();
          for (const s of sides) s.links.get(step.conn)?.sock.end();
        }
      }
      // A reserve answered lets the commands behind it run: settle again.
      for (let k = 0; k < 64; k++) {
        await Promise.all(sides.map((s) => s.settle(models)));
        if (!resume(models, ref)) break;
      }
      if (ref.stuck) return { records, diff: null, modelError: `step ${i}: the reference did not send the ${ref.stuck}`, ms: Date.now() - t0 };
      // One server may just be slower (a loaded machine): give it a moment.
      const lagUntil = Date.now() + LAG_MS;
      while (ref.count() !== tsb.count() && Date.now() < lagUntil) {
        await sleep(10);
        await Promise.all(sides.map((s) => s.settle(models)));
        resume(models, ref);
      }
      const outputs = { ref: snapshot(ref, marks[0] ?? new Map()), tsb: snapshot(tsb, marks[1] ?? new Map()) };
      records.push({ step: i, skipped: false, reopened, outputs });
      norm.arriving = arriving(models);
      const diff = compare(outputs.ref, outputs.tsb, norm);
      if (diff !== null) return { records, diff: { step: i, ...diff }, modelError: null, ms: Date.now() - t0 };
    }
    return { records, diff: null, modelError: null, ms: Date.now() - t0 };
  } finally {
    for (const s of sides) s.close();
  }
}

/**
 * The reference waits in a reserve on `conn` (no reply yet to a reserve that may wait).
 * @param {string} conn @param {Map<string, Framing>} models @param {Side} ref
 */
function blocked(conn, models, ref) {
  const m = models.get(conn);
  const l = ref.links.get(conn);
  if (m === undefined || l === undefined || m.closedByClient || l.eof) return false;
  return m.slots[l.replies.length]?.kind === 'wait';
}

/**
 * Blocked, with more commands (or a quit) queued behind the reserve.
 * @param {string} conn @param {Map<string, Framing>} models @param {Side} ref
 */
function loaded(conn, models, ref) {
  return blocked(conn, models, ref) && /** @type {Framing} */ (models.get(conn)).pending.length > 0;
}

/**
 * Steps whose outcome would depend on the servers' scheduling rather than on
 * the protocol, decided from the reference's state so both servers skip the
 * same ones:
 * - two connections running commands in one step: after a reserve ends, the
 *   reference runs the commands queued behind it one per turn of its event
 *   loop, interleaved with the other connection's, where tsbeanstalkd runs a
 *   connection's queued commands together. So at most one connection may
 *   have commands queued behind a waiting reserve, and while one does, other
 *   connections send one command per step;
 * - closing a connection with commands queued behind a waiting reserve: how
 *   many of them the reference still runs depends on when it sees the close;
 * - more than QUEUE_LIMIT bytes queued behind a waiting reserve;
 * - bytes after a quit: the server closes with them unread, which resets
 *   the connection, and a reset can drop replies not yet read.
 * @param {import('./generate.mjs').Step} step @param {Map<string, Framing>} models
 * @param {Side} ref @param {number} maxJobSize
 */
function hazard(step, models, ref, maxJobSize) {
  const othersLoaded = [...models.keys()].some((k) => k !== step.conn && loaded(k, models, ref));
  const m = models.get(step.conn);
  if (step.op === 'close') return loaded(step.conn, models, ref);
  if (step.op === 'halfclose') return blocked(step.conn, models, ref) && queued(step.conn, models, ref) > QUEUE_LIMIT;
  if (m === undefined || m.mode === 'closed') {
    // A new connection under this name closes the old one.
    if (m !== undefined && !m.closedByClient && loaded(step.conn, models, ref)) return true;
    const t = tryStep(new Framing(maxJobSize, new IdCounter()), step);
    return t.afterQuit > 0 || (othersLoaded && t.commands > 1);
  }
  const t = tryStep(m, step);
  if (t.afterQuit > 0) return true;
  if (blocked(step.conn, models, ref)) {
    const bytes = step.chunks.reduce((a, ch) => a + ch.length, 0);
    return othersLoaded || queued(step.conn, models, ref) + bytes > QUEUE_LIMIT;
  }
  return othersLoaded && t.commands > 1;
}

/** Bytes queued behind the reserve `conn` waits in. @param {string} conn @param {Map<string, Framing>} models @param {Side} ref */
function queued(conn, models, ref) {
  const m = /** @type {Framing} */ (models.get(conn));
  return m.behind(/** @type {Link} */ (ref.links.get(conn)).replies.length);
}

/**
 * The step's bytes on a copy of the connection's model that reads on past
 * waits: how many commands they start or complete, and how many bytes would
 * follow a quit (one queued earlier, or in the step).
 *
 * A command left incomplete counts: a put line whose body is still to come
 * has taken its id when the line was read, so behind a reserve it races
 * another connection's puts like a complete command (fuzz seed 1913967976,
 * case 153: `reserve-with-timeout …\r\nput … 10\r\n` + 9 bytes of body
 * while another connection was loaded: the reference read that put line
 * first and gave the other connection's put id 4, tsbeanstalkd ran the
 * other connection's queue first and gave it 3). Counting a partial line
 * too is more than needed, and cheaper to reason about.
 * @param {Framing} m @param {import('./generate.mjs').Step & {op: 'send'}} step
 */
export function tryStep(m, step) {
  const c = m.clone();
  c.feed(Buffer.alloc(0));
  const before = c.slots.length;
  for (const ch of step.chunks) c.feed(ch);
  const unfinished = c.mode === 'body' || c.mode === 'skip' || c.pending.length > 0 ? 1 : 0;
  return { commands: c.slots.length - before + unfinished, afterQuit: c.afterQuit };
}

/**
 * Lets each model that stopped at a reserve read on once the reference has
 * answered that reserve. True if any did.
 * @param {Map<string, Framing>} models @param {Side} ref
 */
function resume(models, ref) {
  let any = false;
  for (const [conn, m] of models) {
    const l = ref.links.get(conn);
    if (m.waiting && l !== undefined && l.replies.length >= m.slots.length) {
      m.resume();
      any = true;
    }
  }
  return any;
}

/** Puts whose body is still arriving: id -> bytes in. @param {Map<string, Framing>} models */
function arriving(models) {
  const out = new Map();
  for (const m of models.values()) {
    const a = m.arriving();
    if (a !== null) out.set(a.id, a.arrived);
  }
  return out;
}

/** @param {Side} side @param {Map<string, number>} marks @returns {ConnOutput[]} */
function snapshot(side, marks) {
  return [...side.links.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([conn, l]) => ({
    conn, replies: l.replies.slice(marks.get(conn) ?? 0), tail: l.tail, eof: l.eof,
  }));
}

/**
 * The first connection whose replies in this step differ (after normalising
 * the values that depend on time or process), or null.
 * @param {ConnOutput[]} ref @param {ConnOutput[]} tsb @param {import('./replies.mjs').NormOptions} norm
 */
function compare(ref, tsb, norm) {
  // Each reply's first line (a body shows as its length), then what is left over.
  const show = (/** @type {ConnOutput | undefined} */ o) => (o === undefined ? '(no connection)'
    : [...o.replies.map((r) => JSON.stringify(r.toString('latin1', 0, Math.min(r.length, r.indexOf('\r\n') + 2)))),
      ...(o.tail.length ? [`${JSON.stringify(o.tail.toString('latin1', 0, 80))} (incomplete)`] : []),
      ...(o.eof ? ['EOF'] : [])].join(' ') || '(nothing)');
  const word = (/** @type {Buffer | undefined} */ r) => (r === undefined ? '(none)' : /^[^ \r]*/.exec(r.toString('latin1'))?.[0] ?? '');
  const conns = [...new Set([...ref.map((o) => o.conn), ...tsb.map((o) => o.conn)])].sort();
  for (const conn of conns) {
    const a = ref.find((o) => o.conn === conn);
    const b = tsb.find((o) => o.conn === conn);
    if (a === undefined || b === undefined) return { conn, ref: show(a), tsb: show(b), sig: 'connection' };
    const n = Math.max(a.replies.length, b.replies.length);
    for (let k = 0; k < n; k++) {
      const x = a.replies[k];
      const y = b.replies[k];
      if (x === undefined || y === undefined || normalize(x, norm) !== normalize(y, norm)) {
        return { conn, ref: show(a), tsb: show(b), sig: `${word(x)} vs ${word(y)}` };
      }
    }
    if (a.eof !== b.eof || !a.tail.equals(b.tail)) return { conn, ref: show(a), tsb: show(b), sig: 'end of stream' };
  }
  return null;
}

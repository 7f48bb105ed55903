// @ts-check
/**
 * Random command streams for the lockstep fuzzer: one case is a server
 * variant and a list of steps, each step bytes sent on one connection (in
 * one write or split into several), or a connection closed or half-closed.
 *
 * Everything a step sends is fixed by the seed alone, never by replies, so a
 * case replays exactly and any subset of its steps is again a valid case
 * (the shrinker relies on that).
 *
 * What is left out, because the reference's answer would depend on the
 * clock: delays, TTRs, pauses and reserve timeouts that could run out while
 * a case runs (every one is 0 or at least 3600 s; a TTR of 0 or 1 would give
 * DEADLINE_SOON and then expire), and signals.
 */
import { Framing, IdCounter } from './framing.mjs';
import { Prng } from './prng.mjs';

/**
 * @typedef {{op: 'send', conn: string, chunks: Buffer[]}
 *   | {op: 'close', conn: string}
 *   | {op: 'halfclose', conn: string}} Step
 * @typedef {{seed: number, args: string[], maxJobSize: number, binlog: boolean, steps: Step[]}} Case
 */

const DEFAULT_MAX_JOB_SIZE = 65535;
const TUBES = ['default', 'default', 'a', 'a', 'b', 'b', 'c', 'x.y', '(z)$_-+/;'];
const LONG_TUBE = 'L'.repeat(200);
const BAD_TUBES = ['-a', 'a b', 'a*b', 'L'.repeat(201), '', ' a', 'a '];
const PRIS = [0, 0, 1, 10, 1023, 1024, 1025, 2147483648, 4294967295];
const LONG_SECS = [3600, 100000, 4294967295];
const BAD_IDS = [' 1', '1 ', '01', '-1', '+1', 'abc', '', '18446744073709551615', '18446744073709551616', '1\t'];
const KICK_ARGS = ['0', '1', '2', '3', '10', '1000', '-1', '10abc', '+3', '4294967296', 'x', '', ' 2'];
/** reserve-with-timeout arguments that mean 0 or never run out in a case. */
const RWT_ARGS = ['0', '0', '0', '0abc', 'abc', '', '+0', '-0', '0 1', '4294967296', '-1', '2147483648', '100000', '9223372036854775808'];
const JUNK = [
  '', 'x', 'foo bar', 'PUT 0 0 100 1', ' reserve', 'stats ', 'statsfoo', 'list-tubesX', 'reservefoo',
  'reserve-with-timeout', 'delete', 'peek', 'kick', 'use', 'use  a', 'watch a*b', 'ignore -a', 'stats-tube',
  'pause-tube', 'pause-tube a', 'pause-tube a -1', 'peek-readyx', 'list-tube-used ', 'touch', 'bury 1',
  'release 1 1', 'kick-job', 'stats-job', 'reserve-job', 'reserve-job x', 'watch', 'ignore',
  // Extensions II's lines (--extensions only): without it, the reference's replies.
  'list-jobs default ready 0 10', 'flush-tube default', 'delete-tube default', 'tube-policy default max-jobs 1',
  'tube-policy default fan-out a,b', 'stats-tube-policy default', 'reprioritize 1 0', 'redelay 1 0',
];

export class Generator {
  /** @param {number} seed */
  constructor(seed) {
    this.seed = seed;
    this.rng = new Prng(seed);
    const r = this.rng;
    const variant = r.weighted({ plain: 70, small: 18, binlog: 12 });
    this.maxJobSize = variant === 'small' ? r.pick([0, 1, 5, 10, 100]) : DEFAULT_MAX_JOB_SIZE;
    this.binlog = variant === 'binlog';
    /** @type {string[]} */
    this.args = variant === 'small' ? ['-z', String(this.maxJobSize)] : variant === 'binlog' ? ['-b', '{DIR}'] : [];
    this.connCount = r.range(2, 4);
    this.ids = new IdCounter();
    /** @type {Map<string, Framing>} */
    this.models = new Map();
    /** @type {Step[]} */
    this.steps = [];
  }

  /** @param {number} steps @returns {Case} */
  build(steps) {
    for (let i = 0; i < steps; i++) this.step();
    // A last look at the whole server from a connection of its own.
    this.send('c9', [Buffer.from('stats\r\n', 'latin1')]);
    this.send('c9', [Buffer.from('list-tubes\r\n', 'latin1')]);
    return { seed: this.seed, args: this.args, maxJobSize: this.maxJobSize, binlog: this.binlog, steps: this.steps };
  }

  /** @param {string} conn */
  model(conn) {
    let m = this.models.get(conn);
    if (m === undefined || m.mode === 'closed') {
      m = new Framing(this.maxJobSize, this.ids);
      this.models.set(conn, m);
    }
    return m;
  }

  /** @param {string} conn @param {Buffer[]} chunks */
  send(conn, chunks) {
    const m = this.model(conn);
    for (const c of chunks) m.feed(c);
    this.steps.push({ op: 'send', conn, chunks });
  }

  /** @returns {void} */
  step() {
    const r = this.rng;
    const conn = `c${r.range(1, this.connCount)}`;
    const m = this.model(conn);
    if ((m.mode === 'body' || m.mode === 'skip') && r.chance(0.75)) return this.finishBody(conn, m);
    const kind = r.weighted({ single: 55, pipeline: 22, burst: 4, split: 10, partial: 6, close: 4, halfclose: 1.5 });
    if (kind === 'close' || kind === 'halfclose') {
      if (!this.models.has(conn)) return this.step();
      if (kind === 'close') m.close();
      else m.halfclose();
      this.steps.push({ op: kind, conn });
      return;
    }
    if (kind === 'single') return this.send(conn, [this.command()]);
    if (kind === 'pipeline') return this.send(conn, [this.commands(r.range(2, 4))]);
    if (kind === 'burst') return this.send(conn, [this.burst()]);
    if (kind === 'split') return this.send(conn, this.splitAt(this.commands(r.chance(0.3) ? 2 : 1), r.range(1, 2)));
    // A put whose body is still to come: other connections act in between.
    const body = this.body();
    const line = Buffer.from(`put ${this.pri()} ${this.delay()} ${this.ttr()} ${body.length}\r\n`, 'latin1');
    const cut = r.int(body.length + 1);
    this.send(conn, [Buffer.concat([line, body.subarray(0, cut)])]);
  }

  /** The rest of a body (or JOB_TOO_BIG skip) on `conn`, right or wrong, maybe with more commands. @param {string} conn @param {Framing} m */
  finishBody(conn, m) {
    const r = this.rng;
    const need = m.need;
    let tail;
    if (r.chance(0.8)) tail = Buffer.concat([this.bytes(Math.max(0, need - 2)), Buffer.from('\r\n', 'latin1').subarray(Math.max(0, 2 - need))]);
    else tail = this.bytes(need); // most likely EXPECTED_CRLF
    const more = r.chance(0.3) ? [this.commands(1)] : [];
    this.send(conn, [Buffer.concat([tail, ...more])]);
  }

  /** @param {Buffer} bytes @param {number} cuts */
  splitAt(bytes, cuts) {
    const at = Array.from({ length: cuts }, () => this.rng.range(1, Math.max(1, bytes.length - 1))).sort((a, b) => a - b);
    /** @type {Buffer[]} */
    const out = [];
    let prev = 0;
    for (const a of at) {
      if (a <= prev || a >= bytes.length) continue;
      out.push(bytes.subarray(prev, a));
      prev = a;
    }
    out.push(bytes.subarray(prev));
    return out;
  }

  /**
   * A change that can make a job reservable, and a reserve in the same
   * packet: whatever the change does must be done before the reserve runs.
   */
  burst() {
    const r = this.rng;
    const change = r.weighted({ pause: 4, kick: 2, release: 2, put: 2 });
    const first = change === 'pause' ? `pause-tube ${this.tube(0)} ${r.chance(0.7) ? 0 : 3600}`
      : change === 'kick' ? `kick ${r.pick(['1', '10'])}`
      : change === 'release' ? `release ${this.id()} ${this.pri()} 0`
      : `put ${this.pri()} 0 3600 1\r\nx`;
    return Buffer.from(`${first}\r\n${r.chance(0.7) ? 'reserve-with-timeout 0' : 'reserve'}\r\n`, 'latin1');
  }

  /** Up to n commands in a row; nothing after a quit (the server would reset the connection). @param {number} n */
  commands(n) {
    /** @type {Buffer[]} */
    const out = [];
    for (let i = 0; i < n; i++) {
      const cmd = this.command();
      out.push(cmd);
      if (cmd.toString('latin1').startsWith('quit')) break;
    }
    return Buffer.concat(out);
  }

  /** One command, mostly valid, with its CRLF (and body). @returns {Buffer} */
  command() {
    const r = this.rng;
    const line = (/** @type {string} */ s) => Buffer.from(`${s}\r\n`, 'latin1');
    const kind = r.weighted({
      put: 22, badput: 3, reserve: 7, rwt: 9, reservejob: 3, del: 6, release: 5, bury: 4, touch: 2,
      kick: 4, kickjob: 3, peek: 3, peekq: 4, statsjob: 4, statstube: 3, stats: 2, lists: 5,
      use: 7, watch: 7, ignore: 6, pause: 5, junk: 4, framing: 2, quit: 0.4,
    });
    switch (kind) {
      case 'put': {
        const body = this.body();
        const n = r.chance(0.05) ? Math.max(0, body.length + r.pick([-1, 1])) : body.length;
        const tail = r.chance(0.03) ? 'xy' : '\r\n';
        return Buffer.concat([line(`put ${this.pri()} ${this.delay()} ${this.ttr()} ${n}`), body, Buffer.from(tail, 'latin1')]);
      }
      case 'badput': {
        const big = this.maxJobSize + r.range(1, 3);
        return r.chance(0.4)
          ? Buffer.concat([line(`put 0 0 3600 ${big}`), this.bytes(big), line('')])
          : line(r.pick(['put 1 2 3', 'put -1 0 3600 1', 'put 0 0 3600 1 ', 'put 0 0 3600 4294967296', 'put  0  0  3600  0', 'put 00 0 3600 1x', 'put 0 0 3600 99999999999999999999', 'put 1 2 3 4 5']));
      }
      case 'reserve':
        return line('reserve');
      case 'rwt':
        return line(`reserve-with-timeout ${r.pick(RWT_ARGS)}`);
      case 'reservejob':
        return line(`reserve-job ${this.id()}`);
      case 'del':
        return line(`delete ${this.id()}`);
      case 'release':
        return line(`release ${this.id()} ${this.pri()} ${this.delay()}`);
      case 'bury':
        return line(`bury ${this.id()} ${this.pri()}`);
      case 'touch':
        return line(`touch ${this.id()}`);
      case 'kick':
        return line(`kick ${r.pick(KICK_ARGS)}`);
      case 'kickjob':
        return line(`kick-job ${this.id()}`);
      case 'peek':
        return line(`peek ${this.id()}`);
      case 'peekq':
        return line(r.pick(['peek-ready', 'peek-delayed', 'peek-buried']));
      case 'statsjob':
        return line(`stats-job ${this.id()}`);
      case 'statstube':
        return line(`stats-tube ${this.tube(0.1)}`);
      case 'stats':
        return line('stats');
      case 'lists':
        return line(r.pick(['list-tubes', 'list-tubes', 'list-tubes-watched', 'list-tubes-watched', 'list-tube-used']));
      case 'use':
        return line(`use ${this.tube(0.05)}`);
      case 'watch':
        return line(`watch ${this.tube(0.05)}`);
      case 'ignore':
        return line(`ignore ${this.tube(0.05)}`);
      case 'pause': {
        const secs = r.chance(0.65) ? '0' : r.pick(['3600', '100000', '4294967295', '-1', 'x', '0 ']);
        const form = r.weighted({ plain: 8, nospace: 1, spaces: 1 });
        const t = this.tube(0.05);
        return line(form === 'plain' ? `pause-tube ${t} ${secs}` : form === 'nospace' ? `pause-tube${t} ${secs}` : `pause-tube  ${t} ${secs}`);
      }
      case 'junk':
        return line(r.pick(JUNK));
      case 'framing':
        return this.framingEdge();
      case 'quit':
        return line(r.pick(['quit', 'quitXYZ']));
    }
  }

  /** Line-framing edge cases (REFERENCE.md 2.1). */
  framingEdge() {
    const r = this.rng;
    const kind = r.weighted({ long: 3, nul: 2, cr: 1, lf: 2, exact: 2 });
    if (kind === 'long') return Buffer.from(`use ${'a'.repeat(r.range(219, 460))}\r\n`, 'latin1');
    if (kind === 'nul') return Buffer.from(`use a\0b\r\n`, 'latin1');
    if (kind === 'cr') return Buffer.from(`use a\rb\r\n`, 'latin1');
    if (kind === 'lf') return Buffer.from(r.pick(['stats\n', 'list-tubes\n', '\n']), 'latin1');
    // The longest line the reference takes: 224 bytes with CRLF.
    return Buffer.from(`pause-tube ${'p'.repeat(200)} 4294967295\r\n`, 'latin1');
  }

  /** @param {number} badChance */
  tube(badChance) {
    const r = this.rng;
    if (r.chance(badChance)) return r.pick(BAD_TUBES);
    if (r.chance(0.02)) return LONG_TUBE;
    return r.pick(TUBES);
  }

  id() {
    const r = this.rng;
    const top = this.ids.next;
    const kind = r.weighted({ known: 70, next: 10, zero: 4, bad: 10, far: 6 });
    if (kind === 'known') return String(top > 1 ? r.range(Math.max(1, top - 6), top - 1) : 1);
    if (kind === 'next') return String(top);
    if (kind === 'zero') return '0';
    if (kind === 'far') return String(r.range(top + 1, top + 1000));
    return r.pick(BAD_IDS);
  }

  pri() {
    return this.rng.chance(0.7) ? this.rng.pick(PRIS) : this.rng.int(2000);
  }

  delay() {
    return this.rng.chance(0.85) ? 0 : this.rng.pick(LONG_SECS);
  }

  ttr() {
    return this.rng.pick([3600, 3600, 100000, 4294967295]);
  }

  /** A body: mostly short and printable, sometimes with CR, LF, NUL, high bytes, or at the size limit. */
  body() {
    const r = this.rng;
    const kind = r.weighted({ empty: 4, short: 55, medium: 25, limit: 8, big: 4 });
    if (kind === 'empty') return this.bytes(0);
    if (kind === 'short') return this.bytes(r.range(1, 10));
    if (kind === 'medium') return this.bytes(r.range(11, 80));
    // At the limit (inclusive): cheap with -z, a 64 KiB body only now and then.
    if (kind === 'limit' && (this.maxJobSize < DEFAULT_MAX_JOB_SIZE || r.chance(0.25))) {
      return this.bytes(Math.max(0, this.maxJobSize - r.int(2)));
    }
    return this.bytes(Math.min(this.maxJobSize, r.range(200, 3000)));
  }

  /** @param {number} n */
  bytes(n) {
    const r = this.rng;
    const binary = r.chance(0.2);
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) {
      b[i] = binary && r.chance(0.3) ? r.pick([0x0d, 0x0a, 0x00, 0xff, 0x80, 0x20]) : 0x61 + r.int(26);
    }
    return b;
  }
}

/** @param {number} seed @param {number} steps @returns {Case} */
export function generateCase(seed, steps) {
  return new Generator(seed).build(steps);
}

// @ts-check
// Runs one parsed scenario against a fresh server.

import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, mkdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { matchPattern, show } from './match.mjs';
import { Server, freePort, killAllServers } from './server.mjs';
import { sleep, within } from './timers.mjs';

/** @typedef {import('./scenario.mjs').Scenario} Scenario */
/** @typedef {import('./scenario.mjs').Step} Step */
/** @typedef {import('./scenario.mjs').Segment} Segment */

/**
 * @typedef {{
 *   server: string[], flavor: 'ref' | 'tsb', expectMs: number, gapMs: number,
 *   trace: ((line: string) => void) | null,
 *   tls?: tls.SecureContext | null, auth?: string | null
 * }} ExecOptions
 * `tls`: connect over TLS trusting this context's CA; `auth`: send `auth TOKEN`
 * on every new connection and consume AUTHENTICATED before the scenario uses it
 * (tsbeanstalkd's --tls-port and --auth-file: the scenarios run unchanged there).
 * @typedef {{ok: true, ms: number} | {ok: false, ms: number, line: number, message: string, stderr: string}} Outcome
 */


class StepFailure extends Error {
  /** @param {number} line @param {string} message */
  constructor(line, message) {
    super(message);
    this.line = line;
  }
}

/** One client connection with a buffer of not-yet-consumed bytes. */
class Conn {
  /** @param {net.Socket} sock */
  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.ended = false;
    /** @type {string | null} */
    this.error = null;
    /** @type {Array<() => void>} */
    this.waiters = [];
    sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.wake(); });
    sock.on('end', () => { this.ended = true; this.wake(); });
    sock.on('close', () => { this.ended = true; this.wake(); });
    sock.on('error', (e) => { this.error = /** @type {NodeJS.ErrnoException} */ (e).code ?? e.message; this.ended = true; this.wake(); });
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolve on the next data/end event or after ms. @param {number} ms */
  changed(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, Math.max(0, ms));
      this.waiters.push(() => { clearTimeout(t); resolve(undefined); });
    });
  }

  /** @param {number} n */
  consume(n) { this.buf = this.buf.subarray(n); }
}

/** Display form of an expectation. @param {Segment[]} segs */
function patternText(segs) {
  return segs.map((s) => {
    if (s.kind === 'lit') return s.bytes.toString('latin1');
    if (s.kind === 'var') return `{=${s.name}}`;
    if (s.kind === 'int' && (s.min !== 0 || s.max !== Number.MAX_SAFE_INTEGER)) return `{int:${s.min}..${s.max}}`;
    return `{${s.kind}}`;
  }).join('');
}

/**
 * Write every part, respecting backpressure, bounded by the deadline.
 * @param {net.Socket} sock @param {import('./scenario.mjs').SendData} data @param {number} deadline
 * @returns {Promise<boolean>}
 */
async function writeAll(sock, data, deadline) {
  let failed = false;
  const onErr = () => { failed = true; };
  sock.once('error', onErr);
  try {
    /** @type {Promise<boolean>} */
    let last = Promise.resolve(true);
    for (const part of data.parts) {
      for (let i = 0; i < part.times && !failed; i++) {
        last = new Promise((resolve) => { sock.write(part.bytes, (err) => resolve(!err)); });
        if (sock.writableNeedDrain) {
          const drained = await new Promise((resolve) => {
            const done = (/** @type {boolean} */ v) => {
              clearTimeout(t);
              sock.off('drain', onDrain);
              sock.off('close', onClose);
              resolve(v);
            };
            const onDrain = () => done(true);
            const onClose = () => done(false);
            const t = setTimeout(() => done(false), Math.max(0, deadline - Date.now()));
            sock.on('drain', onDrain);
            sock.on('close', onClose);
          });
          if (!drained) return false;
        }
      }
    }
    const ok = await within(last, deadline - Date.now(), false);
    return ok && !failed;
  } finally {
    sock.off('error', onErr);
  }
}

/** Create a unix socket file that nobody listens on (its owner was SIGKILLed). @param {string} p */
async function makeStaleSocket(p) {
  const code = "const s=require('net').createServer();s.listen(process.argv[1],()=>process.kill(process.pid,'SIGKILL'))";
  const child = spawn(process.execPath, ['-e', code, p], { stdio: 'ignore' });
  await within(new Promise((r) => child.once('exit', r)), 5000, null);
  child.kill('SIGKILL');
  const st = await stat(p).catch(() => null);
  if (!st || !st.isSocket()) throw new Error(`could not create a stale socket at ${p}`);
}

/** Temporary directories of scenarios still running. */
const liveDirs = new Set();

/** Kill every server and remove every temporary directory (for an interrupted run). */
export function abortAll() {
  killAllServers();
  for (const d of liveDirs) {
    try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
  }
}

/**
 * @param {Scenario} sc
 * @param {ExecOptions} opts
 * @returns {Promise<Outcome>}
 */
export async function runScenario(sc, opts) {
  const t0 = Date.now();
  const deadline = t0 + sc.timeoutMs;
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'tsbconf-'));
  liveDirs.add(tmp);
  const dir = path.join(tmp, 'dir');
  const sock = path.join(tmp, 'sock');
  await mkdir(dir);
  /** @type {Map<string, Conn>} */
  const conns = new Map();
  /** @type {Server | null} */
  let server = null;
  let curLine = 0;
  const trace = opts.trace ?? (() => {});
  try {
    const useSock = [...opts.server, ...sc.args].some((a) => a.includes('{SOCK}'));
    /** @param {number} p */
    const makeServer = (p) => {
      const subst = (/** @type {string} */ s) => s.replaceAll('{PORT}', String(p)).replaceAll('{DIR}', dir).replaceAll('{SOCK}', sock);
      const argv = [...opts.server, ...sc.args].map(subst);
      trace(`server: ${argv.join(' ')}`);
      return new Server(argv, { port: p, sock: useSock ? sock : null });
    };
    let port = await freePort();
    let srv = makeServer(port);
    server = srv;
    // A port that was free a moment ago may be taken by now (other runs on the
    // same machine): when the server dies at startup, try again on a new port.
    for (let attempt = 1; !sc.manualStart; attempt++) {
      try {
        await srv.start(Math.min(5000, deadline - Date.now()));
        break;
      } catch (e) {
        await srv.stop('SIGKILL', 1000);
        if (attempt >= 3 || !/exited during startup/.test(String(e)) || useSock) throw e;
        port = await freePort();
        srv = makeServer(port);
        server = srv;
      }
    }
    const vars = () => ({
      pid: String(srv.pid ?? ''), hostname: os.hostname(), os: os.version(), platform: os.machine(), port: String(port),
    });

    // Timed expectations count from the last unused `mark`, else from the last
    // action sent to the server (data, close, half-close, signal). A send takes
    // time (a TLS write completes after the server may have read it), so a
    // window's lower bound counts from when the send began and its upper
    // bound from when it completed: neither edge is judged against the
    // runner's own delay.
    let lastSendAt = Date.now();
    let lastSendBeganAt = lastSendAt;
    /** @type {number | null} */
    let markAt = null;
    // A `mark` right after a send or an expect marks what the server did for
    // that send; the server may have done it as soon as the send began, and
    // the runner's own event loop (other scenarios run beside this one) can
    // reach the mark later than that. So its lower bound counts from the
    // send's beginning, its upper bound from the mark.
    let markEarly = 0;
    let prevOp = '';
    /** @returns {{ early: number, late: number }} the reference instants of the window's lower and upper bounds */
    const refTime = () => (markAt !== null ? { early: markEarly, late: markAt } : { early: lastSendBeganAt, late: lastSendAt });
    const sent = () => { lastSendAt = Date.now(); lastSendBeganAt = lastSendAt; };
    let lastSend = { conn: '', at: 0 };

    const left = () => deadline - Date.now();
    const fail = (/** @type {string} */ msg) => { throw new StepFailure(curLine, msg); };

    /** @param {string} name */
    const getConn = async (name) => {
      const existing = conns.get(name);
      if (existing) return existing;
      const secure = opts.tls ?? null;
      const s = useSock ? net.connect(sock)
        : secure !== null ? tls.connect({ port, host: '127.0.0.1', servername: 'localhost', secureContext: secure })
        : net.connect(port, '127.0.0.1');
      s.setNoDelay(true);
      const c = new Conn(s);
      conns.set(name, c);
      const ok = await within(
        new Promise((r) => { s.once(secure !== null ? 'secureConnect' : 'connect', () => r(true)); s.once('error', () => r(false)); }),
        Math.min(3000, left()), false,
      );
      if (!ok) fail(`${name}: could not connect${c.error ? ` (${c.error})` : ''}`);
      // With --auth every connection authenticates first; the scenario sees the connection after that.
      if (opts.auth) {
        const want = Buffer.from('AUTHENTICATED\r\n');
        trace(`${name}: auth (transport, not the scenario's)`);
        s.write(`auth ${opts.auth}\r\n`);
        const until = Date.now() + Math.min(3000, left());
        while (c.buf.length < want.length && !c.ended && Date.now() < until) await c.changed(until - Date.now());
        if (!c.buf.subarray(0, want.length).equals(want)) fail(`${name}: auth: expected AUTHENTICATED, got ${show(c.buf)}`);
        c.consume(want.length);
      }
      return c;
    };
    const dropConns = () => {
      for (const c of conns.values()) c.sock.destroy();
      conns.clear();
    };
    /** @param {Conn} c */
    const got = (c) => {
      const shown = show(c.buf.subarray(0, 400)) + (c.buf.length > 400 ? `...(+${c.buf.length - 400} bytes)` : '');
      const state = c.ended ? ` then ${c.error ? `error ${c.error}` : '{eof}'}` : '';
      return `${shown}${state}`;
    };

    for (const step of sc.steps) {
      if (step.flavor && step.flavor !== opts.flavor) continue;
      curLine = step.line;
      if (left() <= 0) fail(`scenario time limit of ${sc.timeoutMs} ms reached`);
      switch (step.op) {
        case 'send': {
          const c = await getConn(step.conn);
          if (lastSend.conn && lastSend.conn !== step.conn) await sleep(lastSend.at + opts.gapMs - Date.now());
          const first = step.data.parts[0]?.bytes.subarray(0, 200) ?? Buffer.alloc(0);
          trace(`${step.line}: ${step.conn}> ${show(first)}${step.data.length > first.length ? ` (${step.data.length} bytes)` : ''}`);
          const began = Date.now();
          const ok = await writeAll(c.sock, step.data, deadline);
          if (!ok) fail(`${step.conn}: write failed${c.error ? ` (${c.error})` : ''}`);
          lastSendAt = Date.now();
          lastSendBeganAt = began;
          lastSend = { conn: step.conn, at: lastSendAt };
          break;
        }
        case 'expect': {
          const c = await getConn(step.conn);
          const started = Date.now();
          const ref = refTime();
          if (step.window) markAt = null;
          const until = Math.min(step.window ? ref.late + step.window.max : started + opts.expectMs, deadline);
          const expected = show(patternText(step.segs));
          for (;;) {
            const r = matchPattern(step.segs, c.buf, vars());
            if (r.status === 'ok') {
              const at = Date.now() - ref.early;
              trace(`${step.line}: ${step.conn}< ${show(c.buf.subarray(0, r.length).subarray(0, 200))} (+${at} ms)`);
              if (step.window && at < step.window.min) {
                fail(`${step.conn}: expected ${expected} within ${step.window.min}..${step.window.max} ms, got it after ${at} ms`);
              }
              c.consume(r.length);
              break;
            }
            if (r.status === 'mismatch') fail(`${step.conn}: expected ${expected} got ${got(c)} (${r.reason})`);
            if (c.ended) fail(`${step.conn}: expected ${expected} got ${got(c)}`);
            if (Date.now() >= until) {
              const why = step.window ? `nothing complete within ${step.window.max} ms` : `timeout after ${Date.now() - started} ms`;
              fail(`${step.conn}: expected ${expected} got ${got(c)} (${why})`);
            }
            await c.changed(until - Date.now());
          }
          break;
        }
        case 'none': {
          const c = await getConn(step.conn);
          const until = Math.min(Date.now() + step.ms, deadline);
          while (c.buf.length === 0 && !c.ended && Date.now() < until) await c.changed(until - Date.now());
          if (c.buf.length || c.ended) fail(`${step.conn}: expected nothing for ${step.ms} ms, got ${got(c)}`);
          if (Date.now() < until) fail('scenario time limit reached');
          trace(`${step.line}: ${step.conn}< {none} for ${step.ms}`);
          break;
        }
        case 'eof': {
          const c = await getConn(step.conn);
          const started = Date.now();
          const ref = refTime();
          if (step.window) markAt = null;
          const until = Math.min(step.window ? ref.late + step.window.max : started + opts.expectMs, deadline);
          while (c.buf.length === 0 && !c.ended && Date.now() < until) await c.changed(until - Date.now());
          const at = Date.now() - ref.early;
          if (c.buf.length) fail(`${step.conn}: expected {eof} got ${got(c)}`);
          if (!c.ended) fail(`${step.conn}: expected {eof}, connection still open after ${Date.now() - started} ms`);
          if (step.window && at < step.window.min) fail(`${step.conn}: {eof} after ${at} ms, expected within ${step.window.min}..${step.window.max}`);
          trace(`${step.line}: ${step.conn}< {eof}${c.error ? ` (${c.error})` : ''} (+${at} ms)`);
          break;
        }
        case 'open':
          await getConn(step.conn);
          break;
        case 'close': {
          const c = await getConn(step.conn);
          c.sock.destroy();
          conns.delete(step.conn);
          sent();
          break;
        }
        case 'halfclose': {
          const c = await getConn(step.conn);
          c.sock.end();
          sent();
          break;
        }
        case 'wait':
          await sleep(Math.min(step.ms, left()));
          break;
        case 'mark':
          markAt = Date.now();
          markEarly = prevOp === 'send' || prevOp === 'expect' ? lastSendBeganAt : markAt;
          break;
        case 'signal':
          srv.signal(step.sig);
          sent();
          break;
        case 'stop':
        case 'kill9':
          dropConns();
          await srv.stop(step.op === 'stop' ? 'SIGTERM' : 'SIGKILL', Math.max(100, Math.min(5000, left())));
          break;
        case 'restart':
          dropConns();
          await srv.stop('SIGTERM', Math.max(100, Math.min(5000, left())));
          await srv.start(Math.max(100, Math.min(5000, left())));
          break;
        case 'start':
          if (srv.proc && !srv.exitStatus) fail('start: server is already running');
          await srv.start(Math.max(100, Math.min(5000, left())));
          break;
        case 'stalesock':
          await makeStaleSocket(sock);
          break;
        case 'file': {
          const p = step.path.replaceAll('{DIR}', dir).replaceAll('{SOCK}', sock);
          const st = await stat(p).catch(() => null);
          if (step.check === 'absent' && st) fail(`file ${step.path} exists (size ${st.size}), expected absent`);
          if (step.check !== 'absent' && !st) fail(`file ${step.path} does not exist`);
          if (step.check === 'size' && st && st.size !== step.size) fail(`file ${step.path} has size ${st.size}, expected ${step.size}`);
          break;
        }
      }
      prevOp = step.op;
    }
    return { ok: true, ms: Date.now() - t0 };
  } catch (err) {
    const e = /** @type {Error & {line?: number}} */ (err);
    return { ok: false, ms: Date.now() - t0, line: e instanceof StepFailure ? e.line : curLine, message: e.message, stderr: server?.stderr ?? '' };
  } finally {
    for (const c of conns.values()) c.sock.destroy();
    if (server) await server.stop('SIGKILL', 3000);
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    liveDirs.delete(tmp);
  }
}

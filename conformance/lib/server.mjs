// @ts-check
// Starting, probing and stopping the server under test.

import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { sleep, within } from './timers.mjs';


/**
 * Splits a server command template into words; double or single quotes group words.
 * @param {string} s
 */
export function splitWords(s) {
  /** @type {string[]} */
  const out = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(s))) out.push(m[1] ?? m[2] ?? m[3] ?? '');
  return out;
}

/** Ports handed out during this run, never handed out twice. */
const handedOut = new Set();

/** A loopback TCP port that was free a moment ago. @returns {Promise<number>} */
export async function freePort() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer();
      s.on('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const addr = s.address();
        const p = addr && typeof addr === 'object' ? addr.port : 0;
        s.close(() => resolve(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('could not find a free port');
}

/**
 * Inodes of the sockets listening on the port / unix socket, read from /proc so
 * that no connection is made (a probe connection would show in the server's
 * stats). Returns null when /proc is not available.
 * @param {{port: number, sock: string | null}} addr
 * @returns {string[] | null}
 */
function listeningInodes(addr) {
  /** @type {string[]} */
  const inodes = [];
  try {
    if (addr.sock) {
      // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = listening
      for (const l of readFileSync('/proc/net/unix', 'latin1').split('\n')) {
        const f = l.trim().split(/\s+/);
        if (f[7] === addr.sock && f[3] === '00010000' && f[6]) inodes.push(f[6]);
      }
      return inodes;
    }
    const hex = addr.port.toString(16).toUpperCase().padStart(4, '0');
    let seen = false;
    for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
      let text = '';
      try { text = readFileSync(file, 'latin1'); } catch { continue; }
      seen = true;
      for (const l of text.split('\n')) {
        const f = l.trim().split(/\s+/);
        if (f[1]?.endsWith(`:${hex}`) && f[3] === '0A' && f[9]) inodes.push(f[9]);
      }
    }
    return seen ? inodes : null;
  } catch {
    return null;
  }
}

/**
 * Does process pid hold one of these socket inodes? null if its fds cannot be read
 * (then any listener counts).
 * @param {number} pid @param {string[]} inodes
 * @returns {boolean | null}
 */
function holdsSocket(pid, inodes) {
  let fds;
  try { fds = readdirSync(`/proc/${pid}/fd`); } catch { return null; }
  for (const fd of fds) {
    let link = '';
    try { link = readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m && inodes.includes(m[1] ?? '')) return true;
  }
  return false;
}

/** Fallback readiness probe that does connect. @param {{port: number, sock: string | null}} addr */
function connectProbe(addr) {
  return new Promise((resolve) => {
    const s = addr.sock ? net.connect(addr.sock) : net.connect(addr.port, '127.0.0.1');
    const done = (/** @type {boolean} */ ok) => { s.destroy(); resolve(ok); };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(200, () => done(false));
  });
}

/** Servers started and not yet known to have exited. */
const live = new Set();

/** SIGKILL every server still running (for an interrupted run). */
export function killAllServers() {
  for (const srv of live) srv.kill();
}

export class Server {
  /**
   * @param {string[]} argv command and arguments, placeholders already substituted
   * @param {{port: number, sock: string | null}} addr where it will listen
   */
  constructor(argv, addr) {
    this.argv = argv;
    this.addr = addr;
    /** @type {import('node:child_process').ChildProcess | null} */
    this.proc = null;
    /** @type {number | null} */
    this.pid = null;
    this.stderr = '';
    /** @type {Promise<void> | null} */
    this.exited = null;
    /** @type {{code: number | null, signal: string | null} | null} */
    this.exitStatus = null;
  }

  /** Spawn and wait (bounded) until it listens. @param {number} timeoutMs */
  async start(timeoutMs = 5000) {
    const [cmd, ...args] = this.argv;
    if (!cmd) throw new Error('empty server command');
    this.exitStatus = null;
    const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    live.add(this);
    this.pid = proc.pid ?? null;
    proc.stderr?.on('data', (d) => {
      if (this.stderr.length < 8192) this.stderr += d.toString('utf8');
    });
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        live.delete(this);
        resolve();
      });
      proc.once('error', (err) => {
        this.stderr += `spawn error: ${err.message}\n`;
        this.exitStatus = { code: -1, signal: null };
        live.delete(this);
        resolve();
      });
    });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exitStatus) {
        const st = /** @type {{code: number | null, signal: string | null}} */ (this.exitStatus);
        throw new Error(`server exited during startup (code ${st.code}, signal ${st.signal}): ${this.stderr.trim().slice(0, 300)}`);
      }
      const inodes = listeningInodes(this.addr);
      let up;
      if (inodes === null) up = await connectProbe(this.addr);
      else up = inodes.length > 0 && (this.pid === null || holdsSocket(this.pid, inodes) !== false);
      if (up) {
        await sleep(5);
        if (!this.exitStatus) return;
      }
      await sleep(10);
    }
    this.kill();
    throw new Error(`server did not listen within ${timeoutMs} ms`);
  }

  /** Send a signal if running. @param {NodeJS.Signals} sig */
  signal(sig) {
    if (this.proc && !this.exitStatus) this.proc.kill(sig);
  }

  /** Signal and wait for exit; SIGKILL after timeoutMs. @param {NodeJS.Signals} sig @param {number} timeoutMs */
  async stop(sig = 'SIGTERM', timeoutMs = 5000) {
    if (!this.proc || !this.exited) return;
    if (!this.exitStatus) this.proc.kill(sig);
    const t = await within(this.exited.then(() => true), timeoutMs, false);
    if (!t) {
      this.proc.kill('SIGKILL');
      await within(this.exited, 2000, undefined);
    }
  }

  /** Fire-and-forget SIGKILL. */
  kill() {
    if (this.proc && !this.exitStatus) this.proc.kill('SIGKILL');
  }
}

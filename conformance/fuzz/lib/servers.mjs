// @ts-check
/**
 * A fresh pair of servers (the reference and tsbeanstalkd) for one case, each
 * on a free loopback port and, with -b, in a temporary directory of its own.
 * stop() kills both and removes the directories, also after failures.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Server, freePort, splitWords } from '../../lib/server.mjs';

/** Directories of pairs still running, for an interrupted run. */
const liveDirs = new Set();

/** @returns {string[]} */
export function liveDirectories() {
  return [...liveDirs];
}

export class ServerPair {
  /** @param {{ref: string, tsb: string}} commands templates @param {string[]} args the case's extra arguments */
  constructor(commands, args) {
    this.commands = { ref: splitWords(commands.ref), tsb: splitWords(commands.tsb) };
    this.args = args;
    /** @type {Server[]} */
    this.servers = [];
    /** @type {string[]} */
    this.dirs = [];
    this.ports = { ref: 0, tsb: 0 };
  }

  /** Starts both; a port taken meanwhile by someone else is retried on another. */
  async start() {
    const [ref, tsb] = await Promise.all([this.startOne(this.commands.ref), this.startOne(this.commands.tsb)]);
    this.ports = { ref, tsb };
    return this;
  }

  /** @param {string[]} command @returns {Promise<number>} port */
  async startOne(command) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tsbfuzz-'));
    this.dirs.push(dir);
    liveDirs.add(dir);
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const argv = [...command, ...this.args].map((a) => a.replaceAll('{PORT}', String(port)).replaceAll('{DIR}', dir));
      const srv = new Server(argv, { port, sock: null });
      this.servers.push(srv);
      try {
        await srv.start(10000);
        return port;
      } catch (e) {
        await srv.stop('SIGKILL', 1000);
        if (attempt >= 3 || !/exited during startup/.test(String(e))) throw e;
      }
    }
  }

  /** Stderr of both servers, for a report. */
  stderr() {
    return this.servers.map((s) => s.stderr.trim()).filter(Boolean).join('\n');
  }

  async stop() {
    await Promise.all(this.servers.map((s) => s.stop('SIGKILL', 3000)));
    await Promise.all(this.dirs.map(async (d) => {
      await rm(d, { recursive: true, force: true }).catch(() => {});
      liveDirs.delete(d);
    }));
  }
}

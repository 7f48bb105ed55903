#!/usr/bin/env node
// @ts-check
// Differential conformance runner: plays every scenario under conformance/scenarios
// against a fresh server process. See conformance/README.md.
//
//   node conformance/run.mjs --server "beanstalkd -l 127.0.0.1 -p {PORT}" --flavor ref

import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { abortAll, runScenario } from './lib/execute.mjs';
import { ParseError, parseScenario } from './lib/scenario.mjs';
import { splitWords } from './lib/server.mjs';
import { argsOrExit, onInterrupt } from './lib/cli.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const USAGE = `usage: node conformance/run.mjs --server "CMD ... -p {PORT}" [options]
  --server CMD       server command line; {PORT} {DIR} {SOCK} are substituted
  --flavor ref|tsb   which side of a ref:/tsb: deviation applies (default ref)
  --filter TEXT      only scenarios whose path contains TEXT (repeatable)
  --skip-tag TAG     skip scenarios tagged TAG (repeatable)
  --jobs N           scenarios run in parallel (default 6)
  --dir PATH         scenario directory (default conformance/scenarios)
  --verbose          print every scenario with its time, and server stderr on failure
  --trace            print the bytes exchanged (best with --filter)
  --tls CAFILE       connect over TLS (servername localhost), trusting CAFILE: the server command
                     serves TLS on {PORT}; scenarios on a Unix socket are skipped
  --auth TOKEN       send "auth TOKEN" first on every connection and consume AUTHENTICATED`;

/** @param {string[]} argv */
function parseArgs(argv) {
  const o = {
    server: '', flavor: /** @type {'ref'|'tsb'} */ ('ref'), filters: /** @type {string[]} */ ([]),
    skipTags: /** @type {string[]} */ ([]), jobs: 6, dir: path.join(HERE, 'scenarios'), verbose: false, trace: false,
    tls: /** @type {tls.SecureContext | null} */ (null), auth: /** @type {string | null} */ (null),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--server') o.server = val();
    else if (a === '--flavor') {
      const v = val();
      if (v !== 'ref' && v !== 'tsb') throw new Error('--flavor must be ref or tsb');
      o.flavor = v;
    } else if (a === '--filter') o.filters.push(val());
    else if (a === '--skip-tag') o.skipTags.push(val());
    else if (a === '--jobs') {
      o.jobs = Number(val());
      if (!Number.isInteger(o.jobs) || o.jobs < 1) throw new Error('--jobs wants a positive integer');
    } else if (a === '--dir') o.dir = path.resolve(val());
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--trace') o.trace = true;
    else if (a === '--tls') o.tls = tls.createSecureContext({ ca: readFileSync(val()) });
    else if (a === '--auth') o.auth = val();
    else if (a === '-h' || a === '--help') { console.log(USAGE); process.exit(0); }
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.server) throw new Error('--server is required');
  return o;
}

/** @param {string} dir @returns {Promise<string[]>} */
async function listScenarios(dir) {
  /** @type {string[]} */
  const out = [];
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...await listScenarios(p));
    else if (ent.name.endsWith('.txt')) out.push(p);
  }
  return out.sort();
}

onInterrupt('conformance', abortAll);

async function main() {
  const opts = argsOrExit(parseArgs, USAGE);
  const server = splitWords(opts.server);
  const files = (await listScenarios(opts.dir))
    .map((f) => path.relative(opts.dir, f))
    .filter((f) => opts.filters.length === 0 || opts.filters.some((x) => f.includes(x)));

  if (files.length === 0) {
    console.error(`no scenario files matched under ${opts.dir}`);
    console.log('conformance: 0 passed, 0 failed');
    process.exit(1);
  }

  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const started = Date.now();
  /** @type {string[]} */
  const queue = [...files];

  const worker = async () => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      let sc;
      try {
        sc = parseScenario(f, await readFile(path.join(opts.dir, f), 'latin1'));
      } catch (e) {
        failed++;
        const line = e instanceof ParseError ? e.line : 0;
        console.log(`FAIL ${f}:${line}: scenario file error: ${/** @type {Error} */ (e).message}`);
        continue;
      }
      if (opts.tls !== null && [...sc.args, ...server].some((a) => a.includes('{SOCK}'))) {
        skipped++;
        if (opts.verbose) console.log(`skip ${f} (a unix socket: no TLS there)`);
        continue;
      }
      if (sc.tags.some((t) => opts.skipTags.includes(t))) {
        skipped++;
        if (opts.verbose) console.log(`skip ${f} (tags: ${sc.tags.join(' ')})`);
        continue;
      }
      const res = await play(sc);
      if (res.ok) {
        passed++;
        if (opts.verbose) console.log(`ok   ${f} (${res.ms} ms)`);
      } else {
        retries.push({ f, sc, res });
      }
    }
  };
  /** @param {import('./lib/scenario.mjs').Scenario} sc */
  const play = async (sc) => {
    /** @type {string[]} */
    const traced = [];
    const res = await runScenario(sc, {
      server, flavor: opts.flavor, expectMs: 3000, gapMs: 20, tls: opts.tls, auth: opts.auth,
      trace: opts.trace ? (l) => traced.push(`  ${l}`) : null,
    });
    if (traced.length) console.log(traced.join('\n'));
    return res;
  };
  /** @param {{ line: number, message: string }} res */
  const why = (res) => `${res.line}: ${res.message.replace(/\s*\n\s*/g, ' ')}`;
  /**
   * Scenarios that failed beside others, played again alone: many bound a
   * reply's timing to within tens of ms, which a 2-core machine running six
   * servers and their clients at once can miss. A real difference fails
   * again alone; each retry is printed either way.
   * @type {{ f: string, sc: import('./lib/scenario.mjs').Scenario, res: { line: number, message: string } }[]}
   */
  const retries = [];
  await Promise.all(Array.from({ length: Math.min(opts.jobs, Math.max(1, files.length)) }, worker));
  for (const { f, sc, res: first } of retries) {
    const res = await play(sc);
    if (res.ok) {
      passed++;
      console.log(`ok on retry alone ${f} (beside others it failed at ${why(first)})`);
    } else {
      failed++;
      console.log(`FAIL ${f}:${why(res)} (beside others: ${why(first)})`);
      if (opts.verbose && res.stderr.trim()) console.log(`  server stderr: ${res.stderr.trim().split('\n').join('\n  ')}`);
    }
  }
  if (opts.verbose) console.log(`time: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`conformance: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});

#!/usr/bin/env node
// @ts-check
/**
 * Lockstep differential fuzzer: random command streams, sent over several
 * connections to the reference beanstalkd and to tsbeanstalkd at the same
 * time, every reply compared byte for byte. A divergence is shrunk to a
 * short case and printed as a conformance scenario. See conformance/README.md.
 *
 *   node conformance/fuzz/run.mjs --seconds 60 [--seed N]
 *
 * Every loop is bounded (cases by --seconds and --cases, a case's steps, each
 * wait, the shrinker by runs and time); all traffic goes to 127.0.0.1; the
 * servers and their directories are removed whatever happens.
 */
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { argsOrExit, onInterrupt } from '../lib/cli.mjs';
import { parseScenario } from '../lib/scenario.mjs';
import { killAllServers, splitWords } from '../lib/server.mjs';
import { generateCase } from './lib/generate.mjs';
import { runCase } from './lib/lockstep.mjs';
import { caseSeed } from './lib/prng.mjs';
import { toScenario } from './lib/reproducer.mjs';
import { ServerPair, liveDirectories } from './lib/servers.mjs';
import { shrinkSteps } from './lib/shrink.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const USAGE = `usage: node conformance/fuzz/run.mjs [options]
  --seconds N       stop starting cases after N seconds (default 60; env FUZZ_SECONDS)
  --cases N         at most N cases (default: no limit)
  --seed N          run seed; the same seed gives the same cases (default random; env FUZZ_SEED)
  --case K          run only case K of the seed
  --steps N         steps per case (default: 20..120, from the case's seed)
  --ref CMD         reference command (default "beanstalkd -l 127.0.0.1 -p {PORT}")
  --tsb CMD         tsbeanstalkd command (default "node bin/tsbeanstalkd.js -l 127.0.0.1 -p {PORT}")
                    Without the reference command the run is skipped with a notice (an error when CI is set).
  --shrink-seconds N  time for shrinking a divergence (default 120)
  --save DIR        write each reproducer to DIR/fuzz_<seed>.txt
  --ignore KEY      do not compare this YAML key (repeatable; to look past a known difference)
  --keep-going      after a divergence, go on with the next case
  --print           print each case, with the reference's replies, as a scenario
  --replay FILE     run the sends of a scenario file (a reproducer) in lockstep instead of random cases
  --verbose         one line per case`;

/** @param {string[]} argv */
function parseArgs(argv) {
  const env = process.env;
  const o = {
    seconds: env.FUZZ_SECONDS ? Number(env.FUZZ_SECONDS) : 60,
    cases: Infinity,
    seed: env.FUZZ_SEED ? Number(env.FUZZ_SEED) : randomInt(2 ** 31),
    only: -1,
    steps: 0,
    ref: 'beanstalkd -l 127.0.0.1 -p {PORT}',
    tsb: `"${process.execPath}" "${path.join(ROOT, 'bin/tsbeanstalkd.js')}" -l 127.0.0.1 -p {PORT}`,
    shrinkSeconds: 120,
    save: '',
    keepGoing: false,
    verbose: false,
    print: false,
    replay: '',
    /** @type {string[]} */
    ignore: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const num = () => {
      const v = Number(val());
      if (!Number.isFinite(v) || v < 0) throw new Error(`${a} wants a number >= 0`);
      return v;
    };
    if (a === '--seconds') o.seconds = num();
    else if (a === '--cases') o.cases = num();
    else if (a === '--seed') o.seed = num();
    else if (a === '--case') o.only = num();
    else if (a === '--steps') o.steps = num();
    else if (a === '--ref') o.ref = val();
    else if (a === '--tsb') o.tsb = val();
    else if (a === '--shrink-seconds') o.shrinkSeconds = num();
    else if (a === '--save') o.save = path.resolve(val());
    else if (a === '--keep-going') o.keepGoing = true;
    else if (a === '--ignore') o.ignore.push(val());
    else if (a === '--verbose') o.verbose = true;
    else if (a === '--print') o.print = true;
    else if (a === '--replay') o.replay = path.resolve(val());
    else if (a === '-h' || a === '--help') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(o.seed)) throw new Error('--seed wants an integer');
  return o;
}

/** @typedef {ReturnType<typeof parseArgs>} Options */
/** @typedef {import('./lib/generate.mjs').Case} Case */

/**
 * A scenario file's sends, closes and half-closes as a case (expectations,
 * waits and c0 are left to the lockstep comparison).
 * @param {string} file @returns {Case}
 */
function caseFromScenario(file) {
  const sc = parseScenario(path.basename(file), readFileSync(file, 'latin1'));
  /** @type {import('./lib/generate.mjs').Step[]} */
  const steps = [];
  for (const st of sc.steps) {
    if (st.op === 'send' && st.conn !== 'c0') {
      steps.push({ op: 'send', conn: st.conn, chunks: [Buffer.concat(st.data.parts.flatMap((p) => Array(p.times).fill(p.bytes)))] });
    } else if ((st.op === 'close' || st.op === 'halfclose') && st.conn !== 'c0') steps.push({ op: st.op, conn: st.conn });
  }
  const z = sc.args.indexOf('-z');
  const maxJobSize = z >= 0 ? Number(sc.args[z + 1]) : 65535;
  return { seed: 0, args: sc.args, maxJobSize, binlog: sc.args.includes('-b'), steps };
}

/** @param {Options} o @param {number} index @returns {Case} */
function makeCase(o, index) {
  if (o.replay) return caseFromScenario(o.replay);
  const seed = caseSeed(o.seed, index);
  const steps = o.steps || 20 + (seed % 101);
  return generateCase(seed, steps);
}

/** Runs a case on a fresh pair of servers. @param {Options} o @param {Case} c @param {Promise<ServerPair>} [pending] */
async function runFresh(o, c, pending) {
  const pair = await (pending ?? new ServerPair(o, c.args).start());
  try {
    const res = await runCase(c, pair.ports, { ignore: o.ignore });
    return { ...res, stderr: pair.stderr() };
  } finally {
    await pair.stop();
  }
}

/** @param {Options} o @param {Case} c */
function startPair(o, c) {
  const p = new ServerPair(o, c.args).start();
  p.catch(() => {}); // awaited later; an early failure must not be unhandled
  return p;
}

/**
 * Confirms, shrinks and reports a divergence. Returns true when it
 * reproduces (a real divergence), false when it does not (timing).
 * @param {Options} o @param {Case} c @param {number} index @param {NonNullable<import('./lib/lockstep.mjs').CaseResult['diff']>} diff
 */
async function investigate(o, c, index, diff) {
  console.log(`fuzz: case ${index} (seed ${o.seed}) diverges at step ${diff.step} on ${diff.conn}: ${diff.sig}`);
  console.log(`  reference:    ${diff.ref.slice(0, 600)}`);
  console.log(`  tsbeanstalkd: ${diff.tsb.slice(0, 600)}`);
  const truncated = { ...c, steps: c.steps.slice(0, diff.step + 1) };
  let again = 0;
  for (let k = 0; k < 2; k++) if ((await runFresh(o, truncated)).diff?.sig === diff.sig) again++;
  if (again === 0) {
    console.log('fuzz: it did not happen again in 2 runs: timing-dependent, not counted (look at it if it recurs)');
    return false;
  }
  const t0 = Date.now();
  const { steps, runs } = await shrinkSteps(truncated.steps, async (candidate) => {
    // The same divergence, not just any: a smaller case must not trade it for another.
    const r = await runFresh(o, { ...c, steps: candidate });
    return r.diff?.sig === diff.sig;
  }, { maxRuns: 400, deadline: t0 + o.shrinkSeconds * 1000 });
  const small = { ...c, steps };
  // The reference's replies to the shrunk case, up to the step that differs.
  let res = await runFresh(o, small);
  for (let k = 0; k < 2 && res.diff?.sig !== diff.sig; k++) res = await runFresh(o, small);
  let final = small;
  if (res.diff?.sig !== diff.sig) {
    final = truncated;
    res = await runFresh(o, truncated);
  }
  console.log(`fuzz: shrunk ${truncated.steps.length} steps to ${final.steps.length} in ${runs} runs (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  if (res.diff) {
    console.log(`  reference:    ${res.diff.ref.slice(0, 600)}`);
    console.log(`  tsbeanstalkd: ${res.diff.tsb.slice(0, 600)}`);
  }
  const name = `fuzz_${c.seed}`;
  const text = toScenario(final, res.records, {
    name, note: `tsbeanstalkd differs from the reference at the last step (run seed ${o.seed}, case ${index})`,
  });
  console.log(`\n----- reproducer: save as conformance/scenarios/<group>/${name}.txt -----\n${text}----- end -----`);
  const dir = o.save || mkdtempSync(path.join(os.tmpdir(), 'tsbfuzz-repro-'));
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `${name}.txt`), text);
  const check = (/** @type {string} */ server, /** @type {string} */ flavor) => spawnSync(process.execPath, [
    path.join(ROOT, 'conformance/run.mjs'), '--dir', dir, '--filter', name, '--server', server, '--flavor', flavor,
  ], { encoding: 'utf8', cwd: ROOT });
  const r = check(o.ref, 'ref');
  const t = check(o.tsb, 'tsb');
  console.log(`fuzz: the reproducer, run by conformance/run.mjs: reference ${r.status === 0 ? 'passes' : 'FAILS'}, tsbeanstalkd ${t.status === 0 ? 'passes' : 'fails'}`);
  if (r.status !== 0) console.log(r.stdout.trim());
  if (!o.save) rmSync(dir, { recursive: true, force: true });
  else console.log(`fuzz: saved to ${path.join(dir, `${name}.txt`)}`);
  return true;
}

async function main() {
  const o = argsOrExit(parseArgs, USAGE);
  const refCmd = splitWords(o.ref)[0] ?? '';
  if (spawnSync(refCmd, ['-v'], { stdio: 'ignore' }).status !== 0) {
    if (process.env.CI) {
      console.error(`fuzz: the reference (${refCmd}) is not installed; CI needs it (apt-get install -y beanstalkd)`);
      process.exit(1);
    }
    console.log(`fuzz: the reference (${refCmd}) is not installed, fuzzing skipped (apt-get install -y beanstalkd)`);
    return;
  }
  if (o.replay) console.log(`fuzz: replaying ${o.replay}`);
  else if (o.only >= 0) console.log(`fuzz: seed ${o.seed}, case ${o.only}`);
  else console.log(`fuzz: seed ${o.seed}, up to ${o.seconds} s (replay: node conformance/fuzz/run.mjs --seed ${o.seed})`);
  const started = Date.now();
  const until = started + o.seconds * 1000;
  let cases = 0;
  let steps = 0;
  let divergences = 0;
  let timing = 0;
  if (o.replay) o.only = 0;
  const first = o.only >= 0 ? o.only : 0;
  const last = o.only >= 0 ? o.only : first + o.cases - 1;
  let next = makeCase(o, first);
  /** @type {Promise<ServerPair> | undefined} */
  let pending = startPair(o, next);
  for (let index = first; index <= last; index++) {
    const c = next;
    const pair = pending;
    const more = index < last && Date.now() < until;
    // The next case's servers start while this one runs.
    pending = undefined;
    if (more) {
      next = makeCase(o, index + 1);
      pending = startPair(o, next);
    }
    const res = await runFresh(o, c, pair);
    cases++;
    steps += res.records.length;
    if (o.print) console.log(toScenario(c, res.records, { name: `fuzz_${c.seed}`, note: `case ${index} of seed ${o.seed}` }));
    if (o.verbose) console.log(`case ${index}: ${c.steps.length} steps, ${c.args.join(' ') || 'default'}, ${res.ms} ms${res.diff ? ', DIVERGES' : ''}`);
    if (res.modelError) {
      console.log(`fuzz: case ${index}: the fuzzer's framing model is wrong (a fuzzer bug): ${res.modelError}`);
      if (res.stderr) console.log(res.stderr);
      divergences++;
      if (!o.keepGoing) break;
    } else if (res.diff) {
      console.log(`\nfuzz: after ${((Date.now() - started) / 1000).toFixed(1)} s, ${cases} cases:`);
      if (await investigate(o, c, index, res.diff)) divergences++;
      else timing++;
      if (divergences > 0 && !o.keepGoing) break;
    }
    if (!more) break;
  }
  if (pending !== undefined) await pending.then((p) => p.stop(), () => {});
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const replay = o.replay ? `node conformance/fuzz/run.mjs --replay ${o.replay}`
    : o.only >= 0 ? `node conformance/fuzz/run.mjs --seed ${o.seed} --case ${o.only}`
      : `node conformance/fuzz/run.mjs --seed ${o.seed} --cases ${cases}`;
  console.log(`fuzz: seed ${o.seed}, ${cases} cases, ${steps} steps, ${divergences} divergences${timing ? `, ${timing} not reproducible` : ''} in ${secs} s (replay: ${replay})`);
  process.exitCode = divergences ? 1 : 0;
}

/** Kills every server and removes every directory still there. */
function cleanup() {
  killAllServers();
  for (const d of liveDirectories()) rmSync(d, { recursive: true, force: true });
}

onInterrupt('fuzz', cleanup);

main().catch((e) => {
  cleanup();
  console.error(e);
  process.exit(2);
});

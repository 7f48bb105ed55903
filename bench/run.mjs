#!/usr/bin/env node
// @ts-check
/**
 * Runs named scenarios (bench/scenarios.mjs) with bench/loadgen.mjs against
 * a fresh server per run, and in compare mode against two servers in
 * alternation (A B, B A, A B, ... per scenario), then prints medians and
 * A/B ratios.
 *
 *   node bench/run.mjs [--quick] [--server "CMD"] [scenario|group|glob ...]
 *   node bench/run.mjs --compare ["CMD A" "CMD B"] [--rounds N] [--quick] [scenario ...]
 *   node bench/run.mjs --list
 *
 * A server command is a template: {PORT} becomes a free loopback port, {DIR}
 * a fresh empty directory (removed afterwards). It is split on blanks
 * (quotes group) and spawned directly, without a shell, so the pid measured
 * is the server's own: the command must be the server, not a wrapper.
 * A template with {TLSPORT} (a second free port) gets test certificates and
 * a token file ({CERT} {KEY} {CA} {TOKENS}), and the generator drives that
 * TLS port, sending `auth` first when the template has {TOKENS}; its setup
 * checks and stats stay on the plaintext {PORT}.
 */
import { execFileSync, spawn } from 'node:child_process'
import { appendFileSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { makeTestCerts } from '../conformance/lib/certs.mjs'
import { probe } from './lib/ctl.mjs'
import { procStatusKb } from './lib/proc.mjs'
import { SCENARIOS, select } from './scenarios.mjs'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '..')
const TSB = 'node bin/tsbeanstalkd.js -l 127.0.0.1 -p {PORT}'
const REF = 'beanstalkd -l 127.0.0.1 -p {PORT}'
/** tsbeanstalkd with a TLS port that asks for a token beside its plaintext one. */
const TSB_TLS = `${TSB} --tls-port {TLSPORT} --tls-cert {CERT} --tls-key {KEY} --auth-file {TOKENS} --auth-listeners tls`
/** Named pairs for --compare: what A is measured against. */
const PRESETS = {
  /** TLS with a token against plaintext. */
  tls: { A: TSB_TLS, B: TSB, loris: 0 },
  /** Clients on the TLS port with a slowloris beside them (A) and without (B). */
  slowloris: { A: TSB_TLS, B: TSB_TLS, loris: 1000 },
}

const HELP = `usage:
  node bench/run.mjs [options] [scenario|group|glob ...]                   one server (default tsbeanstalkd)
  node bench/run.mjs --compare ["CMD A" "CMD B"] [options] [scenario ...]  A vs B, ratios A/B
options:
  --server "CMD"      the server of a single run (default: ${TSB})
  --compare [A B]     default A: ${TSB}
                              B: ${REF}
  --compare tls       A: tsbeanstalkd over TLS, after auth; B: the same over plaintext
                      (A: ${TSB_TLS})
  --compare slowloris A: clients over TLS with --slowloris N beside them; B: the same without
  --slowloris N       side A holds N connections to {TLSPORT} that never finish their TLS
                      handshake (or, with --slowloris-kind auth, never authenticate) during
                      each measured stage (preset slowloris: 1000)
  --quick             fewer jobs, 1 round, shorter warm-up (a smoke check)
  --rounds N          rounds per scenario (compare: default 3, single: 1)
  --warmup N          put/reserve/delete cycles before each measured run (20000; quick 3000)
  --threads T         loadgen worker threads for put/reserve-delete/cycle/put-delete/fill (1)
  --quiet-wait S      before each run wait up to S s for the machine to be quiet (full 5, quick 0)
  --quiet-pct P       "quiet": other processes below P % of one core (25)
  --noisy-pct P       a run during which others used more than P % of a core is noisy (30);
                      it is repeated once (--retries 1; quick 0) and flagged if still noisy
  --out DIR           raw results and logs (default /tmp/tsbeanstalkd-bench/<time>)
  --list              list the scenarios
groups: core pipelined latency body tubes conns memory restart restart-10m drain durable all (all: not restart-10m)`

// ---------------------------------------------------------------- arguments

const argv = process.argv.slice(2)
const opt = {
  compare: /** @type {null | [string, string]} */ (null),
  server: TSB,
  quick: false,
  rounds: 0,
  warmup: -1,
  threads: 1,
  quietWait: -1,
  quietPct: 25,
  noisyPct: 30,
  retries: -1,
  out: '',
  list: false,
  loris: -1,
  lorisKind: 'handshake',
}
/** @type {string[]} */
const words = []
for (let i = 0; i < argv.length; i++) {
  const a = /** @type {string} */ (argv[i])
  const next = () => {
    const v = argv[++i]
    if (v === undefined) die(`${a} needs a value`)
    return /** @type {string} */ (v)
  }
  switch (a) {
    case '--compare': {
      const x = argv[i + 1]
      const y = argv[i + 2]
      const preset = x === undefined ? undefined : /** @type {Record<string, typeof PRESETS.tls>} */ (PRESETS)[x]
      if (preset !== undefined) {
        opt.compare = [preset.A, preset.B]
        if (opt.loris < 0) opt.loris = preset.loris
        i += 1
      } else if (x !== undefined && y !== undefined && x.includes('{PORT}') && y.includes('{PORT}')) {
        opt.compare = [x, y]
        i += 2
      } else opt.compare = [TSB, REF]
      break
    }
    case '--slowloris':
      opt.loris = Number(next())
      break
    case '--slowloris-kind':
      opt.lorisKind = next()
      break
    case '--server':
      opt.server = next()
      break
    case '--quick':
      opt.quick = true
      break
    case '--rounds':
      opt.rounds = Number(next())
      break
    case '--warmup':
      opt.warmup = Number(next())
      break
    case '--threads':
      opt.threads = Number(next())
      break
    case '--quiet-wait':
      opt.quietWait = Number(next())
      break
    case '--quiet-pct':
      opt.quietPct = Number(next())
      break
    case '--noisy-pct':
      opt.noisyPct = Number(next())
      break
    case '--retries':
      opt.retries = Number(next())
      break
    case '--out':
      opt.out = next()
      break
    case '--list':
      opt.list = true
      break
    case '-h':
    case '--help':
      process.stdout.write(HELP + '\n')
      process.exit(0)
      break
    default:
      if (a.startsWith('-')) die(`unknown option ${a}\n${HELP}`)
      words.push(a)
  }
}

/** @param {string} msg @returns {never} */
function die(msg) {
  process.stderr.write(`run.mjs: ${msg}\n`)
  process.exit(2)
}

if (opt.list) {
  for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(22)} ${s.group.padEnd(9)} ${s.what}\n`)
  process.exit(0)
}

let scenarios
try {
  scenarios = select(words)
} catch (e) {
  die(/** @type {Error} */ (e).message)
}
const rounds = opt.rounds > 0 ? opt.rounds : opt.quick ? 1 : opt.compare ? 3 : 1
const warmup = opt.warmup >= 0 ? opt.warmup : opt.quick ? 3000 : 20000
const quietWait = opt.quietWait >= 0 ? opt.quietWait : opt.quick ? 0 : 5
const retries = opt.retries >= 0 ? opt.retries : opt.quick ? 0 : 1
const servers = opt.compare ? { A: opt.compare[0], B: opt.compare[1] } : { A: opt.server }
const OUT = opt.out || path.join(os.tmpdir(), 'tsbeanstalkd-bench', new Date().toISOString().replace(/[:.]/g, '-'))
mkdirSync(OUT, { recursive: true })
const RES = path.join(OUT, 'results.txt')
writeFileSync(RES, '')
const loris = Math.max(0, opt.loris)
if (loris > 0 && !(servers.A ?? '').includes('{TLSPORT}')) die('--slowloris needs a {TLSPORT} in the A server')
if (opt.lorisKind !== 'handshake' && opt.lorisKind !== 'auth') die('--slowloris-kind is handshake or auth')
/** Test certificates and a token for templates with {TLSPORT}, made once. */
const tlsFiles = Object.values(servers).some((c) => c.includes('{TLSPORT}')) ? makeTestCerts(mkdtempSync(path.join(OUT, 'tls-'))) : null

for (const [who, cmd] of Object.entries(servers)) {
  const prog = splitCmd(cmd)[0] ?? ''
  if (prog === 'node' && splitCmd(cmd).some((w) => w.endsWith('bin/tsbeanstalkd.js')) && !existsSync(path.join(ROOT, 'dist', 'cli.js')))
    die(`${who}: dist/ is missing: run npm run build first`)
  if (!prog.includes('/') && !whichSync(prog)) die(`${who}: '${prog}' not found on PATH (the reference: apt-get install -y beanstalkd)`)
}

// ---------------------------------------------------------------- servers

/** Splits a command on blanks; '...' and "..." group. @param {string} cmd */
function splitCmd(cmd) {
  /** @type {string[]} */
  const out = []
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g
  let m
  while ((m = re.exec(cmd))) out.push(m[1] ?? m[2] ?? m[3] ?? '')
  return out
}

/** @param {string} prog */
function whichSync(prog) {
  for (const d of (process.env.PATH ?? '').split(':')) if (d && existsSync(path.join(d, prog))) return true
  return false
}

/** A free loopback port (bound and released; the server takes it right after). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const p = /** @type {net.AddressInfo} */ (s.address()).port
      s.close(() => resolve(p))
    })
  })
}

/** @typedef {{proc: import('node:child_process').ChildProcess, pid: number, port: number, tlsPort: number, dir: string, exited: boolean, log: string}} Srv */
/** @type {Set<Srv>} */
const live = new Set()
/** @type {Set<import('node:child_process').ChildProcess>} */
const liveGens = new Set()

/**
 * @param {string} tmpl @param {string[]} flags @param {string} tag
 * @param {{dir?: string, probe?: boolean}} [o] an existing {DIR} (a restart), and whether to wait until it answers
 * @returns {Promise<Srv>}
 */
async function startServer(tmpl, flags, tag, o = {}) {
  const port = await freePort()
  const tlsPort = tmpl.includes('{TLSPORT}') ? await freePort() : 0
  const dir = o.dir ?? mkdtempSync(path.join(OUT, 'srvdir-'))
  const fill = (/** @type {string} */ w) => {
    const t = tlsFiles
    const w2 = w.replaceAll('{PORT}', `${port}`).replaceAll('{DIR}', dir).replaceAll('{TLSPORT}', `${tlsPort}`)
    return t === null ? w2 : w2.replaceAll('{CERT}', t.cert).replaceAll('{KEY}', t.key).replaceAll('{CA}', t.ca).replaceAll('{TOKENS}', t.tokens)
  }
  const words = [...splitCmd(tmpl), ...flags].map(fill)
  const log = path.join(OUT, `server-${tag}.log`)
  const fd = openSync(log, 'w')
  const proc = spawn(/** @type {string} */ (words[0]), words.slice(1), { cwd: ROOT, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  /** @type {Srv} */
  const srv = { proc, pid: proc.pid ?? 0, port, tlsPort, dir, exited: false, log }
  live.add(srv)
  proc.on('exit', () => {
    srv.exited = true
  })
  proc.on('error', () => {
    srv.exited = true
  })
  if (o.probe === false) return srv
  const ok = await probe('127.0.0.1', port, 20000, () => srv.exited)
  if (!ok) {
    await stopServer(srv)
    throw new Error(`server did not come up: ${words.join(' ')} (see ${log})`)
  }
  return srv
}

/** @param {Srv} srv @param {{keepDir?: boolean, signal?: NodeJS.Signals}} [o] */
async function stopServer(srv, o = {}) {
  if (!srv.exited) {
    srv.proc.kill(o.signal ?? 'SIGTERM')
    const t0 = Date.now()
    while (!srv.exited && Date.now() - t0 < 5000) await sleep(20)
    if (!srv.exited) {
      srv.proc.kill('SIGKILL')
      while (!srv.exited && Date.now() - t0 < 8000) await sleep(20)
    }
  }
  if (!o.keepDir) rmSync(srv.dir, { recursive: true, force: true })
  live.delete(srv)
}

function killAll() {
  for (const g of liveGens) g.kill('SIGKILL')
  for (const s of live) {
    if (!s.exited) s.proc.kill('SIGKILL')
    rmSync(s.dir, { recursive: true, force: true })
  }
}
for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.on(sig, () => {
    killAll()
    process.exit(130)
  })
}
process.on('exit', killAll)

/** @param {number} ms */
function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms))
}

// ---------------------------------------------------------------- machine noise

function cpuTimes() {
  const v = (readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? '').trim().split(/\s+/).slice(1).map(Number)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
  return { total, idle: (v[3] ?? 0) + (v[4] ?? 0) }
}
/** busy CPU of the whole machine over `ms`, in % of one core */
async function machineBusyPct(ms = 300) {
  const a = cpuTimes()
  await sleep(ms)
  const b = cpuTimes()
  const tot = b.total - a.total
  return tot > 0 ? (100 * os.availableParallelism() * (tot - (b.idle - a.idle))) / tot : 0
}
async function waitQuiet() {
  if (quietWait <= 0) return
  const t0 = Date.now()
  let said = false
  for (;;) {
    const busy = await machineBusyPct()
    if (busy <= opt.quietPct) return
    if (Date.now() - t0 > quietWait * 1000) {
      log(`  (machine still busy at ${busy.toFixed(0)}% of a core after ${quietWait}s; running anyway)`)
      return
    }
    if (!said) log(`  (machine busy at ${busy.toFixed(0)}% of a core; waiting up to ${quietWait}s)`)
    said = true
    await sleep(500)
  }
}

// ---------------------------------------------------------------- one run

/** @param {string} s */
function log(s) {
  process.stdout.write(s + '\n')
}

/** @param {string} line @returns {Record<string, string>} */
function parseLine(line) {
  /** @type {Record<string, string>} */
  const kv = {}
  for (const w of line.trim().split(/\s+/)) {
    const i = w.indexOf('=')
    if (i > 0) kv[w.slice(0, i)] = w.slice(i + 1)
  }
  return kv
}

/**
 * @param {import('./scenarios.mjs').Scenario} sc @param {string} who @param {number} round
 * @returns {Promise<Record<string, string>>}
 */
async function runOne(sc, who, round) {
  const tmpl = /** @type {Record<string, string>} */ (servers)[who] ?? ''
  const tag = `${who}-${sc.name}-${round}`
  for (let attempt = 0; ; attempt++) {
    await waitQuiet()
    /** @type {Record<string, string>} */
    let kv
    let srv
    const tRun = Date.now()
    try {
      srv = await startServer(tmpl, flagsFor(tmpl, sc), tag)
    } catch (e) {
      kv = { scenario: sc.name, label: sc.name, failed: 'server_start' }
      log(`  ${sc.name} ${who} round ${round}: ${/** @type {Error} */ (e).message}`)
      record(who, round, attempt, 0, kv)
      return kv
    }
    const n = opt.quick ? sc.quick : sc.n
    const maxSecs = sc.maxSecs ?? (opt.quick ? 30 : 60)
    const args = [
      path.join(HERE, 'loadgen.mjs'),
      ...(opt.quick && sc.quickArgs ? sc.quickArgs : sc.args),
      '-n', `${n}`,
      '-P', `${srv.port}`,
      '--pid', `${srv.pid}`,
      '--max-secs', `${maxSecs}`,
      '--warmup', `${Math.min(warmup, sc.warmup ?? warmup)}`,
      '--threads', `${opt.threads}`,
      '--label', sc.name,
      ...(srv.tlsPort > 0 && tlsFiles !== null ? ['--tls-port', `${srv.tlsPort}`, '--tls-ca', tlsFiles.ca] : []),
      ...(srv.tlsPort > 0 && tlsFiles !== null && tmpl.includes('{TOKENS}') ? ['--auth-file', tlsFiles.tokens] : []),
      ...(who === 'A' && loris > 0 ? ['--slowloris', `${loris}`, '--slowloris-kind', opt.lorisKind] : []),
    ]
    const errLog = path.join(OUT, `loadgen-${tag}.err`)
    const line = await runGen(args, errLog, (maxSecs + 60) * 1000)
    const alive = !srv.exited
    kv = line ? parseLine(line) : { scenario: sc.name, label: sc.name, failed: 'loadgen_no_output' }
    if (sc.restart && alive && !kv.failed) {
      await stopServer(srv, { keepDir: true, signal: 'SIGKILL' })
      Object.assign(kv, await restartOnce(tmpl, sc, srv.dir, `${tag}-restart`, Number(kv.ops ?? 0), maxSecs))
      // the queue's RSS when it was built live (the fill's, after its settle) against after the replay
      if (kv.replay_rss_mb) kv.rss_vs_live = (Number(kv.replay_rss_mb) / Number(kv.rss_mb)).toFixed(2)
      if (kv.replay_hwm_mb) kv.hwm_vs_live = (Number(kv.replay_hwm_mb) / Number(kv.rss_mb)).toFixed(2)
    }
    await stopServer(srv)
    if (!alive) kv.server_alive = '0'
    kv.wall_s = ((Date.now() - tRun) / 1000).toFixed(2)
    const other = Number(kv.other_cpu_pct ?? 0)
    const noisy = other > opt.noisyPct
    const discard = noisy && attempt < retries ? 1 : 0
    record(who, round, attempt, discard, kv)
    log(`  ${sc.name.padEnd(22)} ${who} r${round}: ${brief(kv)}${discard ? '  -> noisy, repeating' : noisy ? '  (noisy)' : ''}`)
    if (!discard) return kv
    await sleep(300)
  }
}

/**
 * A scenario's server flags for this server: its `flags`, plus its
 * `tsbFlags` when the server is tsbeanstalkd (an engine the reference has
 * not: the reference then runs its own binlog on the same queue).
 * @param {string} tmpl @param {import('./scenarios.mjs').Scenario} sc
 */
function flagsFor(tmpl, sc) {
  const tsb = splitCmd(tmpl).some((w) => w.endsWith('bin/tsbeanstalkd.js'))
  return [...(sc.flags ?? []), ...(tsb ? (sc.tsbFlags ?? []) : [])]
}

/**
 * The second half of a restart scenario: the filled server was killed (-9);
 * start it again on the same {DIR} and time from the spawn to the first
 * reply (a `stats`, sent as soon as a connection is accepted), then read
 * the new process's RSS and peak RSS 1 s later, and check that every job
 * came back.
 * @param {string} tmpl @param {import('./scenarios.mjs').Scenario} sc @param {string} dir @param {string} tag
 * @param {number} jobs @param {number} maxSecs
 * @returns {Promise<Record<string, string>>}
 */
async function restartOnce(tmpl, sc, dir, tag, jobs, maxSecs) {
  const t0 = performance.now()
  const srv = await startServer(tmpl, flagsFor(tmpl, sc), tag, { dir, probe: false })
  try {
    const reply = await firstReply(srv, t0 + maxSecs * 1000)
    const secs = (performance.now() - t0) / 1000
    if (reply === null) return { failed: 'restart_no_reply' }
    await sleep(1000)
    const rss = procStatusKb(srv.pid, 'VmRSS') / 1024
    const hwm = procStatusKb(srv.pid, 'VmHWM') / 1024
    const ready = Number(/current-jobs-ready: (\d+)/.exec(reply)?.[1] ?? -1)
    return {
      restart_s: secs.toFixed(2),
      replay_rss_mb: rss.toFixed(1),
      replay_hwm_mb: hwm.toFixed(1),
      restart_jobs: `${ready}`,
      restart_check: ready === jobs ? 'ok' : 'FAIL',
    }
  } finally {
    await stopServer(srv, { keepDir: true })
  }
}

/**
 * Connects (retrying while nothing listens), sends `stats` and waits for the whole reply.
 * @param {Srv} srv @param {number} deadline performance.now() ms @returns {Promise<string | null>}
 */
async function firstReply(srv, deadline) {
  while (performance.now() < deadline && !srv.exited) {
    const got = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: srv.port })
      let buf = ''
      const t = setTimeout(() => s.destroy(), Math.max(1, deadline - performance.now()))
      s.setEncoding('latin1')
      s.on('connect', () => s.write('stats\r\n'))
      s.on('data', (d) => {
        buf += d
        const m = /^OK (\d+)\r\n/.exec(buf)
        if (m && buf.length >= m[0].length + Number(m[1]) + 2) {
          clearTimeout(t)
          s.destroy()
          resolve(buf)
        }
      })
      s.on('error', () => undefined)
      s.on('close', () => {
        clearTimeout(t)
        resolve(null)
      })
    })
    if (got !== null) return /** @type {string} */ (got)
    await sleep(10)
  }
  return null
}

/** @param {string} who @param {number} round @param {number} attempt @param {number} discard @param {Record<string, string>} kv */
function record(who, round, attempt, discard, kv) {
  const pre = `server=${who} round=${round} attempt=${attempt} discard=${discard}`
  appendFileSync(RES, `${pre} ${Object.entries(kv).map(([k, v]) => `${k}=${v}`).join(' ')}\n`)
}

const BRIEF = ['ops_per_s', 'p50_us', 'p99_us', 'srv_us_per_op', 'gen_us_per_op', 'srv_cpu_pct', 'gen_cpu_pct', 'other_cpu_pct', 'rss_mb']
/** @param {Record<string, string>} kv */
function brief(kv) {
  if (kv.failed) return `FAILED ${kv.failed}`
  const extra = ['bytes_per_job', 'kb_per_idle_conn', 'srv_us_per_cmd', 'restart_s', 'replay_rss_mb', 'replay_hwm_mb', 'rss_vs_live', 'drain_rss_10s_mb', 'drain_vs_idle', 'verify', 'check', 'errors', 'complete'].filter((k) => kv[k] !== undefined)
  return [...BRIEF, ...extra].filter((k) => kv[k] !== undefined).map((k) => `${k}=${kv[k]}`).join(' ')
}

/** @param {string[]} args @param {string} errLog @param {number} timeoutMs @returns {Promise<string>} */
function runGen(args, errLog, timeoutMs) {
  return new Promise((resolve) => {
    const fd = openSync(errLog, 'w')
    const p = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', fd] })
    closeSync(fd)
    liveGens.add(p)
    let out = ''
    const so = /** @type {import('node:stream').Readable} */ (p.stdout)
    so.setEncoding('utf8')
    so.on('data', (d) => (out += d))
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs)
    p.on('close', () => {
      clearTimeout(t)
      liveGens.delete(p)
      resolve(out.trim().split('\n').filter((l) => l.includes('scenario=')).pop() ?? '')
    })
  })
}

// ---------------------------------------------------------------- summary

/** @param {number[]} v */
function median(v) {
  const a = v.filter((x) => Number.isFinite(x)).sort((x, y) => x - y)
  if (a.length === 0) return NaN
  const m = a.length >> 1
  return a.length % 2 ? /** @type {number} */ (a[m]) : (/** @type {number} */ (a[m - 1]) + /** @type {number} */ (a[m])) / 2
}

/** @param {number} v */
function fmt(v) {
  if (!Number.isFinite(v)) return '-'
  const a = Math.abs(v)
  if (a >= 10000) return v.toFixed(0)
  if (a >= 100) return v.toFixed(1)
  return v.toFixed(2)
}

/** @param {number} v */
function fmtRatio(v) {
  return Number.isFinite(v) ? `${v.toFixed(2)}x` : '-'
}

/** @param {Record<string, string>} kv */
function problems(kv) {
  /** @type {string[]} */
  const p = []
  if (kv.failed) p.push(kv.failed)
  else {
    if (kv.complete !== '1') p.push('incomplete')
    if (kv.errors && kv.errors !== '0') p.push(`errors=${kv.errors}`)
    if (kv.verify === 'FAIL') p.push(`verify=FAIL(${kv.verify_got ?? ''})`)
    if (kv.check === 'FAIL') p.push(`check=FAIL(${kv.check_why ?? ''})`)
    if (kv.restart_check === 'FAIL') p.push(`restart_check=FAIL(${kv.restart_jobs ?? ''} jobs)`)
    if (kv.server_alive === '0') p.push('server_died')
  }
  return p
}

const BASE_METRICS = ['ops_per_s', 'p50_us', 'p99_us', 'srv_us_per_op', 'gen_us_per_op', 'srv_cpu_pct', 'gen_cpu_pct', 'rss_mb', 'other_cpu_pct']
/** With --slowloris: held at the end of the stage, closed by the server meanwhile, server KB each. */
const LORIS_METRICS = ['loris_held_end', 'loris_closed', 'loris_kb_per_conn']

/**
 * @param {import('./scenarios.mjs').Scenario} sc
 * @param {Record<string, Array<Record<string, string>>>} res who -> rounds
 */
function summarize(sc, res) {
  const whos = Object.keys(servers)
  const metrics = [...BASE_METRICS, ...(sc.metrics ?? []), ...(loris > 0 ? LORIS_METRICS : [])]
  /** @type {string[]} */
  const lines = []
  const head = opt.compare
    ? `${'metric'.padEnd(18)} ${'A median'.padStart(10)} ${'B median'.padStart(10)} ${'A/B'.padStart(7)} ${'pair A/B'.padStart(9)} ${'pair range'.padStart(13)}`
    : `${'metric'.padEnd(18)} ${'median'.padStart(10)} ${'min'.padStart(10)} ${'max'.padStart(10)}`
  lines.push(head)
  /** @type {Record<string, {a: number, b: number, ratio: number}>} */
  const meds = {}
  for (const m of metrics) {
    /** @type {Record<string, number[]>} */
    const vals = {}
    for (const w of whos) vals[w] = (res[w] ?? []).map((kv) => (kv.failed ? NaN : Number(kv[m])))
    const a = median(vals.A ?? [])
    if (!opt.compare) {
      const v = (vals.A ?? []).filter(Number.isFinite)
      if (v.length === 0) continue
      lines.push(`${m.padEnd(18)} ${fmt(a).padStart(10)} ${fmt(Math.min(...v)).padStart(10)} ${fmt(Math.max(...v)).padStart(10)}`)
      meds[m] = { a, b: NaN, ratio: NaN }
      continue
    }
    const b = median(vals.B ?? [])
    if (!Number.isFinite(a) && !Number.isFinite(b)) continue
    const pairs = (vals.A ?? []).map((x, i) => x / (vals.B?.[i] ?? NaN)).filter(Number.isFinite)
    const ratio = a / b
    meds[m] = { a, b, ratio }
    const range = pairs.length ? `${Math.min(...pairs).toFixed(2)}..${Math.max(...pairs).toFixed(2)}` : '-'
    lines.push(
      `${m.padEnd(18)} ${fmt(a).padStart(10)} ${fmt(b).padStart(10)} ${fmtRatio(ratio).padStart(7)} ${fmtRatio(median(pairs)).padStart(9)} ${range.padStart(13)}`,
    )
  }
  /** @type {string[]} */
  const flags = []
  for (const w of whos) {
    const rr = res[w] ?? []
    rr.forEach((kv, i) => {
      const p = problems(kv)
      if (p.length) flags.push(`${w} r${i + 1}: ${p.join(',')}`)
      if (Number(kv.other_cpu_pct ?? 0) > opt.noisyPct) flags.push(`${w} r${i + 1}: noisy (others used ${kv.other_cpu_pct}% of a core)`)
      if (w === 'A' && loris > 0 && !kv.failed && Number(kv.loris_held_end ?? 0) < loris) flags.push(`${w} r${i + 1}: slowloris held ${kv.loris_held_end ?? 0} of ${loris} at the end`)
    })
  }
  return { lines, meds, flags }
}

// ---------------------------------------------------------------- main

/** What was measured: the commit, uncommitted changes, and when dist/ was built. */
function revision() {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() ? '+uncommitted-src' : ''
    const built = existsSync(path.join(ROOT, 'dist', 'cli.js')) ? statSync(path.join(ROOT, 'dist', 'cli.js')).mtime.toISOString() : 'none'
    return `${head}${dirty} dist=${built}`
  } catch {
    return 'unknown'
  }
}
const REV = revision()
log(`results: ${RES}`)
log(`revision: ${REV}`)
for (const [w, c] of Object.entries(servers)) log(`${w}: ${c}${w === 'A' && loris > 0 ? ` + slowloris ${loris} (${opt.lorisKind})` : ''}`)
log(
  `scenarios: ${scenarios.map((s) => s.name).join(' ')}\nrounds=${rounds}${opt.compare ? ' order=ABBA' : ''} quick=${opt.quick} warmup=${warmup} threads=${opt.threads} nproc=${os.availableParallelism()} loadavg=${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(',')}`,
)
writeFileSync(
  path.join(OUT, 'meta.txt'),
  `date=${new Date().toISOString()}\nrevision=${REV}\n${Object.entries(servers).map(([w, c]) => `${w}=${c}`).join('\n')}\nscenarios=${scenarios.map((s) => s.name).join(' ')}\nrounds=${rounds} quick=${opt.quick} warmup=${warmup}\nargv=${argv.join(' ')}\n`,
)

const t0 = Date.now()
/** @type {Array<{sc: import('./scenarios.mjs').Scenario, sum: ReturnType<typeof summarize>}>} */
const all = []
for (const sc of scenarios) {
  const tsbOnly = sc.tsbFlags ? ` (tsbeanstalkd also: ${sc.tsbFlags.join(' ')})` : ''
  log(`\n== ${sc.name}: ${sc.what}${sc.flags ? ` [server flags: ${sc.flags.join(' ')}${tsbOnly}]` : ''}`)
  /** @type {Record<string, Array<Record<string, string>>>} */
  const res = { A: [], B: [] }
  for (let r = 1; r <= rounds; r++) {
    const order = opt.compare ? (r % 2 === 1 ? ['A', 'B'] : ['B', 'A']) : ['A']
    for (const w of order) {
      const kv = await runOne(sc, w, r)
      ;(res[w] ??= []).push(kv)
    }
  }
  const sum = summarize(sc, res)
  for (const l of sum.lines) log(`  ${l}`)
  for (const f of sum.flags) log(`  ! ${f}`)
  all.push({ sc, sum })
}

// the final table
/** @type {string[]} */
const T = []
const secs = (Date.now() - t0) / 1000
T.push(`revision: ${REV}`)
if (opt.compare) {
  T.push(`A = ${servers.A}`)
  T.push(`B = ${/** @type {{B: string}} */ (servers).B}`)
  T.push(`ratios are A/B of medians over ${rounds} round(s); ops/s > 1 is A faster; p99, CPU/op, bytes/job < 1 is A better`)
  T.push('')
  T.push(
    '| scenario | A ops/s | B ops/s | ops/s A/B | p99 µs A | p99 µs B | p99 A/B | CPU/op A/B | gen÷srv CPU A, B | other | notes |',
  )
  T.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|')
  for (const { sc, sum } of all) {
    const m = sum.meds
    const o = m.ops_per_s ?? { a: NaN, b: NaN, ratio: NaN }
    const p = m.p99_us ?? { a: NaN, b: NaN, ratio: NaN }
    const c = m.srv_us_per_op ?? { a: NaN, b: NaN, ratio: NaN }
    const gq = m.gen_us_per_op ?? { a: NaN, b: NaN, ratio: NaN }
    const gs = `${(gq.a / c.a).toFixed(2)}, ${(gq.b / c.b).toFixed(2)}`
    /** @type {string[]} */
    const other = []
    for (const k of ['bytes_per_job', 'kb_per_idle_conn', 'srv_us_per_cmd', 'p999_us', 'restart_s', 'replay_rss_mb', 'replay_hwm_mb', 'rss_vs_live', 'drain_rss_10s_mb', 'drain_vs_idle']) {
      const x = m[k]
      if (x && (sc.metrics ?? []).includes(k)) other.push(`${k} ${fmt(x.a)}/${fmt(x.b)} = ${fmtRatio(x.ratio)}`)
    }
    if (loris > 0) other.push(`slowloris: ${LORIS_METRICS.map((k) => `${k.slice(6)} ${fmt(m[k]?.a ?? NaN)}`).join(', ')}`)
    T.push(
      `| ${sc.name} | ${fmt(o.a)} | ${fmt(o.b)} | ${fmtRatio(o.ratio)} | ${fmt(p.a)} | ${fmt(p.b)} | ${fmtRatio(p.ratio)} | ${fmtRatio(c.ratio)} | ${gs} | ${other.join('; ')} | ${sum.flags.length ? sum.flags.length + ' flag(s)' : ''} |`,
    )
  }
} else {
  T.push(`server = ${servers.A}`)
  T.push('')
  T.push('| scenario | ops/s | p50 µs | p99 µs | server µs/op | gen µs/op | server CPU % | RSS MB | other | notes |')
  T.push('|---|---:|---:|---:|---:|---:|---:|---:|---|---|')
  for (const { sc, sum } of all) {
    const m = sum.meds
    /** @param {string} k */
    const g = (k) => fmt(m[k]?.a ?? NaN)
    /** @type {string[]} */
    const other = []
    for (const k of sc.metrics ?? []) if (m[k]) other.push(`${k} ${fmt(m[k].a)}`)
    T.push(
      `| ${sc.name} | ${g('ops_per_s')} | ${g('p50_us')} | ${g('p99_us')} | ${g('srv_us_per_op')} | ${g('gen_us_per_op')} | ${g('srv_cpu_pct')} | ${g('rss_mb')} | ${other.join('; ')} | ${sum.flags.length ? sum.flags.length + ' flag(s)' : ''} |`,
    )
  }
}
T.push('')
T.push(`${secs.toFixed(0)} s; raw results: ${RES}`)
log('\n' + T.join('\n'))
writeFileSync(path.join(OUT, 'summary.md'), T.join('\n') + '\n')
const bad = all.some(({ sum }) => sum.flags.some((f) => !f.includes('noisy')))
process.exit(bad ? 1 : 0)

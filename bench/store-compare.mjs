#!/usr/bin/env node
// @ts-check
/**
 * The persistence engines under the same flags: put+delete throughput
 * with N connections (default 10), each a closed loop (put, wait for
 * INSERTED, delete it, wait for DELETED), against `tsbeanstalkd -b DIR` with
 * `--store binlog` and `--store sqlite`, and with --pg-url also
 * `--store postgres` (a fresh schema per run, dropped after), at -F, -f 50
 * and -f 0.
 *
 *   npm run build && node bench/store-compare.mjs [--seconds 5] [--conns 10] [--body 100] [--dir /var/tmp]
 *       [--pg-url postgres://...] [--engines binlog,sqlite,postgres] [--levels F,50,0] [--replay JOBS]
 *
 * --replay JOBS measures restarts instead: each engine is filled with JOBS
 * jobs at -F, stopped, and started again; it prints the store's own replay
 * time (its "opened" log line) and the time from spawn to "listening".
 *
 * --dir is where the -b directories go (default: the OS temp directory); it
 * must be a real disk, not a tmpfs, or fsync costs nothing. Each run starts
 * a fresh server on 127.0.0.1, warms up for one second, measures, and stops
 * it with SIGTERM. Prints a Markdown table: pairs/s (one pair = one put and
 * one delete, two acknowledged state changes) and pair latency p50/p99.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BIN = path.join(ROOT, 'bin/tsbeanstalkd.js')

/** @param {string} name @param {number} dflt */
function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const SECONDS = arg('seconds', 5)
const CONNS = arg('conns', 10)
const BODY = arg('body', 100)
const dirArg = process.argv.indexOf('--dir')
const BASE = dirArg > 0 ? String(process.argv[dirArg + 1]) : os.tmpdir()
/** @param {string} name */
const strArg = (name) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? String(process.argv[i + 1]) : null
}
const PG_URL = strArg('pg-url')
const REPLAY = arg('replay', 0)

const ALL_LEVELS = [
  { key: 'F', name: '-F', flags: ['-F'] },
  { key: '50', name: '-f 50', flags: ['-f', '50'] },
  { key: '0', name: '-f 0', flags: ['-f', '0'] },
]
const levelKeys = (strArg('levels') ?? 'F,50,0').split(',')
const LEVELS = ALL_LEVELS.filter((l) => levelKeys.includes(l.key))
const ENGINES = (strArg('engines') ?? (PG_URL === null ? 'binlog,sqlite' : 'binlog,sqlite,postgres')).split(',')
if (ENGINES.includes('postgres') && PG_URL === null) throw new Error('--engines postgres needs --pg-url')
let schemas = 0

/** The flags that select `engine`, and what removes its data after. @param {string} engine */
function storeArgs(engine) {
  if (engine !== 'postgres') {
    const dir = fs.mkdtempSync(path.join(BASE, `tsb-bench-${engine}-`))
    return { args: ['-b', dir, '--store', engine], cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }) }
  }
  const schema = `tsb_bench_${process.pid}_${++schemas}`
  return {
    args: ['--store', 'postgres', '--pg-url', /** @type {string} */ (PG_URL), '--pg-schema', schema],
    cleanup: async () => {
      const { default: postgres } = await import('postgres')
      const { pgOptions } = await import('../dist/store/postgres/connect.js')
      const sql = postgres({ ...pgOptions(/** @type {string} */ (PG_URL)), onnotice: () => undefined })
      await sql.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await sql.end()
    },
  }
}

/** Starts a server and resolves with it, its port and its log so far. @param {string[]} args */
function startServer(args) {
  const child = spawn(process.execPath, [BIN, '-l', '127.0.0.1', '-p', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  return new Promise((resolve, reject) => {
    let err = ''
    const t = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 10_000)
    child.stderr.setEncoding('utf8').on('data', (/** @type {string} */ d) => {
      err += d
      const m = /"port":(\d+).*"msg":"listening"/.exec(err)
      if (m !== null) {
        clearTimeout(t)
        resolve({ child, port: Number(m[1]), log: err })
      }
    })
    child.on('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)))
  })
}

/**
 * One connection's closed loop until `until()` says stop; calls `done(ms)` per pair.
 * @param {number} port @param {() => boolean} until @param {(ms: number) => void} done
 */
function client(port, until, done) {
  const body = Buffer.alloc(BODY, 'x').toString('latin1')
  const put = `put 0 0 60 ${BODY}\r\n${body}\r\n`
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' })
    s.setNoDelay(true)
    let buf = ''
    let start = 0
    let waiting = 'INSERTED'
    const next = () => {
      if (until()) {
        s.end()
        resolve(undefined)
        return
      }
      start = performance.now()
      waiting = 'INSERTED'
      s.write(put)
    }
    s.on('connect', next)
    s.on('error', reject)
    s.setEncoding('latin1').on('data', (/** @type {string} */ d) => {
      buf += d
      for (let i; (i = buf.indexOf('\r\n')) >= 0; ) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 2)
        if (waiting === 'INSERTED') {
          const m = /^INSERTED (\d+)$/.exec(line)
          if (m === null) return reject(new Error(`put: ${line}`))
          waiting = 'DELETED'
          s.write(`delete ${m[1]}\r\n`)
        } else {
          if (line !== 'DELETED') return reject(new Error(`delete: ${line}`))
          done(performance.now() - start)
          next()
        }
      }
    })
  })
}

/** @param {number[]} xs @param {number} q */
const quantile = (xs, q) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? NaN

/** @param {string} engine @param {string[]} flags */
async function run(engine, flags) {
  const store = storeArgs(engine)
  const { child, port } = /** @type {{ child: import('node:child_process').ChildProcess, port: number }} */ (
    await startServer([...store.args, ...flags])
  )
  try {
    const t0 = performance.now()
    const warmEnd = t0 + 1000
    const end = warmEnd + SECONDS * 1000
    /** @type {number[]} */
    const lat = []
    let pairs = 0
    const done = (/** @type {number} */ ms) => {
      if (performance.now() < warmEnd) return
      pairs++
      lat.push(ms)
    }
    await Promise.all(Array.from({ length: CONNS }, () => client(port, () => performance.now() >= end, done)))
    lat.sort((a, b) => a - b)
    return { rate: pairs / SECONDS, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99) }
  } finally {
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
    await store.cleanup()
  }
}

/** Puts `n` jobs over 10 connections, 100 puts in flight on each. @param {number} port @param {number} n */
async function fill(port, n) {
  const body = Buffer.alloc(BODY, 'x').toString('latin1')
  const put = `put 0 0 60 ${BODY}\r\n${body}\r\n`
  let left = n
  await Promise.all(
    Array.from({ length: 10 }, () =>
      new Promise((resolve, reject) => {
        const s = net.connect({ port, host: '127.0.0.1' })
        let mine = 0
        let got = 0
        let buf = ''
        const more = () => {
          let batch = ''
          while (mine - got < 100 && left > 0) {
            batch += put
            mine++
            left--
          }
          if (batch !== '') s.write(batch)
          else if (got === mine) {
            s.end()
            resolve(undefined)
          }
        }
        s.on('connect', more)
        s.on('error', reject)
        s.setEncoding('latin1').on('data', (/** @type {string} */ d) => {
          buf += d
          for (let i; (i = buf.indexOf('\r\n')) >= 0; ) {
            if (!buf.startsWith('INSERTED')) return reject(new Error(`put: ${buf.slice(0, i)}`))
            buf = buf.slice(i + 2)
            got++
          }
          more()
        })
      }),
    ),
  )
}

/** Fills `engine` with REPLAY jobs, restarts it, and times the replay. @param {string} engine */
async function replay(engine) {
  const store = storeArgs(engine)
  try {
    const first = /** @type {{ child: import('node:child_process').ChildProcess, port: number }} */ (await startServer([...store.args, '-F']))
    await fill(first.port, REPLAY)
    first.child.kill('SIGTERM')
    await new Promise((r) => first.child.once('exit', r))
    const t0 = performance.now()
    const second = /** @type {{ child: import('node:child_process').ChildProcess, port: number, log: string }} */ (await startServer([...store.args, '-F']))
    const spawnToListen = (performance.now() - t0) / 1000
    const m = /"seconds":([\d.]+)/.exec(second.log)
    const jobs = /"jobs":(\d+)/.exec(second.log)
    second.child.kill('SIGTERM')
    await new Promise((r) => second.child.once('exit', r))
    return { replay: m === null ? NaN : Number(m[1]), spawnToListen, jobs: jobs === null ? NaN : Number(jobs[1]) }
  } finally {
    await store.cleanup()
  }
}

if (REPLAY > 0) {
  const out = []
  for (const engine of ENGINES) {
    const r = await replay(engine)
    out.push(`| ${engine} | ${r.jobs} | ${r.replay.toFixed(2)} | ${r.spawnToListen.toFixed(2)} |`)
    process.stderr.write(`${engine}: ${r.jobs} jobs replayed in ${r.replay} s\n`)
  }
  console.log(`replay of ${REPLAY} jobs (${BODY}-byte bodies), node ${process.version}, ${os.cpus().length} CPUs`)
  console.log('')
  console.log('| store | jobs | replay s | spawn to listening s |')
  console.log('| --- | ---: | ---: | ---: |')
  for (const r of out) console.log(r)
  process.exit(0)
}

const rows = []
for (const level of LEVELS) {
  for (const engine of ENGINES) {
    const r = await run(engine, level.flags)
    rows.push(`| ${level.name} | ${engine} | ${CONNS} | ${Math.round(r.rate)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`)
    process.stderr.write(`${level.name} ${engine}: ${Math.round(r.rate)} pairs/s\n`)
  }
}
console.log(`put+delete, ${CONNS} connections, ${BODY}-byte bodies, ${SECONDS} s per run, node ${process.version}, ${os.cpus().length} CPUs`)
console.log('')
console.log('| flags | store | conns | pairs/s | p50 ms | p99 ms |')
console.log('| --- | --- | ---: | ---: | ---: | ---: |')
for (const r of rows) console.log(r)

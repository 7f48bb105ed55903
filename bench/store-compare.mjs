#!/usr/bin/env node
// @ts-check
/**
 * The two persistence engines under the same flags: put+delete throughput
 * with N connections (default 10), each a closed loop (put, wait for
 * INSERTED, delete it, wait for DELETED), against `tsbeanstalkd -b DIR` with
 * `--store binlog` and `--store sqlite`, at -F, -f 50 and -f 0.
 *
 *   npm run build && node bench/store-compare.mjs [--seconds 5] [--conns 10] [--body 100] [--dir /var/tmp]
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

const LEVELS = [
  { name: '-F', flags: ['-F'] },
  { name: '-f 50', flags: ['-f', '50'] },
  { name: '-f 0', flags: ['-f', '0'] },
]
const ENGINES = ['binlog', 'sqlite']

/** Starts a server and resolves with it and its port. @param {string[]} args */
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
        resolve({ child, port: Number(m[1]) })
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
  const dir = fs.mkdtempSync(path.join(BASE, `tsb-bench-${engine}-`))
  const { child, port } = /** @type {{ child: import('node:child_process').ChildProcess, port: number }} */ (
    await startServer(['-b', dir, '--store', engine, ...flags])
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
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const rows = []
for (const level of LEVELS) {
  for (const engine of ENGINES) {
    const r = await run(engine, level.flags)
    rows.push(`| ${level.name} | ${engine} | ${Math.round(r.rate)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`)
    process.stderr.write(`${level.name} ${engine}: ${Math.round(r.rate)} pairs/s\n`)
  }
}
console.log(`put+delete, ${CONNS} connections, ${BODY}-byte bodies, ${SECONDS} s per run, node ${process.version}, ${os.cpus().length} CPUs`)
console.log('')
console.log('| flags | store | pairs/s | p50 ms | p99 ms |')
console.log('| --- | --- | ---: | ---: | ---: |')
for (const r of rows) console.log(r)

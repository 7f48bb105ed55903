#!/usr/bin/env node
// @ts-check
/**
 * Extensions II on a large tube: list-jobs page times and flush-tube's
 * duration, with another client's command latency meanwhile, against
 * `tsbeanstalkd --extensions` (no reference figure: the reference has no
 * such commands; the other client's idle latency on the same server is the
 * baseline).
 *
 *   npm run build && flock /tmp/tsb-bench.lock node bench/admin.mjs [--jobs 1000000] [--binlog] [--dir /var/tmp]
 *
 * Steps: fill the default tube with N jobs (priorities cycling 0..999) by a
 * pipelined producer; one client runs `put` + INSERTED in a closed loop on
 * another tube for 2 s (idle baseline); time the tube's first list-jobs
 * (which starts the ready index's build in the background), then the other
 * client's puts again while the index is built, with a page from a cursor
 * half-way every 100 ms until one answers in under 2 ms (done); then pages
 * of 1000 ids from the start, from a cursor in the middle of the ready
 * order and from one near its end (each the median of 5); then the other
 * client's puts while a second client's `flush-tube default` runs, which is
 * timed from its send to its FLUSHED. Prints a Markdown table. --binlog:
 * with `-b DIR` (default fsync).
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
const N = arg('jobs', 1_000_000)
const PRI = 1000
const BINLOG = process.argv.includes('--binlog')
const dirArg = process.argv.indexOf('--dir')
const BASE = dirArg > 0 ? String(process.argv[dirArg + 1]) : os.tmpdir()

/** A connection that sends a line and reads replies (one line, or OK <n> with its body). */
class Client {
  /** @param {net.Socket} s */
  constructor(s) {
    this.s = s
    this.buf = Buffer.alloc(0)
    /** @type {(() => void) | null} */
    this.wake = null
    s.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d])
      this.wake?.()
    })
  }
  /** @param {number} port */
  static connect(port) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(new Client(s)))
      s.setNoDelay(true)
      s.on('error', reject)
    })
  }
  /** The next reply: a line, or an OK line with its body. @returns {Promise<string>} */
  async reply() {
    for (;;) {
      const i = this.buf.indexOf('\r\n')
      if (i >= 0) {
        const line = this.buf.toString('latin1', 0, i)
        const m = /^OK (\d+)$/.exec(line)
        const need = m === null ? i + 2 : i + 2 + Number(m[1]) + 2
        if (this.buf.length >= need) {
          const out = this.buf.toString('latin1', 0, need)
          this.buf = this.buf.subarray(need)
          return out
        }
      }
      await new Promise((r) => (this.wake = () => r(undefined)))
      this.wake = null
    }
  }
  /** @param {string} cmd */
  async call(cmd) {
    this.s.write(cmd, 'latin1')
    return this.reply()
  }
  close() {
    this.s.destroy()
  }
}

/** @param {number[]} xs @param {number} q */
const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN
}
const ms = (/** @type {number} */ x) => x.toFixed(2)

/** Closed-loop puts on another tube until `stop()` says so; the latencies, ms. */
async function loop(/** @type {Client} */ c, /** @type {() => boolean} */ stop) {
  const lat = []
  while (!stop()) {
    const t0 = performance.now()
    const r = await c.call('put 0 0 60 1\r\nx\r\n')
    lat.push(performance.now() - t0)
    if (!r.startsWith('INSERTED')) throw new Error(`put: ${r}`)
  }
  return lat
}

async function main() {
  const dir = BINLOG ? fs.mkdtempSync(path.join(BASE, 'tsb-admin-')) : null
  const args = [BIN, '-l', '127.0.0.1', '-p', '0', '--extensions', ...(dir === null ? [] : ['-b', dir])]
  const srv = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  /** @type {number} */
  const port = await new Promise((resolve, reject) => {
    srv.stderr.on('data', (d) => {
      err += d
      const m = /"port":(\d+)/.exec(err)
      if (m !== null && /"msg":"listening"/.test(err)) resolve(Number(m[1]))
    })
    srv.on('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)))
  })
  try {
    const producer = /** @type {Client} */ (await Client.connect(port))
    const t0 = performance.now()
    for (let i = 0; i < N; ) {
      let chunk = ''
      const start = i
      const end = Math.min(N, i + 2000)
      for (; i < end; i++) chunk += `put ${i % PRI} 0 60 3\r\nabc\r\n`
      producer.s.write(chunk, 'latin1')
      for (let k = start; k < end; k++) await producer.reply()
    }
    const fillS = (performance.now() - t0) / 1000
    const admin = /** @type {Client} */ (await Client.connect(port))
    const page = async (/** @type {number} */ after) => {
      const times = []
      for (let k = 0; k < 5; k++) {
        const t = performance.now()
        const r = await admin.call(`list-jobs default ready ${after} 1000\r\n`)
        times.push(performance.now() - t)
        if (!r.startsWith('OK ')) throw new Error(`list-jobs: ${r.slice(0, 40)}`)
      }
      return pct(times, 0.5)
    }
    const other = /** @type {Client} */ (await Client.connect(port))
    await other.call('use other\r\n')
    const until = performance.now() + 2000
    const idle = await loop(other, () => performance.now() > until)
    // The tube's first list-jobs of the state starts its ordered index's build
    // in the background; until it is done, pages after a cursor are read by a
    // pass over the heap. The other client's puts meanwhile; a page from a
    // cursor half-way every 100 ms until one answers in under 2 ms (done).
    const t1 = performance.now()
    const built = await admin.call(`list-jobs default ready 0 1000\r\n`)
    const firstEver = performance.now() - t1
    if (!built.startsWith('OK ')) throw new Error(`list-jobs: ${built.slice(0, 40)}`)
    const scans = []
    let indexed = false
    const poll = (async () => {
      for (const t = performance.now(); !indexed && performance.now() - t < 10_000; ) {
        await new Promise((r) => setTimeout(r, 100))
        const t2 = performance.now()
        // From a cursor: the first page is read best-first from the heap's root, fast either way.
        await admin.call(`list-jobs default ready 501 1000\r\n`)
        const took = performance.now() - t2
        if (took < 2) indexed = true
        else scans.push(took)
      }
    })()
    const building = await loop(other, () => indexed || performance.now() - t1 > 10_000)
    await poll
    const buildS = (performance.now() - t1) / 1000
    // Ready order is (i % PRI, id): the cursor at job id k + 1 has k % PRI jobs-per-priority before it.
    const first = await page(0)
    const middle = await page(500 + 1) // priority 500: half the tube before it
    const deep = await page(N - 1) // priority 998 or 999: nearly all of it before
    let done = false
    const tf = performance.now()
    const flushed = admin.call('flush-tube default\r\n').then((r) => {
      done = true
      return r
    })
    const during = await loop(other, () => done)
    const reply = await flushed
    const flushS = (performance.now() - tf) / 1000
    if (reply !== `FLUSHED ${N}\r\n`) throw new Error(`flush-tube: ${reply}`)
    const load = os.loadavg().map((x) => x.toFixed(2)).join(' ')
    console.log(`\n${N.toLocaleString('en')} jobs, ${BINLOG ? 'binlog (-b, default fsync)' : 'no store'}; fill ${fillS.toFixed(1)} s; load average ${load}\n`)
    console.log('| measure | value |')
    console.log('|---|---|')
    console.log(`| the tube's first list-jobs ready (starts the index's build) | ${ms(firstEver)} ms |`)
    console.log(`| list-jobs ready while the index is built: median / max (${scans.length} pages) | ${ms(pct(scans, 0.5))} / ${ms(Math.max(...scans))} ms |`)
    console.log(`| the index done (a page under 2 ms), after | ${indexed ? `${buildS.toFixed(1)} s` : 'not within 10 s'} |`)
    console.log(`| other client's put while it is built: p50 / p99 / max (${building.length} puts) | ${ms(pct(building, 0.5))} / ${ms(pct(building, 0.99))} / ${ms(Math.max(...building))} ms |`)
    console.log(`| list-jobs ready, 1000 ids from the start (median of 5) | ${ms(first)} ms |`)
    console.log(`| list-jobs ready, 1000 ids after a cursor half-way (median of 5) | ${ms(middle)} ms |`)
    console.log(`| list-jobs ready, 1000 ids after a cursor near the end (median of 5) | ${ms(deep)} ms |`)
    console.log(`| flush-tube of ${N.toLocaleString('en')} jobs | ${flushS.toFixed(2)} s |`)
    console.log(`| other client's put, idle: p50 / p99 / max (${idle.length} puts) | ${ms(pct(idle, 0.5))} / ${ms(pct(idle, 0.99))} / ${ms(Math.max(...idle))} ms |`)
    console.log(`| other client's put during the flush: p50 / p99 / max (${during.length} puts) | ${ms(pct(during, 0.5))} / ${ms(pct(during, 0.99))} / ${ms(Math.max(...during))} ms |`)
    producer.close()
    admin.close()
    other.close()
  } finally {
    srv.kill('SIGTERM')
    await new Promise((r) => srv.once('exit', r))
    if (dir !== null) fs.rmSync(dir, { recursive: true, force: true })
  }
}

await main()

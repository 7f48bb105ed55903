// @ts-check
/**
 * What idle connections cost a running server over time: starts the server
 * (tsbeanstalkd from bin/, and with --ref beanstalkd as well), opens N
 * connections that each send `use` + `watch` and stay silent, and prints the
 * server's RSS growth per connection 0.2, 3, 7, 12 and 20 s after the last
 * one connected. The C load generator's many-conns reads it at 0.2 s; this
 * shows what stays (src/server/memory-reclaim.ts collects once the number of
 * connections has settled).
 *
 *   npm run build && node bench/idle-settle.mjs [N=10000] [--ref]
 */
import net from 'node:net'
import fs from 'node:fs'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

const bin = fileURLToPath(new URL('../bin/tsbeanstalkd.js', import.meta.url))
const n = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 10000)
const AT_MS = [200, 3000, 7000, 12000, 20000]

/** @param {number} pid */
const rssKb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN)

/** @param {number} port */
async function connectable(port) {
  for (let i = 0; i < 250; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s.destroy() || true))
      s.on('error', () => resolve(false))
    })
    if (ok) return
    await sleep(20)
  }
  throw new Error(`nothing listens on ${port}`)
}

/** @param {string} name @param {string} cmd @param {string[]} args @param {number} port */
async function measure(name, cmd, args, port) {
  const server = spawn(cmd, args, { stdio: 'ignore' })
  try {
    await connectable(port)
    await sleep(300)
    const before = rssKb(/** @type {number} */ (server.pid))
    /** @type {net.Socket[]} */
    const socks = []
    for (let i = 0; i < n; i += 500) {
      await Promise.all(
        Array.from(
          { length: Math.min(500, n - i) },
          () =>
            new Promise((resolve, reject) => {
              const s = net.connect(port, '127.0.0.1', () => {
                s.write('use idle\r\nwatch idle\r\n')
                resolve(undefined)
              })
              s.on('data', () => {})
              s.on('error', reject)
              socks.push(s)
            }),
        ),
      )
    }
    const start = Date.now()
    const cells = []
    for (const at of AT_MS) {
      await sleep(Math.max(0, at - (Date.now() - start)))
      cells.push(`${at / 1000}s=${((rssKb(/** @type {number} */ (server.pid)) - before) / n).toFixed(2)}`)
    }
    console.log(`${name} idle=${n} kb_per_idle_conn ${cells.join(' ')}`)
    for (const s of socks) s.destroy()
  } finally {
    server.kill()
  }
}

await measure('tsbeanstalkd', process.execPath, [bin, '-l', '127.0.0.1', '-p', '22931'], 22931)
if (process.argv.includes('--ref')) await measure('beanstalkd', 'beanstalkd', ['-l', '127.0.0.1', '-p', '22932'], 22932)

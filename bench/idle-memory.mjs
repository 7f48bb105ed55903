// @ts-check
/**
 * What an idle connection costs the server, deterministically: the server
 * runs in this process (compiled, dist/), a child process opens N
 * connections that each send `use` + `watch` and then stay silent, and the
 * heap and RSS are read after a forced GC before and after.
 *
 *   npm run build && node --expose-gc bench/idle-memory.mjs [N=10000]
 *
 * Prints one line: idle=N rss_kb_per_conn=... rss_ex_young_kb_per_conn=...
 * heap_kb_per_conn=... (heapUsed: the JavaScript objects; external and
 * arrayBuffers: Buffers; rss: everything, libuv handles and malloc included;
 * rss_ex_young: without the young generation's growth). IDLE_SPACES=1 adds
 * the growth of each V8 heap space.
 * The figures are the server's own, not the loopback's kernel memory.
 */
import net from 'node:net'
import v8 from 'node:v8'
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

const here = fileURLToPath(import.meta.url)

if (process.argv[2] === '--client') {
  await client(Number(process.argv[3]), Number(process.argv[4]))
} else {
  await parent(Number(process.argv[2] ?? 10000))
}

/** @param {number} port @param {number} n */
async function client(port, n) {
  /** @type {net.Socket[]} */
  const socks = []
  const BATCH = 200
  for (let i = 0; i < n; i += BATCH) {
    const k = Math.min(BATCH, n - i)
    await Promise.all(
      Array.from(
        { length: k },
        () =>
          new Promise((resolve, reject) => {
            const s = net.connect({ host: '127.0.0.1', port })
            let got = ''
            s.on('error', reject)
            s.on('data', (d) => {
              got += d.toString('latin1')
              if (got.split('\r\n').length > 2) resolve(undefined)
            })
            s.write('use idle-t\r\nwatch idle-t\r\n')
            socks.push(s)
          }),
      ),
    )
  }
  process.send?.('ready')
  process.on('message', () => {
    for (const s of socks) s.destroy()
    process.exit(0)
  })
}

/** @param {number} n */
async function parent(n) {
  const gc = /** @type {(() => void) | undefined} */ (globalThis.gc)
  if (gc === undefined) throw new Error('run with node --expose-gc')
  const { BeanstalkServer } = await import('../dist/server/server.js')
  const { default: pino } = await import('pino')
  const server = new BeanstalkServer({ maxJobSize: 65535, binlogMaxSize: 10 << 20, log: pino({ level: 'silent' }) })
  const addr = await server.listen({ host: '127.0.0.1', port: 0 })
  if (typeof addr === 'string') throw new Error('no port')
  // A few connections first, so code and one-off structures are not counted.
  const warm = await openIdle(addr.port, 50)
  const before = await settle(gc)
  const child = await openIdle(addr.port, n)
  const after = await settle(gc)
  if (server.connectionCount < n) throw new Error(`only ${server.connectionCount} connections`)
  const per = (/** @type {number} */ a, /** @type {number} */ b) => ((a - b) / n / 1024).toFixed(2)
  const young = (/** @type {{spaces: v8.HeapSpaceInfo[]}} */ m) => m.spaces.find((x) => x.space_name === 'new_space')?.space_size ?? 0
  console.log(
    [
      `idle=${n}`,
      `rss_kb_per_conn=${per(after.rss, before.rss)}`,
      // The young generation grows with the allocation rate of the burst of
      // connects (to 32 MB), as it does under any load: a server that has run
      // has grown it already, so it is no cost of a connection.
      `rss_ex_young_kb_per_conn=${per(after.rss - young(after), before.rss - young(before))}`,
      `heap_kb_per_conn=${per(after.heapUsed, before.heapUsed)}`,
      `heap_total_kb_per_conn=${per(after.heapTotal, before.heapTotal)}`,
      `external_kb_per_conn=${per(after.external, before.external)}`,
      `array_buffers_kb_per_conn=${per(after.arrayBuffers, before.arrayBuffers)}`,
      `node=${process.version}`,
      `flags=${process.execArgv.join(' ')}`,
    ].join(' '),
  )
  if (process.env.IDLE_SPACES === '1') {
    for (const sp of after.spaces) {
      const b = before.spaces.find((x) => x.space_name === sp.space_name)
      console.log(sp.space_name, 'size', ((sp.space_size - (b?.space_size ?? 0)) / 1024).toFixed(0), 'KB used', ((sp.space_used_size - (b?.space_used_size ?? 0)) / 1024).toFixed(0), 'KB')
    }
  }
  child.send('bye')
  warm.send('bye')
  await server.close()
  process.exit(0)
}

/** @param {number} port @param {number} n */
async function openIdle(port, n) {
  const child = fork(here, ['--client', String(port), String(n)], { stdio: 'inherit' })
  await new Promise((resolve, reject) => {
    child.once('message', resolve)
    child.once('exit', (code) => reject(new Error(`client exited ${code}`)))
  })
  return child
}

/** @param {() => void} gc */
async function settle(gc) {
  await sleep(300)
  for (let i = 0; i < 3; i++) {
    gc()
    await sleep(50)
  }
  return { ...process.memoryUsage(), spaces: v8.getHeapSpaceStatistics() }
}

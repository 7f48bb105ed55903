/**
 * Replies stay byte-exact however the output path is exercised: a client
 * pipelines thousands of commands with small and large bodies and reads
 * nothing for a while, so writes are held by the socket (backpressure) or by
 * the binlog gate (-b) while later replies are assembled. Any reuse of reply
 * memory that a pending write still covers shows up as a wrong byte here.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectSocket, ensureBuilt, killAll, spawnCli, withTimeout } from '../helpers/process.js'
import { prng } from '../helpers/prng.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Bodies with a recognisable pattern; about 1 in 8 is over the copy limit (2 KiB). */
function bodies(n: number, seed: number): Buffer[] {
  const rnd = prng(seed)
  return Array.from({ length: n }, (_, i) => {
    const len = rnd.chance(0.125) ? 2048 + rnd.int(30000) : rnd.int(300)
    const b = Buffer.allocUnsafe(len)
    for (let k = 0; k < len; k++) b[k] = 0x21 + ((i * 7 + k) % 90)
    return b
  })
}

/** The exact replies: INSERTED for each put, then RESERVED/DELETED pairs in id order (all priority 0). */
function expected(all: Buffer[]): Buffer {
  const parts: Buffer[] = all.map((_, i) => Buffer.from(`INSERTED ${i + 1}\r\n`))
  all.forEach((b, i) => {
    parts.push(Buffer.from(`RESERVED ${i + 1} ${b.length}\r\n`), b, Buffer.from('\r\nDELETED\r\n'))
  })
  return Buffer.concat(parts)
}

function commands(all: Buffer[]): Buffer {
  const parts: Buffer[] = []
  for (const b of all) parts.push(Buffer.from(`put 0 0 60 ${b.length}\r\n`), b, Buffer.from('\r\n'))
  all.forEach((_, i) => parts.push(Buffer.from(`reserve-with-timeout 0\r\ndelete ${i + 1}\r\n`)))
  return Buffer.concat(parts)
}

/** Sends everything, reads nothing for `stallMs`, then reads until `want` bytes arrived. */
async function exchange(port: number, send: Buffer, want: number, stallMs: number): Promise<Buffer> {
  const s: net.Socket = await connectSocket({ port, host: '127.0.0.1' }, 10_000)
  try {
    s.pause()
    s.write(send)
    await sleep(stallMs)
    const got: Buffer[] = []
    let n = 0
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        s.on('data', (d: Buffer) => {
          got.push(d)
          n += d.length
          if (n >= want) resolve()
        })
        s.on('error', reject)
        s.on('close', () => reject(new Error(`closed after ${n} of ${want} bytes`)))
        s.resume()
      }),
      30_000,
      `${want} reply bytes`,
    )
    return Buffer.concat(got)
  } finally {
    s.destroy()
  }
}

function firstDifference(a: Buffer, b: Buffer): string {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return `byte ${i}: got ${JSON.stringify(a.subarray(i, i + 40).toString('latin1'))} want ${JSON.stringify(b.subarray(i, i + 40).toString('latin1'))}`
  }
  return a.length === b.length ? 'none' : `lengths ${a.length} vs ${b.length}`
}

let dir: string
beforeAll(() => {
  ensureBuilt()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-output-'))
})
afterAll(async () => {
  await killAll()
  fs.rmSync(dir, { recursive: true, force: true })
})

describe('reply bytes under held writes', () => {
  const cases: [string, string[]][] = [
    ['in memory', []],
    ['with a binlog (-b -f 0)', ['-f', '0']],
  ]
  for (const [name, extra] of cases) {
    it(`are exact ${name}, with a stalled reader`, async () => {
      const args = ['-l', '127.0.0.1', '-p', '0']
      if (extra.length > 0) args.push('-b', fs.mkdtempSync(path.join(dir, 'b-')), ...extra)
      const port = (await spawnCli(args).listening(10_000)).port!
      const all = bodies(4000, 7)
      const want = expected(all)
      // 4000 jobs with 1 in 8 over 2 KiB: about 9.5 MB of replies, far over the socket buffers.
      expect(want.length).toBeGreaterThan(8 * 1024 * 1024)
      const got = await exchange(port, commands(all), want.length, 500)
      expect(firstDifference(got, want)).toBe('none')
    }, 60_000)
  }
})

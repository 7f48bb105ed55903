/**
 * The body arena reuses a slab whose jobs are all gone (queue/body-arena.ts),
 * but never while a reply still covers its bytes. Here a reader asks for the
 * same large bodies again and again and reads nothing, so the server's
 * writes of them stop in the socket (bodies of 2 KiB and more leave as views
 * of their slab). Meanwhile another client deletes every job and puts new
 * ones over the same amount of memory. Every body the reader gets at last
 * must still be the one it asked for; reusing that slab would send the new
 * jobs' bytes instead. The same with a binlog, whose gate holds the replies
 * (and their views) until the turn's records are written. And behind that
 * gate, a slab whose last reply the kernel took is refilled.
 */
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { BeanstalkServer } from '../../src/server/server.js'
import { openStore } from '../../src/store/open.js'
import { systemClock } from '../../src/util/clock.js'
import { cliFixture } from '../helpers/cli-fixture.js'
import { RawClient } from '../helpers/client.js'
import { spawnCli, withTimeout } from '../helpers/process.js'
import { startServer, type TestServer } from '../helpers/server.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** 17 bodies of 60,000 bytes fill most of one 1 MiB slab (each under its 1/8, so they share it). */
const JOBS = 17
const BODY = 60_000
/** Peeks of each job: about 32 MB of replies, far over what the socket buffers take. */
const ROUNDS = 32

const bodyOf = (i: number): string => String.fromCharCode(0x41 + (i % 26)).repeat(BODY)

const cli = cliFixture('tsb-slab-reuse-')
let srv: TestServer | null = null
afterEach(async () => {
  await srv?.close()
  srv = null
})

/**
 * In process without a store; or the CLI with a binlog, whose gate holds each
 * turn's replies (and their views) until the turn's records are written, or
 * fsynced (-f 0), and then hands them to the socket.
 */
async function serve(store: readonly string[] | null): Promise<number> {
  if (store === null) {
    srv = await startServer()
    return srv.port
  }
  const dir = fs.mkdtempSync(path.join(cli.tmp(), 'b-'))
  return (await spawnCli(['-l', '127.0.0.1', '-p', '0', '-b', dir, ...store]).listening(10_000)).port!
}

/** Polls `stats` until cmd-peek stops moving: the server has stopped serving the stalled reader. */
async function peeksSettled(c: RawClient): Promise<number> {
  let last = -1
  let still = 0
  for (let i = 0; i < 200 && still < 3; i++) {
    const n = Number((await c.stats('stats\r\n'))['cmd-peek'])
    still = n === last ? still + 1 : 0
    last = n
    await sleep(50)
  }
  return last
}

describe.each([
  ['in memory', null],
  ['with a binlog', []],
  ['with a binlog, -f 0', ['-f', '0']],
] as const)('slab reuse %s', (_name, store) => {
  it('never hands out a slab a stalled reply still covers', async () => {
    const port = await serve(store)
    const producer = await RawClient.connect(port)
    const worker = await RawClient.connect(port)
    const ids: number[] = []
    for (let i = 0; i < JOBS; i++) {
      const r = await producer.call(`put 0 0 60 ${BODY}\r\n${bodyOf(i)}\r\n`)
      ids.push(Number(/^INSERTED (\d+)\r\n$/.exec(r)![1]))
    }

    const reader = new net.Socket()
    await new Promise<void>((resolve, reject) => reader.connect(port, '127.0.0.1', resolve).once('error', reject))
    try {
      reader.pause()
      const peeks: string[] = []
      for (let k = 0; k < ROUNDS; k++) for (const id of ids) peeks.push(`peek ${id}\r\n`)
      reader.write(peeks.join(''))
      const served = await peeksSettled(producer)
      expect(served).toBeGreaterThan(0)
      // The reader's replies hold up its commands: not every peek could be served. Behind
      // a binlog's gate a turn's replies go to the socket together, which keeps most of them.
      if (store === null) expect(served).toBeLessThan(JOBS * ROUNDS)

      // Every job goes; new ones take the same amount of memory.
      for (const id of ids) {
        expect(await worker.call('reserve-with-timeout 0\r\n')).toMatch(/^RESERVED \d+ 60000\r\n$/)
        await worker.read(BODY + 2)
        expect(await worker.call(`delete ${id}\r\n`)).toBe('DELETED\r\n')
      }
      for (let i = 0; i < JOBS; i++) expect(await producer.call(`put 0 0 60 ${BODY}\r\n${'z'.repeat(BODY)}\r\n`)).toMatch(/^INSERTED/)

      // Now read everything: each FOUND carries the body it was asked for, the rest are NOT_FOUND.
      let replies = 0
      let found = 0
      const wrong: string[] = []
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          let pending = Buffer.alloc(0)
          reader.on('data', (d: Buffer) => {
            pending = Buffer.concat([pending, d])
            for (;;) {
              const eol = pending.indexOf('\r\n')
              if (eol === -1) break
              const line = pending.subarray(0, eol).toString('latin1')
              const m = /^FOUND (\d+) (\d+)$/.exec(line)
              if (m === null) {
                if (line !== 'NOT_FOUND') wrong.push(line)
                pending = pending.subarray(eol + 2)
                replies++
                continue
              }
              const n = Number(m[2])
              if (pending.length < eol + 2 + n + 2) break
              const body = pending.subarray(eol + 2, eol + 2 + n).toString('latin1')
              if (body !== bodyOf(ids.indexOf(Number(m[1])))) wrong.push(`job ${m[1]}: ${body.slice(0, 8)}...`)
              pending = pending.subarray(eol + 2 + n + 2)
              replies++
              found++
            }
            if (replies === JOBS * ROUNDS) resolve()
          })
          reader.on('error', reject)
          reader.on('close', () => reject(new Error(`closed after ${replies} replies`)))
          reader.resume()
        }),
        30_000,
        `${JOBS * ROUNDS} replies`,
      )
      expect(wrong.slice(0, 3)).toEqual([])
      // The peeks served before the deletes found their job (a few more may have been served
      // after the count settled); the ones after them did not.
      expect(found).toBeGreaterThanOrEqual(served)
      if (store === null) expect(found).toBeLessThan(JOBS * ROUNDS)
    } finally {
      reader.destroy()
      producer.close()
      worker.close()
    }
  }, 60_000)
})

describe('slab reuse behind a reply gate', () => {
  it('refills the slab of a large-body reply once the gate wrote it and the kernel took it', async () => {
    const log = pino({ level: 'silent' })
    const server = new BeanstalkServer({ maxJobSize: 65535, binlogMaxSize: 1 << 20, log, awaitStore: true })
    const addr = await server.listen({ host: '127.0.0.1', port: 0 })
    if (typeof addr === 'string') throw new Error('expected TCP')
    const dir = fs.mkdtempSync(path.join(cli.tmp(), 'gate-'))
    const store = await openStore(
      { dir, engine: 'binlog', fileSize: 8 << 20, fsyncMs: 0, fsyncNever: true, maxJobSize: 65535, log, clock: systemClock },
      server.restoreInto,
    )
    server.serve(store)
    const c = await RawClient.connect(addr.port)
    try {
      const body = 'q'.repeat(4000)
      const place = async (): Promise<{ id: number; where: [unknown, number] }> => {
        const id = Number(/^INSERTED (\d+)\r\n$/.exec(await c.call(`put 0 0 60 ${body.length}\r\n${body}\r\n`))![1])
        const j = server.registry.peek(id)!
        return { id, where: [j.slab, j.bodyOff] }
      }
      const first = await place()
      // The reserve's reply carries the body as a view of its slab, held by the gate for the binlog's write.
      expect(await c.call('reserve-with-timeout 0\r\n')).toBe(`RESERVED ${first.id} 4000\r\n`)
      expect(await c.read(body.length + 2)).toBe(`${body}\r\n`)
      expect(await c.call(`delete ${first.id}\r\n`)).toBe('DELETED\r\n')
      // The slab was emptied with no view of it left: the next body goes where the first one was.
      expect((await place()).where).toEqual(first.where)
    } finally {
      c.close()
      await server.close()
      store.close()
    }
  })
})

/**
 * A batch is one unit of work: `delete-batch` and `reserve-batch` run in one
 * event-loop turn, their records go to the store in one flush, and their
 * replies leave in one write of the connection's socket. A server with a
 * real binlog (-f 0) on a duplex pair, so every write and flush is counted.
 */
import { duplexPair, type Duplex } from 'node:stream'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { BeanstalkServer } from '../../src/server/server.js'
import { Binlog } from '../../src/store/binlog/binlog.js'
import type { DurableStore } from '../../src/store/store.js'
import { systemClock } from '../../src/util/clock.js'
import { tmpDir } from '../binlog/helpers.js'

const log = pino({ level: 'silent' })
let store: DurableStore | null = null

afterEach(() => {
  store?.close()
  store = null
})

interface Harness {
  send(s: string): void
  /** Resolves once `n` CRLF-ended lines have arrived (bounded). */
  lines(n: number): Promise<string[]>
  writes: number
  flushes: number
}

async function harness(): Promise<Harness> {
  const server = new BeanstalkServer({ maxJobSize: 65535, binlogMaxSize: 1 << 20, log, extensions: true, awaitStore: true })
  const dir = tmpDir()
  const b = await Binlog.open({ dir, fileSize: 1 << 20, fsyncMs: 0, fsyncNever: false, maxJobSize: 65535, log, clock: systemClock }, server.restoreInto)
  store = b
  server.serve(b)
  const [client, end] = duplexPair() as [Duplex, Duplex]
  const h: Harness = { send: (s) => client.write(s, 'latin1'), lines: () => Promise.resolve([]), writes: 0, flushes: 0 }
  // Count the server's writes to the socket, and the flushes that stored records.
  const write = end.write.bind(end) as (...a: unknown[]) => boolean
  end.write = ((...a: unknown[]) => {
    h.writes++
    return write(...a)
  }) as typeof end.write
  // A flush that wrote something returns a new sequence number.
  const flush = b.flush.bind(b)
  let last = 0
  b.flush = () => {
    const seq = flush()
    if (seq !== last) h.flushes++
    last = seq
    return seq
  }
  server.handle(end)
  let buf = ''
  client.setEncoding('latin1')
  client.on('data', (d: string) => (buf += d))
  h.lines = async (n) => {
    for (let waited = 0; buf.split('\r\n').length - 1 < n; waited += 5) {
      if (waited > 5000) throw new Error(`waited 5 s for ${n} lines, have ${JSON.stringify(buf.slice(0, 200))}`)
      await new Promise((r) => setTimeout(r, 5))
    }
    const all = buf.split('\r\n')
    buf = all.slice(n).join('\r\n')
    return all.slice(0, n)
  }
  return h
}

describe('batches', () => {
  it('delete-batch of 200: one flush of 200 records, one reply write', async () => {
    const h = await harness()
    h.send('put 0 0 60 1\r\nx\r\n'.repeat(200))
    expect((await h.lines(200)).every((l, i) => l === `INSERTED ${i + 1}`)).toBe(true)
    h.writes = 0
    h.flushes = 0
    h.send(`delete-batch ${Array.from({ length: 200 }, (_, i) => i + 1).join(' ')}\r\n`)
    expect(await h.lines(1)).toEqual(['DELETED_BATCH 200 0'])
    expect(h.writes).toBe(1)
    expect(h.flushes).toBe(1)
    expect(store!.stats().liveJobs).toBe(0)
  })

  it('reserve-batch of 100: one reply write for the whole batch', async () => {
    const h = await harness()
    h.send('put 0 0 60 1\r\nx\r\n'.repeat(100))
    await h.lines(100)
    h.writes = 0
    h.send('reserve-batch 100\r\n')
    const lines = await h.lines(1 + 200)
    expect(lines[0]).toBe('RESERVED_BATCH 100')
    expect(lines[1]).toBe('RESERVED 1 1')
    expect(lines[200]).toBe('x')
    expect(h.writes).toBe(1)
  })
})

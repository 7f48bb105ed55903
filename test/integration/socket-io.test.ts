/**
 * The socket fast path (src/server/socket-io.ts): reads into one buffer shared
 * by all connections and writes straight to the handle. It must be in effect
 * on the Node we ship for (else the speed silently goes), and a connection
 * that stops mid-read (waiting in reserve) must keep its unparsed commands
 * intact while other connections' reads reuse the buffer.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { SocketWriter, sharedReadBuffer, startReading } from '../../src/server/socket-io.js'
import { RawClient } from '../helpers/client.js'
import { withTimeout } from '../helpers/process.js'
import { startServer, type TestServer } from '../helpers/server.js'

/** Accepts one paused connection on `listenArgs` and returns whether the fast path took it. */
async function fastPathTaken(listen: (srv: net.Server) => void, connect: () => net.Socket): Promise<boolean> {
  const srv = net.createServer({ pauseOnConnect: true })
  const client: net.Socket[] = []
  try {
    const accepted = new Promise<{ fast: boolean; got: Buffer }>((resolve) => {
      srv.on('connection', (s) => {
        const fast = startReading(s, (chunk) => {
          // A view of the shared buffer when fast: copy before the next read.
          resolve({ fast, got: Buffer.from(chunk) })
          s.destroy()
        })
      })
    })
    await new Promise<void>((r) => {
      srv.once('listening', () => r())
      listen(srv)
    })
    const c = connect()
    client.push(c)
    c.on('error', () => undefined)
    c.write('hello')
    const { fast, got } = await withTimeout(accepted, 5000, 'the first read')
    expect(got.toString()).toBe('hello')
    return fast
  } finally {
    for (const c of client) c.destroy()
    await new Promise<void>((r) => srv.close(() => r()))
  }
}

describe('socket fast path', () => {
  it('reads accepted TCP and Unix sockets into the shared buffer on this Node', async () => {
    expect(sharedReadBuffer.length).toBe(64 * 1024)
    let port = 0
    const tcp = await fastPathTaken(
      (srv) => srv.listen(0, '127.0.0.1', () => (port = (srv.address() as net.AddressInfo).port)),
      () => net.connect(port, '127.0.0.1'),
    )
    expect(tcp).toBe(true)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-sock-'))
    try {
      const p = path.join(dir, 's')
      const unix = await fastPathTaken(
        (srv) => srv.listen(p),
        () => net.connect(p),
      )
      expect(unix).toBe(true)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('SocketWriter', () => {
  it('reports drain once a direct write the kernel took in part and the stream writes queued behind it are all out', async () => {
    const srv = net.createServer({ pauseOnConnect: true })
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
    const port = (srv.address() as net.AddressInfo).port
    const accepted = new Promise<net.Socket>((r) => srv.once('connection', r))
    const client = net.connect(port, '127.0.0.1')
    client.on('error', () => undefined)
    client.pause() // reads nothing for now
    const server = await withTimeout(accepted, 5000, 'accept')
    try {
      let drains = 0
      let drained: () => void = () => undefined
      const drainedOnce = new Promise<void>((r) => (drained = r))
      const direct = startReading(server, () => undefined)
      const w = new SocketWriter(
        server,
        {
          drained: () => {
            drains++
            drained()
          },
        },
        direct,
      )
      expect(direct).toBe(true)
      // Direct writes until the kernel takes one only in part.
      const big = Buffer.alloc(1 << 20, 0x61)
      let sent = 0
      for (let i = 0; i < 64; i++) {
        sent += big.length
        if (!w.write(big)) break
      }
      expect(w.idle).toBe(false)
      // A small write behind it goes through the stream and fits its buffer.
      expect(w.write(Buffer.from('tail'))).toBe(true)
      sent += 4
      let got = 0
      client.on('data', (d: Buffer) => (got += d.length))
      client.resume()
      await withTimeout(drainedOnce, 10_000, 'drain after the queued writes')
      expect(w.idle).toBe(true)
      expect(drains).toBe(1)
      await withTimeout(
        (async () => {
          while (got < sent) await new Promise((r) => setTimeout(r, 10))
        })(),
        10_000,
        'all bytes at the client',
      )
      expect(got).toBe(sent)
    } finally {
      client.destroy()
      server.destroy()
      await new Promise<void>((r) => srv.close(() => r()))
    }
  })
})

describe('a connection waiting in reserve', () => {
  let srv: TestServer | null = null
  const clients: RawClient[] = []
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close()
    await srv?.close()
    srv = null
  })

  it('keeps the commands it has not run while other connections read', async () => {
    srv = await startServer()
    const waiter = await RawClient.connect(srv.port)
    const other = await RawClient.connect(srv.port)
    clients.push(waiter, other)
    // One read: a reserve that waits, then commands that must run after it.
    waiter.send('watch w\r\nignore default\r\nreserve\r\nput 5 0 60 3\r\nabc\r\nlist-tube-used\r\nuse u\r\n')
    expect(await waiter.line()).toBe('WATCHING 2\r\n')
    expect(await waiter.line()).toBe('WATCHING 1\r\n')
    // Many reads by another connection reuse the shared buffer meanwhile.
    for (let i = 0; i < 200; i++) {
      expect(await other.call(`put 0 0 60 20\r\n${String(i).padStart(20, 'z')}\r\n`)).toBe(`INSERTED ${i + 1}\r\n`)
    }
    expect(await other.call('use w\r\n')).toBe('USING w\r\n')
    expect(await other.call('put 1 0 60 4\r\nwake\r\n')).toBe('INSERTED 201\r\n')
    expect(await waiter.line()).toBe('RESERVED 201 4\r\n')
    expect(await waiter.read(6)).toBe('wake\r\n')
    expect(await waiter.line()).toBe('INSERTED 202\r\n')
    expect(await waiter.line()).toBe('USING default\r\n')
    expect(await waiter.line()).toBe('USING u\r\n')
  })
})

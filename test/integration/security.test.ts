/**
 * TLS, mutual TLS, token authentication and the limits before trust, on a
 * real in-process server with real handshakes (Node's tls client) and
 * certificates made by openssl at test time (helpers/certs.ts).
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { BeanstalkServer, type ListenAddress } from '../../src/server/server.js'
import { startReading } from '../../src/server/socket-io.js'
import { openStore } from '../../src/store/open.js'
import { systemClock } from '../../src/util/clock.js'
import { loadTls, loadTokens } from '../../src/server/credentials.js'
import type { PendingLimits } from '../../src/server/pending.js'
import { RawClient } from '../helpers/client.js'
import { fingerprintOf, makeCerts, type CertSet } from '../helpers/certs.js'
import { fillUntilUnread, settled } from '../helpers/stall.js'

const TOKEN = 'a-test-token-0123456789abcdef'

let tmp = ''
let certs: CertSet | null = null
let tokenFile = ''
const servers: BeanstalkServer[] = []
const stores: { close(): void }[] = []
const clients: RawClient[] = []

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-sec-'))
  certs = makeCerts(path.join(tmp, 'certs'))
  tokenFile = path.join(tmp, 'tokens')
  fs.writeFileSync(tokenFile, `# test tokens\n${TOKEN}\n`, { mode: 0o600 })
}, 60_000)

afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  await Promise.all(servers.splice(0).map((s) => s.close()))
  for (const s of stores.splice(0)) s.close()
})

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }))

interface Started {
  readonly server: BeanstalkServer
  /** Ports by listener, in the order given. */
  readonly ports: number[]
}

/** A server with the given listeners (port 0 on 127.0.0.1), the test certificates and token file. */
async function start(
  listeners: Omit<ListenAddress & { host: string; port: number }, 'host' | 'port'>[],
  opts: { mutual?: boolean; pending?: PendingLimits; binlogDir?: string } = {},
): Promise<Started> {
  const c = certs!
  const log = pino({ level: 'silent' })
  const server = new BeanstalkServer({
    awaitStore: opts.binlogDir !== undefined,
    maxJobSize: 65535,
    binlogMaxSize: 10485760,
    log,
    security: {
      tls: loadTls({ cert: c.serverCert, key: c.serverKey, ca: opts.mutual === true ? c.caCert : null }, () => undefined),
      tokens: loadTokens(tokenFile, () => undefined),
      pending: opts.pending ?? { timeoutMs: 10_000, max: 1024 },
    },
  })
  if (opts.binlogDir !== undefined) {
    const binlog = await openStore(
      { engine: 'binlog', dir: opts.binlogDir, fileSize: 1 << 20, fsyncMs: 0, fsyncNever: false, maxJobSize: 65535, log, clock: systemClock },
      server.restoreInto,
    )
    stores.push(binlog)
    server.serve(binlog)
  }
  servers.push(server)
  const ports: number[] = []
  for (const l of listeners) {
    const a = await server.listen({ host: '127.0.0.1', port: 0, ...l })
    ports.push((a as net.AddressInfo).port)
  }
  return { server, ports }
}

const track = (c: RawClient): RawClient => {
  clients.push(c)
  return c
}
const tlsClient = async (port: number, opts: tls.ConnectionOptions = {}): Promise<RawClient> =>
  track(await RawClient.connectTls(port, { ca: fs.readFileSync(certs!.caCert), ...opts }))
const plainClient = async (port: number): Promise<RawClient> => track(await RawClient.connect(port))

/** Polls `cond` every 10 ms for at most `ms`. */
async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('TLS listeners', () => {
  it('serve the protocol over TLS 1.3 and TLS 1.2, and refuse TLS 1.1', async () => {
    const { ports } = await start([{ tls: true }])
    for (const v of ['TLSv1.3', 'TLSv1.2'] as const) {
      const c = await tlsClient(ports[0]!, { minVersion: v, maxVersion: v })
      expect((c.raw as tls.TLSSocket).getProtocol()).toBe(v)
      expect(await c.call('put 0 0 60 5\r\nhello\r\n')).toMatch(/^INSERTED \d+\r\n$/)
      expect(await c.call('reserve-with-timeout 0\r\n')).toMatch(/^RESERVED \d+ 5\r\n$/)
      expect(await c.read(7)).toBe('hello\r\n')
    }
    await expect(tlsClient(ports[0]!, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })).rejects.toThrow()
  })
})

describe('mutual TLS (--tls-ca)', () => {
  it('serves a client whose certificate the CA signed; refuses none, another CA\'s and an expired one', async () => {
    const c = certs!
    const { server, ports } = await start([{ tls: true }], { mutual: true })
    const port = ports[0]!
    const good = await tlsClient(port, { cert: fs.readFileSync(c.clientCert), key: fs.readFileSync(c.clientKey) })
    expect(await good.call('list-tube-used\r\n')).toBe('USING default\r\n')
    const refused = async (opts: tls.ConnectionOptions): Promise<void> => {
      // TLS 1.3 clients finish their side first and learn of the refusal from an alert: either way no reply ever comes.
      const outcome = await new Promise<string>((resolve) => {
        const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fs.readFileSync(c.caCert), ...opts }, () => s.write('list-tube-used\r\n'))
        let got = ''
        const t = setTimeout(() => resolve(`still open; got ${JSON.stringify(got)}`), 3000)
        s.on('data', (d: Buffer) => (got += d.toString('latin1')))
        s.on('error', () => undefined)
        s.on('close', () => {
          clearTimeout(t)
          resolve(got === '' ? 'refused' : `served: ${JSON.stringify(got)}`)
        })
      })
      expect(outcome).toBe('refused')
    }
    const failuresBefore = server.security()!.handshakeFailures
    await refused({})
    await refused({ cert: fs.readFileSync(c.strangerCert), key: fs.readFileSync(c.strangerKey) })
    await refused({ cert: fs.readFileSync(c.expiredCert), key: fs.readFileSync(c.expiredKey) })
    await until(() => server.security()!.handshakeFailures === failuresBefore + 3, 'three counted handshake failures')
    // Refused clients never became connections.
    expect((await good.stats('stats\r\n'))['total-connections']).toBe('1')
  })
})

describe('token authentication', () => {
  it('auth with the right token: AUTHENTICATED, then the plain protocol; commands in the same packet run', async () => {
    const { ports } = await start([{ tls: true, auth: true }, { auth: true }])
    for (const c of [await tlsClient(ports[0]!), await plainClient(ports[1]!)]) {
      c.send(`auth ${TOKEN}\r\nput 0 0 60 2\r\nhi\r\nlist-tube-used\r\n`)
      expect(await c.line()).toBe('AUTHENTICATED\r\n')
      expect(await c.line()).toMatch(/^INSERTED \d+\r\n$/)
      expect(await c.line()).toBe('USING default\r\n')
      // Once in, `auth` is not a command any more (the reference does not know it).
      expect(await c.call(`auth ${TOKEN}\r\n`)).toBe('UNKNOWN_COMMAND\r\n')
    }
  })

  it('an auth line sent a byte at a time works', async () => {
    const { ports } = await start([{ auth: true }])
    const c = await plainClient(ports[0]!)
    for (const ch of `auth ${TOKEN}\r\nlist-tube-used\r\n`) {
      c.send(ch)
      await new Promise((r) => setTimeout(r, 1))
    }
    expect(await c.line()).toBe('AUTHENTICATED\r\n')
    expect(await c.line()).toBe('USING default\r\n')
  })

  it('a wrong token, a command before auth, a malformed or over-long line: UNAUTHORIZED and a close; nothing is run or counted', async () => {
    const { server, ports } = await start([{ tls: true, auth: true }, { auth: true }])
    const attempts = [
      `auth wrong-${TOKEN}\r\n`,
      `auth ${TOKEN.slice(0, -1)}\r\n`,
      `auth ${TOKEN}x\r\n`,
      'put 0 0 60 5\r\nhello\r\n', // a put with its body in the same packet
      'stats\r\n',
      `auth  ${TOKEN}\r\n`,
      `AUTH ${TOKEN}\r\n`,
      `auth ${TOKEN}\r\r\n`,
      'auth \r\n',
      `auth ${'t'.repeat(300)}`, // no line end within 224 bytes
    ]
    let n = 0
    for (const [i, port] of ports.entries()) {
      for (const a of attempts) {
        const c = i === 0 ? await tlsClient(port) : await plainClient(port)
        c.send(a)
        expect(await c.line(), a).toBe('UNAUTHORIZED\r\n')
        expect(await c.closedByServer(), a).toBe(true)
        n++
      }
    }
    expect(server.security()!.authFailures).toBe(n)
    const c = await plainClient(ports[1]!)
    c.send(`auth ${TOKEN}\r\n`)
    expect(await c.line()).toBe('AUTHENTICATED\r\n')
    const st = await c.stats('stats\r\n')
    expect([st['total-jobs'], st['current-jobs-ready'], st['cmd-put'], st['cmd-stats']]).toEqual(['0', '0', '0', '1'])
    // Only the authenticated connection was ever a connection.
    expect([st['total-connections'], st['current-connections']]).toEqual(['1', '1'])
  })

  it('a plaintext listener without auth beside them is the reference: auth is UNKNOWN_COMMAND', async () => {
    const { ports } = await start([{}, { auth: true }])
    const c = await plainClient(ports[0]!)
    expect(await c.call(`auth ${TOKEN}\r\n`)).toBe('UNKNOWN_COMMAND\r\n')
    expect(await c.call('put 0 0 60 2\r\nok\r\n')).toMatch(/^INSERTED \d+\r\n$/)
  })

  it('tokens reload: a new token is accepted and the old refused; authenticated connections stay', async () => {
    const { server, ports } = await start([{ auth: true }])
    const before = await plainClient(ports[0]!)
    expect(await before.call(`auth ${TOKEN}\r\n`)).toBe('AUTHENTICATED\r\n')
    const file = path.join(tmp, 'tokens-new')
    fs.writeFileSync(file, 'the-new-token-fedcba9876543210\n', { mode: 0o600 })
    server.updateCredentials(null, loadTokens(file, () => undefined))
    const old = await plainClient(ports[0]!)
    expect(await old.call(`auth ${TOKEN}\r\n`)).toBe('UNAUTHORIZED\r\n')
    const fresh = await plainClient(ports[0]!)
    expect(await fresh.call('auth the-new-token-fedcba9876543210\r\n')).toBe('AUTHENTICATED\r\n')
    expect(await before.call('list-tube-used\r\n')).toBe('USING default\r\n')
  })
})

describe('certificate reload', () => {
  it('new handshakes see the new certificate; connections already up keep theirs', async () => {
    const c = certs!
    const { server, ports } = await start([{ tls: true }])
    const old = await tlsClient(ports[0]!)
    const fp = (s: RawClient): string => (s.raw as tls.TLSSocket).getPeerCertificate().fingerprint256
    expect(fp(old)).toBe(fingerprintOf(c.serverCert))
    server.updateCredentials(loadTls({ cert: c.server2Cert, key: c.server2Key, ca: null }, () => undefined), null)
    const fresh = await tlsClient(ports[0]!)
    expect(fp(fresh)).toBe(fingerprintOf(c.server2Cert))
    expect((fresh.raw as tls.TLSSocket).getPeerCertificate().subject.CN).toBe('tsb-reloaded')
    expect(await old.call('list-tube-used\r\n')).toBe('USING default\r\n')
    expect(server.security()!.certificateNotAfter).toBe(new Date((fresh.raw as tls.TLSSocket).getPeerCertificate().valid_to).getTime())
  })
})

describe('limits before trust', () => {
  it('a connection that neither finishes its handshake nor authenticates is closed at the deadline', async () => {
    const { server, ports } = await start([{ tls: true }, { auth: true }, { tls: true, auth: true }], { pending: { timeoutMs: 300, max: 100 } })
    const silent = await Promise.all(ports.map((p) => plainClient(p))) // no ClientHello, no auth line
    const handshaken = await tlsClient(ports[2]!) // handshake done, never authenticates
    await until(() => server.security()!.pending === 4, 'four pending')
    for (const s of [...silent, handshaken]) expect(await s.closedByServer(3000)).toBe(true)
    expect(server.security()!.pendingTimedOut).toBe(4)
    expect(server.security()!.pending).toBe(0)
    // A client that did finish in time is not touched by the deadline.
    const ok = await tlsClient(ports[0]!)
    await new Promise((r) => setTimeout(r, 500))
    expect(await ok.call('list-tube-used\r\n')).toBe('USING default\r\n')
  })

  it('at the cap, new connections are closed at once; trusted clients are served; a freed slot admits again', async () => {
    const { server, ports } = await start([{ tls: true }], { pending: { timeoutMs: 60_000, max: 5 } })
    const trusted = await tlsClient(ports[0]!)
    const hogs = await Promise.all(Array.from({ length: 5 }, () => plainClient(ports[0]!)))
    await until(() => server.security()!.pending === 5, 'five pending')
    const extra = await plainClient(ports[0]!)
    expect(await extra.closedByServer()).toBe(true)
    expect(server.security()!.pendingRefused).toBe(1)
    expect(await trusted.call('put 0 0 60 2\r\nok\r\n')).toMatch(/^INSERTED \d+\r\n$/)
    hogs[0]!.close()
    await until(() => server.security()!.pending === 4, 'a slot freed')
    const next = await tlsClient(ports[0]!)
    expect(await next.call('list-tube-used\r\n')).toBe('USING default\r\n')
  })

  it('1,000 pending handshakes do not starve an established client', async () => {
    const { server, ports } = await start([{ tls: true }], { pending: { timeoutMs: 60_000, max: 1024 } })
    const worker = await tlsClient(ports[0]!)
    const idle: net.Socket[] = []
    try {
      for (let i = 0; i < 1000; i++) {
        const s = net.connect(ports[0]!, '127.0.0.1')
        s.on('error', () => undefined)
        idle.push(s)
      }
      await until(() => server.security()!.pending === 1000, '1,000 pending', 10_000)
      // Half of them trickle one byte of a ClientHello each meanwhile (slowloris).
      for (const s of idle.slice(0, 500)) s.write(Buffer.from([0x16]))
      for (let i = 0; i < 200; i++) {
        expect(await worker.call(`put 0 0 60 3\r\nj${String(i % 10)}!\r\n`)).toMatch(/^INSERTED \d+\r\n$/)
        const r = await worker.call('reserve-with-timeout 0\r\n')
        const id = /^RESERVED (\d+) 3\r\n$/.exec(r)?.[1]
        expect(id, r).toBeDefined()
        await worker.read(5)
        expect(await worker.call(`delete ${id}\r\n`)).toBe('DELETED\r\n')
      }
      expect(server.security()!.pending).toBe(1000)
    } finally {
      for (const s of idle) s.destroy()
    }
  })
})

/** A raw TLS socket to `port` once its handshake is done (for flow-control tests that drive reads themselves). */
function tlsSocket(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fs.readFileSync(certs!.caCert) }, () => resolve(s))
    s.once('error', reject)
  })
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('TLS sockets take the stream path of socket-io', () => {
  it('startReading does not use the shared buffer for a TLS socket', async () => {
    const srv = tls.createServer({ cert: fs.readFileSync(certs!.serverCert), key: fs.readFileSync(certs!.serverKey) })
    const got = new Promise<boolean>((resolve) => srv.on('secureConnection', (s) => resolve(startReading(s, () => undefined))))
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
    try {
      const c = await tlsClient((srv.address() as net.AddressInfo).port)
      expect(await got).toBe(false)
      c.close()
    } finally {
      srv.close()
    }
  })

  it('a half-close with commands still queued gets every reply, then EOF', async () => {
    const { ports } = await start([{ tls: true, auth: true }])
    const watcher = await tlsClient(ports[0]!)
    expect(await watcher.call(`auth ${TOKEN}\r\n`)).toBe('AUTHENTICATED\r\n')
    const body = 'y'.repeat(60 * 1024)
    const id = /^INSERTED (\d+)/.exec(await watcher.call(`put 0 0 60 ${body.length}\r\n${body}\r\n`))![1]
    const n = 100
    const s = await tlsSocket(ports[0]!)
    s.pause()
    s.write(`auth ${TOKEN}\r\n${`peek ${id}\r\n`.repeat(n)}`)
    s.end()
    await sleep(300) // the server fills the socket buffers and stops on backpressure
    const reply = Buffer.from(`FOUND ${id} ${body.length}\r\n${body}\r\n`)
    const got = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      const t = setTimeout(() => reject(new Error(`no EOF after ${Buffer.concat(chunks).length} bytes`)), 10_000)
      s.on('data', (d: Buffer) => chunks.push(d))
      s.on('end', () => {
        clearTimeout(t)
        resolve(Buffer.concat(chunks))
      })
      s.resume()
    })
    const want = Buffer.concat([Buffer.from('AUTHENTICATED\r\n'), ...Array.from({ length: n }, () => reply)])
    expect(got.length).toBe(want.length)
    expect(got.equals(want)).toBe(true)
    s.destroy()
  })

  it('a client that half-closes while waiting in reserve gets TIMED_OUT', async () => {
    const { ports } = await start([{ tls: true }])
    const c = await tlsClient(ports[0]!)
    c.send('reserve\r\n')
    expect(await c.quiet(100)).toBe('')
    c.halfClose()
    expect(await c.line()).toBe('TIMED_OUT\r\n')
    expect(await c.closedByServer()).toBe(true)
  })

  it('a TLS client that never reads is stopped being read, and gets exact replies once it reads', async () => {
    const { ports } = await start([{ tls: true }])
    const watcher = await tlsClient(ports[0]!)
    const body = 'x'.repeat(60 * 1024)
    const id = /^INSERTED (\d+)/.exec(await watcher.call(`put 0 0 60 ${body.length}\r\n${body}\r\n`))![1]
    const stalled = await tlsSocket(ports[0]!)
    stalled.on('error', () => undefined)
    stalled.pause()
    await fillUntilUnread(stalled, Buffer.from(`peek ${id}\r\n`.repeat(8192)), 10_000)
    const peeked = async (): Promise<number> => Number((await watcher.stats('stats\r\n'))['cmd-peek'])
    const first = await settled(peeked)
    expect(await peeked()).toBe(first)
    expect(first).toBeGreaterThan(0)
    expect(first).toBeLessThan(1000)
    expect(await watcher.call('list-tube-used\r\n', 500)).toBe('USING default\r\n')
    // It reads again: every reply arrives whole, and the server resumes its input.
    const reply = `FOUND ${id} ${body.length}\r\n${body}\r\n`
    const got = await new Promise<string>((resolve, reject) => {
      let buf = Buffer.alloc(0)
      const t = setTimeout(() => reject(new Error('no reply after resuming')), 5000)
      const onData = (d: Buffer): void => {
        buf = Buffer.concat([buf, d])
        if (buf.length < 3 * reply.length) return
        clearTimeout(t)
        stalled.off('data', onData)
        resolve(buf.subarray(0, 3 * reply.length).toString('latin1'))
      }
      stalled.on('data', onData)
      stalled.resume()
    })
    expect(got).toBe(reply.repeat(3))
    stalled.on('data', () => undefined)
    let later = first
    for (let i = 0; i < 200 && later <= first; i++) {
      await sleep(10)
      later = await peeked()
    }
    expect(later).toBeGreaterThan(first)
    stalled.destroy()
  })

  it('with -b -f 0, replies wait for the fsync (the reply gate) and reach TLS clients in order', async () => {
    const { ports } = await start([{ tls: true, auth: true }], { binlogDir: fs.mkdtempSync(path.join(tmp, 'b-')) })
    const c = await tlsClient(ports[0]!)
    const cmds = [`auth ${TOKEN}\r\n`, ...Array.from({ length: 50 }, (_, i) => `put 0 0 60 2\r\n${String(i).padStart(2, '0')}\r\n`), 'stats-tube default\r\n']
    c.send(cmds.join(''))
    expect(await c.line()).toBe('AUTHENTICATED\r\n')
    const ids: number[] = []
    for (let i = 0; i < 50; i++) ids.push(Number(/^INSERTED (\d+)\r\n$/.exec(await c.line())![1]))
    expect(ids).toEqual(Array.from({ length: 50 }, (_, i) => ids[0]! + i))
    expect(await c.line()).toMatch(/^OK \d+\r\n$/)
  })
})

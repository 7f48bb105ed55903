/**
 * The PostgreSQL leader's lock session must never leave its backend waiting
 * in the middle of a statement: PostgreSQL starts idle_session_timeout only
 * after it has sent ReadyForQuery, so a leader paused between a statement's
 * Parse/Describe and its Bind/Execute would hold the advisory lock, and the
 * namespace, until it resumed (src/store/postgres/leader.ts).
 *
 * A proxy between the leader and a real cluster (helpers/postgres.ts) plays
 * the pause: it forwards the lock session's first heartbeat and then freezes
 * that connection in both directions, as a SIGSTOP right after the write
 * would. A standby must then take the lock within the session timeout and a
 * margin; it also checks that, once it tries for the lock, the lock
 * session speaks the simple query protocol only.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Leader } from '../../src/store/postgres/leader.js'
import { PgCluster, pgMissing, stopAllClusters } from '../helpers/postgres.js'

const missing = pgMissing()
if (missing !== null) console.warn(`skipping the PostgreSQL lock session test: ${missing}`)

/** The types of the client's messages in `bytes`, which starts at a message. */
function messageTypes(bytes: Buffer): string[] {
  const types: string[] = []
  for (let at = 0; at + 5 <= bytes.length; at += 1 + bytes.readInt32BE(at + 1)) types.push(String.fromCharCode(bytes[at]!))
  return types
}

interface Link {
  /** Everything the client sent that was forwarded. */
  sent: Buffer
  frozen: boolean
}

/** A Unix-socket proxy to `target`; a connection freezes once a forwarded client chunk contains `freezeAfter`. */
class FreezingProxy {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbpx-'))
  readonly links: Link[] = []
  private readonly server: net.Server
  private readonly sockets = new Set<net.Socket>()

  constructor(target: string, freezeAfter: string) {
    this.server = net.createServer((client) => {
      const link: Link = { sent: Buffer.alloc(0), frozen: false }
      this.links.push(link)
      const upstream = net.connect(target)
      for (const s of [client, upstream]) {
        this.sockets.add(s)
        s.on('close', () => this.sockets.delete(s))
        s.on('error', () => undefined)
      }
      client.on('data', (d) => {
        if (link.frozen) return
        link.sent = Buffer.concat([link.sent, d])
        upstream.write(d)
        if (d.includes(freezeAfter)) {
          // Paused: nothing more either way, and the client's close never reaches the server.
          link.frozen = true
          upstream.pause()
        }
      })
      upstream.on('data', (d) => {
        if (!link.frozen) client.write(d)
      })
      client.on('close', () => {
        if (!link.frozen) upstream.destroy()
      })
      upstream.on('close', () => client.destroy())
    })
  }

  /** Listens as a PostgreSQL socket directory would (dir/.s.PGSQL.port). */
  listen(port: number): Promise<void> {
    return new Promise((resolve) => this.server.listen(path.join(this.dir, `.s.PGSQL.${port}`), resolve))
  }

  url(port: number): string {
    return `postgres://postgres@localhost:${port}/postgres?host=${encodeURIComponent(this.dir)}`
  }

  close(): void {
    this.server.close()
    for (const s of this.sockets) s.destroy()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe.skipIf(missing !== null)('postgres lock session', () => {
  let cluster: PgCluster
  beforeAll(() => {
    cluster = PgCluster.start()
  }, 120_000)
  afterAll(() => {
    stopAllClusters()
  })

  it('a leader frozen right after sending its first heartbeat loses the lock after the session timeout; a standby takes it', { timeout: 30_000 }, async () => {
    const proxy = new FreezingProxy(path.join(cluster.dir, `.s.PGSQL.${cluster.port}`), 'pg_locks')
    await proxy.listen(cluster.port)
    const log = pino({ level: 'silent' })
    const lostAt: number[] = []
    const schema = 'tsb_frozen'
    const sessionTimeoutMs = 1000
    try {
      const frozen = await Leader.acquire({ url: proxy.url(cluster.port), schema, log, sessionTimeoutMs, onLost: () => lostAt.push(performance.now()) })
      const t0 = performance.now()
      const standby = await Promise.race([
        Leader.acquire({ url: cluster.url, schema, log, sessionTimeoutMs, pollMs: 50, onLost: () => undefined }),
        sleep(sessionTimeoutMs + 5000).then(() => null),
      ])
      const tookAt = performance.now()
      expect(standby, 'the standby never got the lock: the frozen leader\'s backend is waiting mid-statement').not.toBeNull()
      // Not before the frozen leader's own fence: it had stopped trusting its leadership first.
      expect(frozen.fresh()).toBe(false)
      expect(lostAt).toHaveLength(1)
      expect(lostAt[0]!).toBeLessThan(tookAt)
      expect(tookAt - t0).toBeGreaterThanOrEqual(sessionTimeoutMs / 2)
      await standby!.release()
      frozen.abandon()
      const lockSession = proxy.links.find((l) => l.sent.includes('pg_try_advisory_lock'))!
      expect(lockSession.frozen).toBe(true)
      // From the lock attempt on (postgres.js looks up array types first, before any lock is held).
      const from = lockSession.sent.indexOf('SELECT pg_try_advisory_lock') - 5
      expect(lockSession.sent[from]).toBe('Q'.charCodeAt(0))
      expect(new Set(messageTypes(lockSession.sent.subarray(from)))).toEqual(new Set(['Q']))
    } finally {
      proxy.close()
    }
  })
})

/**
 * The whole server with `-b -f 0 --extensions` under concurrent load with
 * tags in use (idempotency keys with and without a cooldown, groups and
 * after-jobs, concurrency keys), killed with SIGKILL at random moments and
 * restarted on the same directory, 12 times, for each engine. After every
 * restart:
 * - no idempotency key that was acknowledged is inserted twice: a put with
 *   it answers the original id (`INSERTED <id> <STATE>`), or
 *   `INSERTED <id> DELETED` within its cooldown;
 * - no group dependency is lost: an after-job whose group still has a live
 *   member is held (`state: delayed`, never reserved);
 * - every acknowledged job is there, no acknowledged delete comes back.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { cliFixture } from '../helpers/cli-fixture.js'
import { RawClient } from '../helpers/client.js'
import { killNineRounds } from '../helpers/process.js'
import { prng } from '../helpers/prng.js'
import { ENGINES } from '../store/engines.js'

const fx = cliFixture('tsb-ext-crash-')

interface Known {
  body: string
  /** idp:<key>, its cooldown (0 or an hour: never runs out here). */
  key: string | null
  ttl: number
  group: string | null
  after: string | null
  /** When (Truth.tick) the put was sent, and when its INSERTED came back. */
  sent: number
  acked: number
}

/** What the clients were told, across every round of one engine's run. */
class Truth {
  readonly live = new Map<number, Known>()
  /** Keys whose job was deleted with a cooldown: the id they answer with. */
  readonly cooling = new Map<string, number>()
  readonly deleted = new Set<number>()
  /** Jobs with a put or delete in flight when the server died: either outcome is right. */
  readonly uncertain = new Set<number>()
  /** Puts with a key in flight when the server died (by key): their job may or may not exist. */
  readonly uncertainKeys = new Map<string, Known>()
  maxId = 0
  /** A counter that orders the clients' sends and acknowledgements. */
  tick = 0
  /** Checks that found a held after-job held, and keys answered by a restored job or cooldown. */
  heldChecked = 0
  keysChecked = 0

  /**
   * An after-job that cannot have been released: a member of its group was
   * acknowledged before the after-job's put was sent and has been live (and
   * certain) ever since, so its group never was complete meanwhile.
   */
  certainlyHeld(a: Known): boolean {
    if (a.after === null) return false
    for (const [id, m] of this.live) if (m.group === a.after && m.acked < a.sent && !this.uncertain.has(id)) return true
    return false
  }

  owner(key: string): number | undefined {
    for (const [id, k] of this.live) if (k.key === key) return id
    return undefined
  }
}

const KEYS = 30
const GROUPS = 6

/** One client's load until its connection dies. */
async function load(t: Truth, port: number, seed: number): Promise<void> {
  const rnd = prng(seed)
  // The server may already be gone: then this client has nothing to do.
  const c = await RawClient.connect(port).catch(() => null)
  if (c === null) return
  let inflight = 0
  let inflightPut: Known | null = null
  try {
    for (;;) {
      inflight = 0
      inflightPut = null
      if (rnd.chance(t.live.size < 150 ? 0.6 : 0.35) || t.live.size < 5) {
        const k: Known = { body: `job-${seed}-${rnd.int(1e9)}`, key: null, ttl: 0, group: null, after: null, sent: 0, acked: 0 }
        const tags: string[] = []
        if (rnd.chance(0.5)) {
          k.key = `k${rnd.int(KEYS)}`
          k.ttl = rnd.chance(0.5) ? 3600 : 0
          tags.push(k.ttl > 0 ? `idp:${k.key}:${k.ttl}` : `idp:${k.key}`)
        }
        if (rnd.chance(0.3)) tags.push(`grp:${(k.group = `g${rnd.int(GROUPS)}`)}`)
        else if (rnd.chance(0.3)) tags.push(`aft:${(k.after = `g${rnd.int(GROUPS)}`)}`)
        if (rnd.chance(0.3)) tags.push(`con:c${rnd.int(3)}:2`)
        inflightPut = k
        k.sent = ++t.tick
        const reply = await c.call(`put 0 0 100 ${k.body.length}${tags.map((x) => ` ${x}`).join('')}\r\n${k.body}\r\n`, 5000)
        const m = /^INSERTED (\d+)( [A-Z]+)?\r\n$/.exec(reply)
        expect(m, reply).not.toBeNull()
        const id = Number(m![1])
        k.acked = ++t.tick
        if (m![2] === undefined) {
          t.live.set(id, k)
          t.maxId = Math.max(t.maxId, id)
        } else if (k.key !== null) {
          // A duplicate names the key's job we know of.
          const known = m![2] === ' DELETED' ? t.cooling.get(k.key) : t.owner(k.key)
          expect(id, `${k.key} answered ${reply.trim()}`).toBe(known)
        }
      } else if (rnd.chance(0.6)) {
        const ids = [...t.live.keys()]
        const id = ids[rnd.int(ids.length)]!
        inflight = id
        if ((await c.call(`delete ${id}\r\n`, 5000)) === 'DELETED\r\n') {
          const k = t.live.get(id)!
          t.live.delete(id)
          t.deleted.add(id)
          if (k.key !== null && k.ttl > 0) t.cooling.set(k.key, id)
        }
      } else {
        const reply = await c.call('reserve-batch 3\r\n', 5000)
        const n = Number(/^RESERVED_BATCH (\d+)\r\n$/.exec(reply)![1])
        for (let i = 0; i < n; i++) {
          const h = /^RESERVED (\d+) (\d+)\r\n$/.exec(await c.line(5000))!
          await c.read(Number(h[2]) + 2, 5000)
          const id = Number(h[1])
          // A held after-job is never handed out while its group has a live member.
          const k = t.live.get(id)
          if (k !== undefined) expect(t.certainlyHeld(k), `after-job ${id} of ${k.after} reserved while held`).toBe(false)
        }
        // Give them back: reserved jobs replay as ready anyway.
        c.send('quit\r\n')
        return
      }
    }
  } catch (err) {
    if (err instanceof Error && err.name === 'AssertionError') throw err
    // The server was killed: what was not acknowledged may or may not have happened.
    if (inflight !== 0) t.uncertain.add(inflight)
    if (inflightPut?.key != null) t.uncertainKeys.set(inflightPut.key, inflightPut)
  } finally {
    c.close()
  }
}

/** After a restart: settle what was uncertain, then check every promise. */
async function verify(t: Truth, port: number): Promise<void> {
  const c = await RawClient.connect(port)
  for (const id of t.uncertain) {
    if (!t.live.has(id)) continue
    const head = await c.call(`stats-job ${id}\r\n`)
    if (head === 'NOT_FOUND\r\n') {
      const k = t.live.get(id)!
      t.live.delete(id)
      t.deleted.add(id)
      if (k.key !== null && k.ttl > 0) t.cooling.set(k.key, id)
    } else {
      await c.read(Number(/^OK (\d+)\r\n$/.exec(head)![1]) + 2)
    }
  }
  t.uncertain.clear()
  for (const [id, k] of t.live) {
    const st = await c.stats(`stats-job ${id}\r\n`)
    expect(st['id'], `job ${id}`).toBe(String(id))
    if (t.certainlyHeld(k)) {
      expect(st['state'], `after-job ${id} of ${k.after}, which has members`).toBe('delayed')
      t.heldChecked++
    }
  }
  for (const id of t.deleted) expect(await c.call(`peek ${id}\r\n`), `deleted job ${id}`).toBe('NOT_FOUND\r\n')
  // Every key answers with the job it names, or its cooldown; the others are free.
  for (let i = 0; i < KEYS; i++) {
    const key = `k${i}`
    const owner = t.owner(key)
    const reply = await c.call(`put 0 0 100 1 idp:${key}\r\nv\r\n`)
    const dup = /^INSERTED (\d+) (READY|DELAYED|BURIED)\r\n$/.exec(reply)
    if (owner === undefined && dup !== null && t.uncertainKeys.has(key) && Number(dup[1]) > t.maxId) {
      // The put in flight at the kill was kept: its job owns the key now.
      t.live.set(Number(dup[1]), t.uncertainKeys.get(key)!)
      t.maxId = Number(dup[1])
    } else if (owner !== undefined) {
      expect(reply, `key ${key}`).toMatch(new RegExp(`^INSERTED ${owner} (READY|DELAYED|BURIED)\\r\\n$`))
      t.keysChecked++
    } else if (t.cooling.has(key)) {
      expect(reply, `key ${key} cooling`).toBe(`INSERTED ${t.cooling.get(key)} DELETED\r\n`)
      t.keysChecked++
    } else {
      const id = Number(/^INSERTED (\d+)\r\n$/.exec(reply)![1])
      t.live.set(id, { body: 'v', key, ttl: 0, group: null, after: null, sent: t.tick, acked: t.tick })
      t.maxId = Math.max(t.maxId, id)
    }
  }
  t.uncertainKeys.clear()
  c.close()
}

describe.each(ENGINES)('$name with --extensions', (engine) => {
  it('survives 12 kill -9 under tagged load with -f 0: no key inserted twice, no group dependency lost', { timeout: 120_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(fx.tmp(), `${engine.name}-`))
    const args = ['-b', dir, ...engine.flags, '-f', '0', '-s', '65536', '-p0', '-l127.0.0.1', '--extensions']
    const t = new Truth()
    const rnd = prng(20261202)
    await killNineRounds(
      args,
      12,
      (n) => rnd.int(n),
      (port) => verify(t, port),
      (port, round) => [0, 1, 2, 3].map((k) => load(t, port, round * 10 + k)),
    )
    expect(t.deleted.size).toBeGreaterThan(30)
    // The checks that matter did run: restored keys and cooldowns, and held after-jobs.
    expect(t.keysChecked).toBeGreaterThan(50)
    expect(t.heldChecked).toBeGreaterThan(5)
    expect([...t.live.values()].filter((k) => k.key !== null).length).toBeGreaterThan(3)
  })
})

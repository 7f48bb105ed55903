/**
 * The PostgreSQL store (--store postgres) against a real PostgreSQL cluster
 * of the test's own (helpers/postgres.ts), through the real command line:
 * replay of every job state, kill -9 under load at -f 0, hot standbys and
 * failover, fencing of a paused leader, a database that stops under load,
 * namespaces, and what is refused at start.
 */
import postgres from 'postgres'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { Truth, load, verify } from '../helpers/crash-load.js'
import { get } from '../helpers/http.js'
import { PgCluster, pgMissing, stopAllClusters } from '../helpers/postgres.js'
import { ensureBuilt, killAll, killNineRounds, spawnCli, type Proc } from '../helpers/process.js'
import { prng } from '../helpers/prng.js'

const missing = pgMissing()
if (missing !== null) console.warn(`skipping the PostgreSQL store tests: ${missing}`)

let cluster: PgCluster
let schemas = 0
/** A fresh namespace per test: tests share the cluster, not their queues. */
const newSchema = (): string => `tsb_t${++schemas}`

const pgArgs = (schema: string, extra: readonly string[] = []): string[] => [
  '--store',
  'postgres',
  '--pg-url',
  cluster.url,
  '--pg-schema',
  schema,
  '-p0',
  '-l127.0.0.1',
  ...extra,
]

/** Resolves once the process logs that it waits as a standby. */
async function standby(p: Proc, what = 'standby: another tsbeanstalkd leads'): Promise<void> {
  await p.until(() => p.logLines.some((l) => String(l['msg']).includes(what)), `the "${what}" log line`, 10_000)
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe.skipIf(missing !== null)('postgres store', () => {
  beforeAll(() => {
    ensureBuilt()
    cluster = PgCluster.start()
  }, 120_000)
  afterEach(async () => {
    await killAll()
  })
  afterAll(() => {
    stopAllClusters()
  })

  it('replays ready, delayed, buried (in bury order), kicked and reserved jobs; deleted ones stay deleted; ids keep rising', { timeout: 60_000 }, async () => {
    const args = pgArgs(newSchema(), ['-f', '0'])
    const first = spawnCli(args)
    const port = (await first.listening(10_000)).port!
    const c = await RawClient.connect(port)
    const put = async (pri: number, delay: number, body: string): Promise<number> =>
      Number(/^INSERTED (\d+)\r\n$/.exec(await c.call(`put ${pri} ${delay} 60 ${body.length}\r\n${body}\r\n`))![1])
    const reserve = async (): Promise<number> => {
      const m = /^RESERVED (\d+) (\d+)\r\n$/.exec(await c.call('reserve-with-timeout 0\r\n'))!
      await c.read(Number(m[2]) + 2)
      return Number(m[1])
    }
    const ready = await put(5, 0, 'ready job')
    const delayed = await put(6, 3600, 'delayed job')
    const gone = await put(1, 0, 'deleted job')
    expect(await c.call(`delete ${gone}\r\n`)).toBe('DELETED\r\n')
    // Reserved in priority order: ready (5), then the ones below.
    const buriedFirst = await put(7, 0, 'buried first')
    const buriedSecond = await put(8, 0, 'buried second')
    const kicked = await put(9, 0, 'kicked job')
    const reserved = await put(10, 0, 'reserved job')
    expect(await reserve()).toBe(ready)
    expect(await c.call(`release ${ready} 5 0\r\n`)).toBe('RELEASED\r\n')
    expect(await reserve()).toBe(ready)
    expect(await c.call(`release ${ready} 5 0\r\n`)).toBe('RELEASED\r\n')
    // ready is 5, the most urgent: bury the others by reserving them through peeks of their ids.
    for (const id of [kicked, buriedFirst, buriedSecond]) {
      expect(await c.call(`kick-job ${id}\r\n`)).toBe('NOT_FOUND\r\n') // ready jobs are not kickable
    }
    const sub = await RawClient.connect(port)
    const reserveId = async (want: number): Promise<void> => {
      // Reserve until `want` comes, releasing the others with their priority kept.
      const held: number[] = []
      for (;;) {
        const m = /^RESERVED (\d+) (\d+)\r\n$/.exec(await sub.call('reserve-with-timeout 0\r\n'))!
        await sub.read(Number(m[2]) + 2)
        const id = Number(m[1])
        if (id === want) break
        held.push(id)
      }
      for (const id of held) {
        const st = await sub.stats(`stats-job ${id}\r\n`)
        expect(await sub.call(`release ${id} ${st['pri']} 0\r\n`)).toBe('RELEASED\r\n')
      }
    }
    for (const id of [kicked, buriedFirst, buriedSecond]) {
      await reserveId(id)
      expect(await sub.call(`bury ${id} 20\r\n`)).toBe('BURIED\r\n')
    }
    expect(await c.call(`kick-job ${kicked}\r\n`)).toBe('KICKED\r\n')
    await reserveId(reserved)
    // What each job's counters are now: the restart must keep them.
    const FIELDS = ['tube', 'pri', 'delay', 'ttr', 'reserves', 'timeouts', 'releases', 'buries', 'kicks'] as const
    const ids = [ready, delayed, buriedFirst, buriedSecond, kicked, reserved]
    const before = new Map<number, Record<string, string>>()
    for (const id of ids) before.set(id, await c.stats(`stats-job ${id}\r\n`))
    sub.close()
    c.close()
    first.signal('SIGTERM')
    expect((await first.exited(10_000)).code).toBe(0)

    const second = spawnCli(args)
    const port2 = (await second.listening(10_000)).port!
    const d = await RawClient.connect(port2)
    const state = async (id: number): Promise<Record<string, string>> => d.stats(`stats-job ${id}\r\n`)
    for (const id of ids) {
      const was = before.get(id)!
      const now = await state(id)
      // A reserve is not a stored change (as in the reference's binlog): the reserved job's last one was its put.
      for (const f of FIELDS) if (!(id === reserved && f === 'reserves')) expect(now[f], `${f} of job ${id}`).toBe(was[f])
      expect(now['state'], `state of job ${id}`).toBe(was['state'] === 'reserved' ? 'ready' : was['state'])
    }
    expect(before.get(reserved)!['state']).toBe('reserved')
    expect((await state(delayed))['state']).toBe('delayed')
    expect(Number((await state(delayed))['time-left'])).toBeGreaterThan(3500)
    expect((await state(buriedFirst))['state']).toBe('buried')
    expect((await state(kicked))['kicks']).toBe('1')
    expect(await d.call(`peek ${gone}\r\n`)).toBe('NOT_FOUND\r\n')
    expect(await d.call(`peek ${delayed}\r\n`)).toBe(`FOUND ${delayed} 11\r\n`)
    expect(await d.read(13)).toBe('delayed job\r\n')
    // Bury order survived: kick 1 kicks the one buried first.
    expect(await d.call('kick 1\r\n')).toBe('KICKED 1\r\n')
    expect((await state(buriedFirst))['state']).toBe('ready')
    expect((await state(buriedSecond))['state']).toBe('buried')
    const next = Number(/^INSERTED (\d+)\r\n$/.exec(await d.call('put 0 0 10 1\r\nz\r\n'))![1])
    expect(next).toBe(reserved + 1)
    d.close()
  })

  it('survives 5 kill -9 under concurrent load with -f 0, losing nothing acknowledged', { timeout: 120_000 }, async () => {
    const t = new Truth()
    const rnd = prng(20261202)
    const last = await killNineRounds(
      pgArgs(newSchema(), ['-f', '0']),
      5,
      (n) => rnd.int(n),
      (port) => verify(t, port),
      (port, round) => [0, 1, 2, 3].map((k) => load(t, port, round * 10 + k)),
    )
    expect(last['store']).toBe('postgres')
    expect(t.deleted.size).toBeGreaterThan(20)
    expect(t.live.size).toBeGreaterThan(5)
  })

  it('a standby does not listen and answers /readyz 503 "standby"; it takes over within seconds of a kill -9 of the leader, 10 rounds under load, losing nothing acknowledged', { timeout: 180_000 }, async () => {
    // A longer session bound than the default (it only matters when the leader goes silent, not here).
    const args = pgArgs(newSchema(), ['-f', '0', '--http', '127.0.0.1:0', '--pg-session-timeout', '3000'])
    const t = new Truth()
    const rnd = prng(17)
    let leader = spawnCli(args)
    let port = (await leader.listening(10_000)).port!
    let waiting = spawnCli(args)
    await standby(waiting)
    // The standby: no beanstalk listener (its log says so), /readyz 503 naming the state.
    const httpLine = waiting.logLines.find((l) => typeof l['http'] === 'string')!
    const ready = await get(`http://${String(httpLine['http'])}/readyz`)
    expect(ready.status).toBe(503)
    expect(ready.body).toContain('standby')
    expect(waiting.logLines.some((l) => l['msg'] === 'listening')).toBe(false)
    const takeovers: number[] = []
    const ROUNDS = 10
    for (let round = 0; round < ROUNDS; round++) {
      await verify(t, port)
      const clients = [0, 1, 2, 3].map((k) => load(t, port, round * 10 + k))
      await sleep(150 + rnd.int(400))
      const killedAt = performance.now()
      leader.signal('SIGKILL')
      const line = await waiting.listening(15_000)
      takeovers.push(Math.round(performance.now() - killedAt))
      await leader.exited(10_000)
      await Promise.all(clients)
      leader = waiting
      port = line.port!
      waiting = spawnCli(args)
      await standby(waiting)
    }
    await verify(t, port)
    const sorted = [...takeovers].sort((a, b) => a - b)
    const median = (sorted[(ROUNDS - 1) >> 1]! + sorted[ROUNDS >> 1]!) / 2
    console.log(
      `postgres failover: takeover after kill -9 (kill to "listening"), ${ROUNDS} rounds: min ${sorted[0]} ms, median ${median} ms, max ${sorted[ROUNDS - 1]} ms (${takeovers.join(', ')})`,
    )
    expect(takeovers).toHaveLength(ROUNDS)
    expect(t.deleted.size).toBeGreaterThan(10)
    // Each takeover raised the epoch: the log says which.
    const epochs = leader.logLines.filter((l) => typeof l['epoch'] === 'number').map((l) => l['epoch'] as number)
    expect(epochs[0]).toBe(ROUNDS + 1)
  })

  it('a leader paused (SIGSTOP) past the takeover fences itself when resumed: it acknowledges nothing and exits 15', { timeout: 60_000 }, async () => {
    const args = pgArgs(newSchema(), ['-f', '0'])
    const a = spawnCli(args)
    const portA = (await a.listening(10_000)).port!
    const b = spawnCli(args)
    await standby(b)
    const c = await RawClient.connect(portA)
    const before = Number(/^INSERTED (\d+)\r\n$/.exec(await c.call('put 0 0 60 6\r\nbefore\r\n'))![1])
    a.signal('SIGSTOP')
    // PostgreSQL ends the paused leader's idle lock session (idle_session_timeout 2 s); b takes over.
    const portB = (await b.listening(15_000)).port!
    // Sent to the paused leader: waits in its socket buffer until it resumes.
    c.send('put 0 0 60 5\r\nstale\r\n')
    const d = await RawClient.connect(portB)
    expect(await d.call(`peek ${before}\r\n`)).toBe(`FOUND ${before} 6\r\n`)
    await d.read(8)
    const after = Number(/^INSERTED (\d+)\r\n$/.exec(await d.call('put 0 0 60 5\r\nafter\r\n'))![1])
    expect(after).toBeGreaterThan(before)
    a.signal('SIGCONT')
    const exit = await a.exited(10_000)
    expect(exit.code).toBe(15)
    expect(await c.closedByServer(5000)).toBe(true)
    expect(await c.quiet(0)).toBe('') // no INSERTED for the put sent while paused
    expect(a.logLines.some((l) => l['level'] === 60 && String(l['msg']).includes('fenced'))).toBe(true)
    // The new leader holds the two acknowledged jobs and nothing of the stale leader's.
    const stats = await d.stats('stats\r\n')
    expect(stats['current-jobs-ready']).toBe('2')
    d.close()
  })

  it('PostgreSQL stopping under load: the leader fences (exit 15) with a clear line; a new start waits for the database, then serves everything acknowledged', { timeout: 120_000 }, async () => {
    const own = PgCluster.start()
    try {
      const args = ['--store', 'postgres', '--pg-url', own.url, '--pg-schema', 'tsb_dead', '-p0', '-l127.0.0.1', '-f', '0']
      const t = new Truth()
      const a = spawnCli(args)
      const port = (await a.listening(10_000)).port!
      const clients = [0, 1, 2, 3].map((k) => load(t, port, 100 + k))
      await sleep(700)
      own.stopServer('fast')
      const exit = await a.exited(10_000)
      expect(exit.code).toBe(15)
      expect(a.logLines.some((l) => l['level'] === 60 && String(l['msg']).includes('lost the leadership'))).toBe(true)
      await Promise.all(clients)
      const b = spawnCli(args)
      await standby(b, 'standby: cannot reach PostgreSQL')
      own.startServer()
      const portB = (await b.listening(20_000)).port!
      await verify(t, portB)
      expect(t.live.size + t.deleted.size).toBeGreaterThan(10)
    } finally {
      await killAll()
      own.remove()
    }
  })

  it('two schemas in one database are two independent queues, each with its own leader and ids', { timeout: 60_000 }, async () => {
    const one = spawnCli(pgArgs(newSchema(), ['-f', '0']))
    const two = spawnCli(pgArgs(newSchema(), ['-f', '0']))
    const [p1, p2] = [(await one.listening(10_000)).port!, (await two.listening(10_000)).port!]
    const c1 = await RawClient.connect(p1)
    const c2 = await RawClient.connect(p2)
    expect(await c1.call('put 0 0 60 3\r\none\r\n')).toBe('INSERTED 1\r\n')
    expect(await c1.call('put 0 0 60 3\r\nuno\r\n')).toBe('INSERTED 2\r\n')
    expect(await c2.call('put 0 0 60 3\r\ntwo\r\n')).toBe('INSERTED 1\r\n')
    expect(await c2.call('peek 2\r\n')).toBe('NOT_FOUND\r\n')
    expect(await c2.call('peek 1\r\n')).toBe('FOUND 1 3\r\n')
    expect(await c2.read(5)).toBe('two\r\n')
    c1.close()
    c2.close()
  })

  it('a row broken by hand stops the start (exit 16), naming the job; the rows around it replay once it is mended', { timeout: 60_000 }, async () => {
    const schema = newSchema()
    const first = spawnCli(pgArgs(schema, ['-f', '0']))
    const c = await RawClient.connect((await first.listening(10_000)).port!)
    for (let i = 1; i <= 3; i++) expect(await c.call(`put 0 0 60 4\r\njob${i}\r\n`)).toBe(`INSERTED ${i}\r\n`)
    c.close()
    first.signal('SIGTERM')
    expect((await first.exited(10_000)).code).toBe(0)
    const sql = postgres({ host: cluster.dir, port: cluster.port, user: 'postgres', database: 'postgres', onnotice: () => undefined })
    try {
      await sql.unsafe(`UPDATE ${schema}.jobs SET state = 'buried', bury_seq = NULL WHERE id = 2`)
      const broken = spawnCli(pgArgs(schema))
      expect((await broken.exited(10_000)).code).toBe(16)
      expect(broken.stderr).toContain('job 2: buried without bury_seq')
      await sql.unsafe(`UPDATE ${schema}.jobs SET bury_seq = 1 WHERE id = 2`)
    } finally {
      await sql.end()
    }
    const mended = spawnCli(pgArgs(schema))
    const d = await RawClient.connect((await mended.listening(10_000)).port!)
    for (const [id, state] of [[1, 'ready'], [2, 'buried'], [3, 'ready']] as const) expect((await d.stats(`stats-job ${id}\r\n`))['state']).toBe(state)
    expect(await d.call('peek 3\r\n')).toBe('FOUND 3 4\r\n')
    expect(await d.read(6)).toBe('job3\r\n')
    d.close()
  })

  it('refuses --extensions (exit 5), and a schema of a newer version (exit 16) without writing to it', { timeout: 60_000 }, async () => {
    const ext = spawnCli(pgArgs(newSchema(), ['--extensions']))
    expect((await ext.exited(10_000)).code).toBe(5)
    expect(ext.stderr).toContain('does not keep the extensions')
    const schema = newSchema()
    const first = spawnCli(pgArgs(schema))
    await first.listening(10_000)
    first.signal('SIGTERM')
    expect((await first.exited(10_000)).code).toBe(0)
    const sql = postgres({ host: cluster.dir, port: cluster.port, user: 'postgres', database: 'postgres', onnotice: () => undefined })
    try {
      await sql.unsafe(`UPDATE ${schema}.meta SET value = 99 WHERE key = 'schema_version'`)
      const before = await sql.unsafe(`SELECT value FROM ${schema}.meta WHERE key = 'epoch'`)
      const newer = spawnCli(pgArgs(schema))
      expect((await newer.exited(10_000)).code).toBe(16)
      expect(newer.stderr).toContain('schema version 99')
      const after = await sql.unsafe(`SELECT value FROM ${schema}.meta WHERE key = 'epoch'`)
      expect(after[0]!['value']).toBe(before[0]!['value'])
    } finally {
      await sql.end()
    }
  })
})

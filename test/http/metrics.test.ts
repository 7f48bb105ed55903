/**
 * /metrics, /healthz and /readyz of a real server (in-process, real sockets,
 * a real store in a temp directory, a ManualClock so ages and uptime hold
 * still): the exposition passes `promtool check metrics`, and its values
 * equal what `stats` and `stats-tube` say at the same moment.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { HttpEndpoint } from '../../src/http/http-server.js'
import { capTubes, Metrics, OTHER_TUBES } from '../../src/http/metrics.js'
import { BeanstalkServer } from '../../src/server/server.js'
import { openStore } from '../../src/store/open.js'
import type { DurableStore, Engine } from '../../src/store/store.js'
import { ManualClock } from '../../src/util/clock.js'
import { Readiness, ReadyState } from '../../src/util/readiness.js'
import { tubeFigures } from '../../src/queue/snapshot.js'
import { RawClient } from '../helpers/client.js'
import { get, haveTool, parseMetrics, runTool, sample } from '../helpers/http.js'

const log = pino({ level: 'silent' })
const cleanup: (() => Promise<void> | void)[] = []

afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

interface Rig {
  readonly server: BeanstalkServer
  readonly store: DurableStore | undefined
  readonly readiness: Readiness
  readonly clock: ManualClock
  readonly port: number
  readonly url: string
  client(): Promise<RawClient>
}

async function rig(opts: { engine?: Engine; maxTubes?: number; source?: boolean } = {}): Promise<Rig> {
  const clock = new ManualClock(1_000_000)
  let store: DurableStore | undefined
  const server = new BeanstalkServer({ maxJobSize: 65535, binlogMaxSize: 1 << 20, log, clock })
  if (opts.engine !== undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-metrics-'))
    cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }))
    const s = await openStore({ engine: opts.engine, dir, fileSize: 1 << 20, fsyncMs: 0, fsyncNever: false, maxJobSize: 65535, log, clock }, server.restoreInto)
    store = s
    cleanup.push(() => s.close())
  }
  server.serve(store)
  const addr = await server.listen({ host: '127.0.0.1', port: 0 })
  cleanup.push(() => server.close())
  const readiness = new Readiness()
  const metrics = new Metrics({
    readiness,
    source: () =>
      opts.source === false
        ? null
        : { queue: server.registry, cmd: server.ctx.cmd, info: server.ctx.info, store, refusedConnections: () => server.refusedConnections },
    maxTubes: opts.maxTubes ?? 1000,
  })
  const http = await HttpEndpoint.listen({ host: '127.0.0.1', port: 0, readiness, metrics, log })
  cleanup.push(() => http.close())
  const port = (addr as { port: number }).port
  return {
    server,
    store,
    readiness,
    clock,
    port,
    url: `http://127.0.0.1:${http.address.port}`,
    client: async () => {
      const c = await RawClient.connect(port)
      cleanup.push(() => c.close())
      return c
    },
  }
}

/** stats key -> the sample that must equal it ([name, labels]). */
const STATS_METRICS: Record<string, [string, Record<string, string>]> = {
  'current-jobs-urgent': ['tsbeanstalkd_jobs_urgent', {}],
  'current-jobs-ready': ['tsbeanstalkd_jobs', { state: 'ready' }],
  'current-jobs-reserved': ['tsbeanstalkd_jobs', { state: 'reserved' }],
  'current-jobs-delayed': ['tsbeanstalkd_jobs', { state: 'delayed' }],
  'current-jobs-buried': ['tsbeanstalkd_jobs', { state: 'buried' }],
  'job-timeouts': ['tsbeanstalkd_job_timeouts_total', {}],
  'total-jobs': ['tsbeanstalkd_jobs_total', {}],
  'max-job-size': ['tsbeanstalkd_max_job_size_bytes', {}],
  'current-tubes': ['tsbeanstalkd_tubes', {}],
  'current-connections': ['tsbeanstalkd_connections', {}],
  'current-producers': ['tsbeanstalkd_producers', {}],
  'current-workers': ['tsbeanstalkd_workers', {}],
  'current-waiting': ['tsbeanstalkd_waiting_connections', {}],
  'total-connections': ['tsbeanstalkd_connections_total', {}],
  uptime: ['tsbeanstalkd_uptime_seconds', {}],
  'binlog-max-size': ['tsbeanstalkd_binlog_max_size_bytes', {}],
}
/** With a store: the binlog-* keys. */
const STORE_METRICS: Record<string, string> = {
  'binlog-oldest-index': 'tsbeanstalkd_binlog_oldest_index',
  'binlog-current-index': 'tsbeanstalkd_binlog_current_index',
  'binlog-records-migrated': 'tsbeanstalkd_store_records_migrated_total',
  'binlog-records-written': 'tsbeanstalkd_store_records_written_total',
}
/** Keys that are about the process, not the queue: process_* and build_info cover them. */
const PROCESS_KEYS = new Set(['pid', 'version', 'rusage-utime', 'rusage-stime', 'id', 'hostname', 'os', 'platform', 'draining'])

const TUBE_METRICS: Record<string, [string, Record<string, string>]> = {
  'current-jobs-urgent': ['tsbeanstalkd_tube_jobs_urgent', {}],
  'current-jobs-ready': ['tsbeanstalkd_tube_jobs', { state: 'ready' }],
  'current-jobs-reserved': ['tsbeanstalkd_tube_jobs', { state: 'reserved' }],
  'current-jobs-delayed': ['tsbeanstalkd_tube_jobs', { state: 'delayed' }],
  'current-jobs-buried': ['tsbeanstalkd_tube_jobs', { state: 'buried' }],
  'total-jobs': ['tsbeanstalkd_tube_jobs_total', {}],
  'current-using': ['tsbeanstalkd_tube_using', {}],
  'current-watching': ['tsbeanstalkd_tube_watching', {}],
  'current-waiting': ['tsbeanstalkd_tube_waiting', {}],
  'cmd-delete': ['tsbeanstalkd_tube_deletes_total', {}],
  'cmd-pause-tube': ['tsbeanstalkd_tube_pauses_total', {}],
  pause: ['tsbeanstalkd_tube_pause_seconds', {}],
  'pause-time-left': ['tsbeanstalkd_tube_pause_time_left_seconds', {}],
}

/** Sends `cmd` and expects exactly `reply` back (bounded). */
async function say(c: RawClient, cmd: string, reply: string): Promise<void> {
  c.send(cmd)
  expect(await c.read(reply.length)).toBe(reply)
}

/** Jobs in every state across three tubes, a waiting worker, a pause and a TTR timeout. */
async function traffic(r: Rig): Promise<void> {
  const p = await r.client()
  await say(p, 'use emails\r\nput 0 0 60 2\r\nhi\r\nput 2000 0 60 2\r\nho\r\nput 5 30 60 1\r\nx\r\n', 'USING emails\r\nINSERTED 1\r\nINSERTED 2\r\nINSERTED 3\r\n')
  await say(p, 'use images\r\nput 1 0 1 1\r\na\r\nput 1 0 60 1\r\nb\r\nput 1 0 60 1\r\nc\r\n', 'USING images\r\nINSERTED 4\r\nINSERTED 5\r\nINSERTED 6\r\n')
  const w = await r.client()
  // Job 4 (ttr 1) is reserved and left to time out, then reserved again; job 5 is buried; job 6 deleted.
  await say(w, 'watch images\r\nignore default\r\nreserve-with-timeout 0\r\n', 'WATCHING 2\r\nWATCHING 1\r\nRESERVED 4 1\r\na\r\n')
  r.clock.advance(2000)
  const timedOut = Date.now() + 5000
  while (r.server.registry.timeouts === 0 && Date.now() < timedOut) await new Promise((res) => setTimeout(res, 20))
  expect(r.server.registry.timeouts).toBe(1)
  await say(w, 'reserve-with-timeout 0\r\n', 'RESERVED 4 1\r\na\r\n')
  await say(w, 'reserve-with-timeout 0\r\n', 'RESERVED 5 1\r\nb\r\n')
  await say(w, 'bury 5 7\r\ndelete 6\r\npause-tube emails 30\r\n', 'BURIED\r\nDELETED\r\nPAUSED\r\n')
  // A worker waiting on an empty tube.
  const idle = await r.client()
  idle.send('watch empty\r\nreserve\r\n')
  expect(await idle.line()).toBe('WATCHING 2\r\n')
  const waiting = Date.now() + 5000
  while (r.server.registry.waitingCount === 0 && Date.now() < waiting) await new Promise((res) => setTimeout(res, 5))
  r.clock.advance(7000)
}

describe('/metrics', () => {
  for (const engine of [undefined, 'binlog', 'sqlite'] as const) {
    it(`equals stats and stats-tube read at the same moment (${engine ?? 'no store'})`, async () => {
      const r = await rig(engine === undefined ? {} : { engine })
      r.readiness.set(ReadyState.SERVING)
      await traffic(r)
      const c = await r.client()
      const tubes = ['default', 'emails', 'images', 'empty']
      const perTube = new Map<string, Record<string, string>>()
      for (const t of tubes) perTube.set(t, await c.stats(`stats-tube ${t}\r\n`))
      const stats = await c.stats('stats\r\n')
      const text = (await get(`${r.url}/metrics`)).body
      const m = parseMetrics(text)

      for (const [key, value] of Object.entries(stats)) {
        if (key.startsWith('cmd-')) {
          expect(sample(m, 'tsbeanstalkd_commands_total', { command: key.slice(4) }), key).toBe(Number(value))
        } else if (STATS_METRICS[key] !== undefined) {
          const [name, labels] = STATS_METRICS[key]
          expect(sample(m, name, labels), key).toBe(Number(value))
        } else if (STORE_METRICS[key] !== undefined) {
          if (engine === undefined) expect(m.has(STORE_METRICS[key]), key).toBe(false)
          else expect(sample(m, STORE_METRICS[key], { engine }), key).toBe(Number(value))
        } else {
          expect(PROCESS_KEYS.has(key), `stats key ${key} has no metric`).toBe(true)
        }
      }
      expect(sample(m, 'tsbeanstalkd_draining')).toBe(0)
      for (const t of tubes) {
        const st = perTube.get(t)!
        for (const [key, value] of Object.entries(st)) {
          if (key === 'name') continue
          const spec = TUBE_METRICS[key]
          expect(spec, `stats-tube key ${key} has no metric`).toBeDefined()
          expect(sample(m, spec![0], { ...spec![1], tube: t }), `${t} ${key}`).toBe(Number(value))
        }
      }
      // What stats-tube lacks: per-tube timeouts and buries, and the age of the next ready job.
      expect(sample(m, 'tsbeanstalkd_tube_timeouts_total', { tube: 'images' })).toBe(1)
      expect(sample(m, 'tsbeanstalkd_tube_buries_total', { tube: 'images' })).toBe(1)
      expect(sample(m, 'tsbeanstalkd_tube_timeouts_total', { tube: 'emails' })).toBe(0)
      // emails: job 1 (pri 0) is next; 9 s have passed on the clock since it was put.
      expect(sample(m, 'tsbeanstalkd_tube_next_ready_age_seconds', { tube: 'emails' })).toBe(9)
      expect((await c.stats('stats-job 1\r\n'))['age']).toBe('9')
      expect(m.has('tsbeanstalkd_tube_next_ready_age_seconds{tube="images"}')).toBe(false) // nothing ready there
      expect(sample(m, 'tsbeanstalkd_tubes_exported')).toBe(4)
      expect(sample(m, 'tsbeanstalkd_build_info', { version: '0.1.0', node_version: process.version })).toBe(1)

      if (r.store !== undefined) {
        const st = r.store.stats()
        expect(sample(m, 'tsbeanstalkd_store_fsyncs_total', { engine: engine! })).toBe(st.fsyncs)
        expect(sample(m, 'tsbeanstalkd_store_fsync_seconds_count', { engine: engine! })).toBe(st.fsyncLatency.count)
        expect(st.fsyncLatency.count).toBeGreaterThan(0) // -f 0: every turn with a change fsyncs
        expect(sample(m, 'tsbeanstalkd_store_fsync_seconds_bucket', { engine: engine!, le: '+Inf' })).toBe(st.fsyncs)
        expect(sample(m, 'tsbeanstalkd_store_files', { engine: engine! })).toBe(st.files)
        expect(sample(m, 'tsbeanstalkd_store_bytes', { engine: engine! })).toBeGreaterThan(0)
        expect(sample(m, 'tsbeanstalkd_store_jobs', { engine: engine! })).toBe(5)
      }
    })
  }

  it('passes promtool check metrics', async (ctx) => {
    if (!haveTool('promtool')) return ctx.skip()
    const r = await rig({ engine: 'binlog', maxTubes: 2 })
    r.readiness.set(ReadyState.SERVING)
    await traffic(r)
    const reply = await get(`${r.url}/metrics`)
    expect(reply.status).toBe(200)
    expect(reply.type).toMatch(/^text\/plain; version=0\.0\.4/)
    const check = runTool('promtool', ['check', 'metrics'], reply.body)
    expect(check.output).toBe('')
    expect(check.status).toBe(0)
    // And promtool does fail on a bad exposition (the check is real).
    expect(runTool('promtool', ['check', 'metrics'], '# TYPE x_total gauge\nx_total 1\n').status).not.toBe(0)
  })

  it('caps the tubes: the largest N by jobs get series, the rest are summed as tube="*"', async () => {
    const r = await rig({ maxTubes: 2 })
    const c = await r.client()
    // a: 3 jobs, b: 1, c: 2, default: 0 -> a and c shown; b and default summed.
    await say(c, 'use a\r\nput 0 0 60 1\r\nx\r\nput 0 0 60 1\r\nx\r\nput 0 0 60 1\r\nx\r\n', 'USING a\r\nINSERTED 1\r\nINSERTED 2\r\nINSERTED 3\r\n')
    await say(c, 'use b\r\nput 0 0 60 1\r\nx\r\n', 'USING b\r\nINSERTED 4\r\n')
    await say(c, 'use c\r\nput 0 0 60 1\r\nx\r\nput 0 0 60 1\r\nx\r\n', 'USING c\r\nINSERTED 5\r\nINSERTED 6\r\n')
    r.clock.advance(3000)
    await say(c, 'use b\r\n', 'USING b\r\n')
    const m = parseMetrics((await get(`${r.url}/metrics`)).body)
    expect(sample(m, 'tsbeanstalkd_tubes_exported')).toBe(2)
    expect(sample(m, 'tsbeanstalkd_tube_jobs', { tube: 'a', state: 'ready' })).toBe(3)
    expect(sample(m, 'tsbeanstalkd_tube_jobs', { tube: 'c', state: 'ready' })).toBe(2)
    expect(m.has('tsbeanstalkd_tube_jobs{state="ready",tube="b"}')).toBe(false)
    expect(sample(m, 'tsbeanstalkd_tube_jobs', { tube: OTHER_TUBES, state: 'ready' })).toBe(1)
    expect(sample(m, 'tsbeanstalkd_tube_jobs_total', { tube: OTHER_TUBES })).toBe(1)
    expect(sample(m, 'tsbeanstalkd_tube_using', { tube: OTHER_TUBES })).toBe(1) // c uses b
    expect(sample(m, 'tsbeanstalkd_tube_watching', { tube: OTHER_TUBES })).toBe(1) // c watches default
    expect(sample(m, 'tsbeanstalkd_tube_next_ready_age_seconds', { tube: OTHER_TUBES })).toBe(3)
    // With a cap of 0 every tube is in the sum.
    const figures = r.server.registry.tubeList.map((t) => tubeFigures(r.server.registry, t, r.clock.now()))
    const none = capTubes(figures, 0)
    expect(none.shown).toEqual([])
    expect(none.other?.ready).toBe(6)
  })

  it('has the process metrics before the server exists (during a replay), and no queue figures', async () => {
    const r = await rig({ source: false })
    r.readiness.set(ReadyState.REPLAYING)
    const m = parseMetrics((await get(`${r.url}/metrics`)).body)
    expect(sample(m, 'tsbeanstalkd_ready')).toBe(0)
    expect(sample(m, 'tsbeanstalkd_state', { state: 'replaying' })).toBe(1)
    expect(sample(m, 'tsbeanstalkd_state', { state: 'serving' })).toBe(0)
    expect(sample(m, 'process_resident_memory_bytes')).toBeGreaterThan(0)
    expect(sample(m, 'tsbeanstalkd_event_loop_active_seconds_total')).toBeGreaterThan(0)
    expect(m.has('tsbeanstalkd_jobs{state="ready"}')).toBe(false)
  })
})

describe('/healthz and /readyz', () => {
  it('/readyz is 200 only while serving, 503 with the state otherwise; /healthz is 200 until the store fails', async () => {
    const r = await rig()
    const ready = async (): Promise<{ status: number; body: Record<string, unknown> }> => {
      const res = await get(`${r.url}/readyz`)
      expect(res.type).toBe('application/json; charset=utf-8')
      return { status: res.status, body: JSON.parse(res.body) as Record<string, unknown> }
    }
    expect(await ready()).toEqual({ status: 503, body: { status: 'not ready', state: 'starting' } })
    r.readiness.set(ReadyState.REPLAYING)
    r.readiness.reportReplay({ files: 1, filesTotal: 3, bytes: 10, bytesTotal: 30, records: 5, jobs: 4 })
    expect(await ready()).toEqual({
      status: 503,
      body: { status: 'not ready', state: 'replaying', replay: { files: 1, filesTotal: 3, bytes: 10, bytesTotal: 30, records: 5, jobs: 4 } },
    })
    expect((await get(`${r.url}/healthz`)).status).toBe(200)
    r.readiness.set(ReadyState.SERVING)
    expect(await ready()).toEqual({ status: 200, body: { status: 'ready', state: 'serving' } })
    r.readiness.set(ReadyState.DRAINING)
    expect(await ready()).toEqual({ status: 503, body: { status: 'not ready', state: 'draining' } })
    r.readiness.set(ReadyState.FAILED, 'binlog.3: fsync failed')
    expect(await ready()).toEqual({ status: 503, body: { status: 'not ready', state: 'failed', detail: 'binlog.3: fsync failed' } })
    const health = await get(`${r.url}/healthz`)
    expect(health.status).toBe(503)
    expect(JSON.parse(health.body)).toEqual({ status: 'failed', state: 'failed' })
  })

  it('answers HEAD without a body, 404 elsewhere, 405 for other methods', async () => {
    const r = await rig()
    r.readiness.set(ReadyState.SERVING)
    const head = await get(`${r.url}/readyz`, 5000, 'HEAD')
    expect(head.status).toBe(200)
    expect(head.body).toBe('')
    expect((await get(`${r.url}/nope`)).status).toBe(404)
    expect((await get(`${r.url}/metrics`, 5000, 'POST')).status).toBe(405)
  })
})

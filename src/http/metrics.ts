/**
 * `/metrics`: Prometheus text, read at scrape time from the same snapshot
 * functions `stats` and `stats-tube` format (queue/snapshot.ts and the
 * store's stats()), so a metric and a stats key cannot disagree, and nothing
 * is counted on the command path for it.
 *
 * prom-client formats the text and brings Node's process and event-loop
 * metrics (collectDefaultMetrics). Our own figures are families in
 * prom-client's metric shape whose `get()` reads the scrape's snapshot, not
 * Counters or Gauges updated as things happen: that would cost per command.
 *
 * Invariants:
 * - One scrape reads one snapshot: `render()` takes it, then prom-client
 *   calls every family's get() synchronously before its first await.
 * - At most `maxTubes` tubes have series of their own: the ones with the
 *   most jobs (ties: creation order). The others are summed into one series
 *   labelled tube="*" (no tube can be named that: `*` is not a name
 *   character), their ages maxed; its counters can go down when a tube moves
 *   across the cap, so alert on the global counters, not on tube="*" rates.
 */
import { performance } from 'node:perf_hooks'
import { collectDefaultMetrics, Registry, type Metric } from 'prom-client'
import { STATS_COMMANDS, type ProcessInfo } from '../protocol/replies.js'
import { EXTENSION_COMMANDS } from '../protocol/extension-replies.js'
import { ADMIN_COMMANDS } from '../protocol/admin-replies.js'
import type { Registry as Queue } from '../queue/registry.js'
import { queueTotals, secs, tubeFigures, type QueueTotals, type TubeFigures } from '../queue/snapshot.js'
import type { SecurityFigures } from '../server/gatekeeper.js'
import type { DurableStore, StoreStats } from '../store/store.js'
import type { HistogramView } from '../store/latency-histogram.js'
import { ReadyState, type Readiness } from '../util/readiness.js'
import { VERSION } from '../version.js'

/** What a scrape reads: the running server's parts (null until the store is open and the server built). */
export interface MetricsSource {
  readonly queue: Queue
  /** cmd-* counters indexed by Op. */
  readonly cmd: Float64Array
  /** --extensions: the extension commands' counters are series too. */
  readonly extensions?: boolean
  readonly info: ProcessInfo
  readonly store: DurableStore | undefined
  /** Connections closed at once because the process is at its file-descriptor budget. */
  refusedConnections(): number
  /** TLS, auth and pending figures; null (or absent) when no listener has TLS or auth. */
  security?(): SecurityFigures | null
  /** SIGHUP reloads of which a part failed (the old one stayed in use). */
  reloadFailures?(): number
}

/** The tube label of the series that sums the tubes past the cap. */
export const OTHER_TUBES = '*'

interface Snapshot {
  readonly now: number
  readonly source: MetricsSource
  readonly queue: QueueTotals
  readonly tubes: readonly TubeFigures[]
  readonly otherTubes: TubeFigures | null
  readonly store: StoreStats | null
  readonly security: SecurityFigures | null
}

type Labels = Record<string, string | number>
interface Sample {
  value: number
  labels: Labels
  metricName?: string
}
type Kind = 'counter' | 'gauge' | 'histogram'
/** Makes a family read from the scrape's snapshot (absent while the server is not up). */
type FamilyOf = (name: string, help: string, read: (s: Snapshot) => Sample[]) => Family

/** One metric family in prom-client's shape, its samples read from the scrape's snapshot. */
interface Family {
  readonly name: string
  readonly help: string
  readonly type: Kind
  readonly aggregator: 'sum'
  get(): { name: string; help: string; type: Kind; aggregator: 'sum'; values: Sample[] }
  reset(): void
}

function makeFamily(name: string, help: string, type: Kind, current: () => Snapshot | null, read: (s: Snapshot | null) => Sample[]): Family {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    get: () => ({ name, help, type, aggregator: 'sum', values: read(current()) }),
    reset: () => undefined,
  }
}

/** The N tubes with the most jobs, and the rest summed into one (null if none are left). */
export function capTubes(all: readonly TubeFigures[], max: number): { shown: TubeFigures[]; other: TubeFigures | null } {
  if (all.length <= max) return { shown: [...all], other: null }
  const jobs = (t: TubeFigures): number => t.ready + t.reserved + t.delayed + t.buried
  const order = all.map((t, i) => ({ t, i, n: jobs(t) })).sort((a, b) => b.n - a.n || a.i - b.i)
  const shown = order.slice(0, max).map((o) => o.t)
  const rest = order.slice(max).map((o) => o.t)
  const sum = (k: keyof TubeFigures): number => rest.reduce((acc, t) => acc + (t[k] as number), 0)
  const other: TubeFigures = {
    name: OTHER_TUBES,
    urgent: sum('urgent'),
    ready: sum('ready'),
    reserved: sum('reserved'),
    delayed: sum('delayed'),
    buried: sum('buried'),
    totalJobs: sum('totalJobs'),
    using: sum('using'),
    watching: sum('watching'),
    waiting: sum('waiting'),
    cmdDelete: sum('cmdDelete'),
    cmdPause: sum('cmdPause'),
    pause: Math.max(...rest.map((t) => t.pause)),
    pauseTimeLeft: Math.max(...rest.map((t) => t.pauseTimeLeft)),
    timeouts: sum('timeouts'),
    buries: sum('buries'),
    nextReadyAgeMs: Math.max(...rest.map((t) => t.nextReadyAgeMs)),
  }
  return { shown, other }
}

const STATES = ['ready', 'reserved', 'delayed', 'buried'] as const

function histogram(name: string, h: HistogramView, labels: Labels): Sample[] {
  const out: Sample[] = []
  let cumulative = 0
  for (let i = 0; i < h.bounds.length; i++) {
    cumulative += h.counts[i]!
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: h.bounds[i]! }, value: cumulative })
  }
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count })
  out.push({ metricName: `${name}_sum`, labels, value: h.sum })
  out.push({ metricName: `${name}_count`, labels, value: h.count })
  return out
}

export interface MetricsOptions {
  readonly readiness: Readiness
  /** The running server's parts; null while the store opens (only process metrics then). */
  readonly source: () => MetricsSource | null
  /** Tubes with series of their own (--metrics-max-tubes). */
  readonly maxTubes: number
  /** HTTP requests refused for their bearer token. */
  readonly httpAuthFailures?: () => number
}

export class Metrics {
  readonly registry = new Registry()
  private snapshot: Snapshot | null = null
  private readonly opts: MetricsOptions

  constructor(opts: MetricsOptions) {
    this.opts = opts
    collectDefaultMetrics({ register: this.registry })
    // Gauges named like counters (promtool rejects them); nodejs_active_* carries the same by type.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name)
    }
    for (const f of this.families()) this.registry.registerMetric(f as unknown as Metric)
  }

  get contentType(): string {
    return this.registry.contentType
  }

  /** The whole exposition, from one snapshot. */
  async render(): Promise<string> {
    const source = this.opts.source()
    if (source === null) {
      this.snapshot = null
    } else {
      const now = source.queue.clock.now()
      const figures = source.queue.tubeList.map((t) => tubeFigures(source.queue, t, now))
      const { shown, other } = capTubes(figures, this.opts.maxTubes)
      this.snapshot = {
        now,
        source,
        queue: queueTotals(source.queue),
        tubes: shown,
        otherTubes: other,
        store: source.store?.stats() ?? null,
        security: source.security?.() ?? null,
      }
    }
    const text = this.registry.metrics()
    this.snapshot = null
    return text
  }

  /** The tsbeanstalkd_tls_*, _auth_*, _pending_* families: present only with TLS or auth. */
  private securityFamilies(g: FamilyOf, c: FamilyOf): Family[] {
    const sec = (read: (f: SecurityFigures) => number) => (s: Snapshot): Sample[] => {
      const f = s.security
      return f === null ? [] : [{ value: read(f), labels: {} }]
    }
    const httpFailures = this.opts.httpAuthFailures
    return [
      g('tsbeanstalkd_pending_connections', 'Connections in their TLS handshake or before auth', sec((f) => f.pending)),
      c('tsbeanstalkd_pending_refused_total', 'Connections closed at accept: --max-pending were pending already', sec((f) => f.pendingRefused)),
      c('tsbeanstalkd_pending_timeouts_total', 'Connections closed at --pending-timeout, not through their TLS handshake and auth', sec((f) => f.pendingTimedOut)),
      c('tsbeanstalkd_tls_handshake_failures_total', 'TLS handshakes that failed (refused client certificates included)', sec((f) => f.handshakeFailures)),
      c('tsbeanstalkd_auth_successes_total', 'Connections that sent a valid auth token', sec((f) => f.authenticated)),
      c('tsbeanstalkd_auth_failures_total', 'Refused for their token, by listener: beanstalk (wrong token or a command before auth) or http (bearer)', (s) => [
        ...(s.security === null ? [] : [{ value: s.security.authFailures, labels: { listener: 'beanstalk' } }]),
        ...(httpFailures === undefined ? [] : [{ value: httpFailures(), labels: { listener: 'http' } }]),
      ]),
      g('tsbeanstalkd_tls_certificate_expiry_timestamp_seconds', 'When the certificate in use expires (Unix time)', (s) => {
        const t = s.security?.certificateNotAfter ?? null
        return t === null ? [] : [{ value: t / 1000, labels: {} }]
      }),
      c('tsbeanstalkd_reload_failures_total', 'Parts of a SIGHUP reload that failed (what was loaded before stays in use)', (s) =>
        s.security === null ? [] : [{ value: s.source.reloadFailures?.() ?? 0, labels: {} }],
      ),
    ]
  }

  private families(): Family[] {
    const cur = (): Snapshot | null => this.snapshot
    // Queue and store figures exist once the server does; the process-wide ones always.
    const family = (type: Kind) => (name: string, help: string, read: (s: Snapshot) => Sample[]) =>
      makeFamily(name, help, type, cur, (s) => (s === null ? [] : read(s)))
    const g: FamilyOf = family('gauge')
    const c: FamilyOf = family('counter')
    const always = (name: string, help: string, type: Kind, read: () => Sample[]): Family => makeFamily(name, help, type, cur, read)
    const one = (value: number, labels: Labels = {}): Sample[] => [{ value, labels }]
    const perTube = (s: Snapshot, value: (t: TubeFigures) => number): Sample[] => {
      const all = s.otherTubes === null ? s.tubes : [...s.tubes, s.otherTubes]
      return all.map((t) => ({ value: value(t), labels: { tube: t.name } }))
    }
    const store = (s: Snapshot, value: (st: StoreStats) => number): Sample[] =>
      s.store === null ? [] : one(value(s.store), { engine: s.store.engine })
    const { readiness } = this.opts
    const states = Object.values(ReadyState)
    const elu0 = performance.eventLoopUtilization()
    return [
      always('tsbeanstalkd_build_info', 'tsbeanstalkd version (package.json) and Node.js version; always 1', 'gauge', () =>
        one(1, { version: VERSION, node_version: process.version }),
      ),
      always('tsbeanstalkd_ready', '1 when /readyz answers 200: the store is replayed and the listeners accept', 'gauge', () =>
        one(readiness.ready ? 1 : 0),
      ),
      always('tsbeanstalkd_state', 'What the process is doing: 1 for the current state', 'gauge', () =>
        states.map((st) => ({ value: readiness.state === st ? 1 : 0, labels: { state: st } })),
      ),
      always('tsbeanstalkd_event_loop_active_seconds_total', 'Time the event loop spent running callbacks (rate() of it is the utilization)', 'counter', () =>
        one(performance.eventLoopUtilization(elu0).active / 1000),
      ),
      always('tsbeanstalkd_event_loop_idle_seconds_total', 'Time the event loop spent waiting for I/O', 'counter', () =>
        one(performance.eventLoopUtilization(elu0).idle / 1000),
      ),
      // --- stats -------------------------------------------------------------------------
      g('tsbeanstalkd_jobs', 'Jobs by state (stats current-jobs-*)', (s) => STATES.map((st) => ({ value: s.queue[st], labels: { state: st } }))),
      g('tsbeanstalkd_jobs_urgent', 'Ready jobs with priority < 1024 (stats current-jobs-urgent)', (s) => one(s.queue.urgent)),
      c('tsbeanstalkd_jobs_total', 'Jobs created (stats total-jobs)', (s) => one(s.queue.totalJobs)),
      c('tsbeanstalkd_job_timeouts_total', 'Reservations whose TTR ran out (stats job-timeouts)', (s) => one(s.queue.timeouts)),
      c('tsbeanstalkd_commands_total', 'Commands received, by command (stats cmd-*)', (s) =>
        (s.source.extensions === true ? [...STATS_COMMANDS, ...EXTENSION_COMMANDS, ...ADMIN_COMMANDS] : STATS_COMMANDS).map(([op, name]) => ({
          value: s.source.cmd[op]!,
          labels: { command: name },
        })),
      ),
      g('tsbeanstalkd_tubes', 'Tubes (stats current-tubes)', (s) => one(s.queue.tubes)),
      g('tsbeanstalkd_connections', 'Open connections (stats current-connections)', (s) => one(s.queue.connections)),
      c('tsbeanstalkd_connections_total', 'Connections accepted (stats total-connections)', (s) => one(s.queue.totalConnections)),
      c('tsbeanstalkd_connections_refused_total', 'Connections closed at once because the process was at its file-descriptor budget', (s) =>
        one(s.source.refusedConnections()),
      ),
      // --- security (with a TLS or auth listener) ------------------------------------------
      ...this.securityFamilies(g, c),
      g('tsbeanstalkd_producers', 'Connections that have put (stats current-producers)', (s) => one(s.queue.producers)),
      g('tsbeanstalkd_workers', 'Connections that have reserved (stats current-workers)', (s) => one(s.queue.workers)),
      g('tsbeanstalkd_waiting_connections', 'Connections waiting in a reserve (stats current-waiting)', (s) => one(s.queue.waiting)),
      g('tsbeanstalkd_draining', '1 in drain mode (stats draining)', (s) => one(s.queue.draining ? 1 : 0)),
      g('tsbeanstalkd_max_job_size_bytes', 'Largest job body accepted (stats max-job-size)', (s) => one(s.source.info.maxJobSize)),
      g('tsbeanstalkd_uptime_seconds', 'Seconds since the server started (stats uptime)', (s) => one(secs(s.now - s.source.info.startedAt))),
      // --- per tube ------------------------------------------------------------------------
      g('tsbeanstalkd_tubes_exported', 'Tubes with series of their own (at most --metrics-max-tubes; the rest are in tube="*")', (s) =>
        one(s.tubes.length),
      ),
      g('tsbeanstalkd_tube_jobs', 'Jobs in a tube by state (stats-tube current-jobs-*)', (s) => {
        const all = s.otherTubes === null ? s.tubes : [...s.tubes, s.otherTubes]
        return all.flatMap((t) => STATES.map((st) => ({ value: t[st], labels: { tube: t.name, state: st } })))
      }),
      g('tsbeanstalkd_tube_jobs_urgent', 'Urgent ready jobs in a tube (stats-tube current-jobs-urgent)', (s) => perTube(s, (t) => t.urgent)),
      c('tsbeanstalkd_tube_jobs_total', 'Jobs created in a tube (stats-tube total-jobs)', (s) => perTube(s, (t) => t.totalJobs)),
      c('tsbeanstalkd_tube_deletes_total', 'delete commands on the jobs of a tube (stats-tube cmd-delete)', (s) => perTube(s, (t) => t.cmdDelete)),
      c('tsbeanstalkd_tube_pauses_total', 'pause-tube commands on a tube (stats-tube cmd-pause-tube)', (s) => perTube(s, (t) => t.cmdPause)),
      c('tsbeanstalkd_tube_timeouts_total', 'Reservations of jobs in a tube whose TTR ran out', (s) => perTube(s, (t) => t.timeouts)),
      c('tsbeanstalkd_tube_buries_total', 'Jobs buried in a tube (each bury counts)', (s) => perTube(s, (t) => t.buries)),
      g('tsbeanstalkd_tube_using', 'Connections using a tube (stats-tube current-using)', (s) => perTube(s, (t) => t.using)),
      g('tsbeanstalkd_tube_watching', 'Connections watching a tube (stats-tube current-watching)', (s) => perTube(s, (t) => t.watching)),
      g('tsbeanstalkd_tube_waiting', 'Connections waiting in a reserve on a tube (stats-tube current-waiting)', (s) => perTube(s, (t) => t.waiting)),
      g('tsbeanstalkd_tube_pause_seconds', 'Length of the last pause-tube (stats-tube pause)', (s) => perTube(s, (t) => t.pause)),
      g('tsbeanstalkd_tube_pause_time_left_seconds', 'Seconds until a paused tube resumes (stats-tube pause-time-left)', (s) =>
        perTube(s, (t) => t.pauseTimeLeft),
      ),
      g(
        'tsbeanstalkd_tube_next_ready_age_seconds',
        'Age of the job a reserve would get next (head of the ready queue: lowest priority, then oldest); the oldest ready job when the tube uses one priority; absent with nothing ready',
        (s) => perTube(s, (t) => t.nextReadyAgeMs / 1000).filter((x) => x.value >= 0),
      ),
      // --- store -----------------------------------------------------------------------------
      c('tsbeanstalkd_store_records_written_total', 'State changes stored (stats binlog-records-written)', (s) => store(s, (st) => st.recordsWritten)),
      c('tsbeanstalkd_store_records_migrated_total', 'Records moved by binlog compaction (stats binlog-records-migrated)', (s) =>
        store(s, (st) => st.recordsMigrated),
      ),
      g('tsbeanstalkd_store_files', 'Files holding jobs: binlog files; the SQLite database and its WAL', (s) => store(s, (st) => st.files)),
      g('tsbeanstalkd_store_bytes', 'Bytes of those files, preallocated zeros included (the space reserve and the binlog spare not)', (s) => store(s, (st) => st.diskBytes)),
      g('tsbeanstalkd_store_jobs', 'Jobs the store holds', (s) => store(s, (st) => st.liveJobs)),
      g('tsbeanstalkd_store_no_space', '1 while the disk is full and puts answer OUT_OF_MEMORY', (s) => store(s, (st) => (st.noSpace ? 1 : 0))),
      c('tsbeanstalkd_store_fsyncs_total', 'fsync calls (with SQLite at -f 0: COMMITs, which fsync)', (s) => store(s, (st) => st.fsyncs)),
      family('histogram')('tsbeanstalkd_store_fsync_seconds', 'How long each fsync took, from the call to its completion', (s) =>
        s.store === null ? [] : histogram('tsbeanstalkd_store_fsync_seconds', s.store.fsyncLatency, { engine: s.store.engine }),
      ),
      g('tsbeanstalkd_binlog_oldest_index', 'Index of the oldest binlog file (stats binlog-oldest-index)', (s) => store(s, (st) => st.oldestIndex)),
      g('tsbeanstalkd_binlog_current_index', 'Index of the binlog file being written (stats binlog-current-index)', (s) =>
        store(s, (st) => st.currentIndex),
      ),
      g('tsbeanstalkd_binlog_max_size_bytes', 'Size at which a binlog file is closed (stats binlog-max-size)', (s) => one(s.source.info.binlogMaxSize)),
    ]
  }
}

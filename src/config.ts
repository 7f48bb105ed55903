/**
 * Settings of one server process, with the reference's defaults and limits
 * (ref:util.c optparse; REFERENCE.md 2.11). Two layers feed it: the flags
 * (RawFlags, as commander parsed them) and, below them, a --config file
 * (config-file.ts turns TOML into the same RawFlags strings plus what only
 * the file can say, such as several listeners). A flag overrides the file's
 * value for the same setting; every value goes through the same checks
 * whichever layer it came from, and an error names the file and line when
 * the value came from the file.
 */
import {
  DEFAULT_BINLOG_SIZE,
  DEFAULT_MAX_JOB_SIZE,
  DEFAULT_PORT,
  MAX_JOB_SIZE_LIMIT,
} from './protocol/constants.js'
import type { TlsFiles } from './server/credentials.js'
import { DEFAULT_PENDING, type PendingLimits } from './server/pending.js'
import type { TubePolicySpec } from './queue/extensions/policies.js'
import type { ListenAddress } from './server/server.js'
import { checkSchemaName, DEFAULT_SCHEMA, DEFAULT_SESSION_TIMEOUT_MS, describePgUrl } from './store/postgres/names.js'
import { STORE_ENGINES, MAX_JOB_SIZE_SQLITE, type StoreEngine } from './store/store.js'

export const LOG_FORMATS = ['json', 'pretty'] as const
/** --auth-listeners: which listeners require `auth` when --auth-file is given (a [[listen]] can say otherwise). */
export const AUTH_LISTENERS = ['all', 'tls'] as const
export type AuthListeners = (typeof AUTH_LISTENERS)[number]
export type LogFormat = (typeof LOG_FORMATS)[number]

/** --http HOST:PORT */
export interface HttpAddress {
  readonly host: string
  readonly port: number
}

/** Default --metrics-max-tubes. */
export const DEFAULT_METRICS_MAX_TUBES = 1000

export interface Config {
  /** -l/-p, or the file's [[listen]] entries; sockets passed by systemd replace them (cli.ts). */
  readonly listeners: readonly ListenAddress[]
  readonly maxJobSize: number
  readonly binlogDir: string | null
  /** --store: what keeps the jobs (in binlogDir; postgres: in pgUrl's database). */
  readonly store: StoreEngine
  /** --pg-url: the PostgreSQL database of --store postgres (libpq URL form). */
  readonly pgUrl: string | null
  /** --pg-schema: the namespace in it (one queue per schema). */
  readonly pgSchema: string
  /** --pg-session-timeout: how long a silent leader keeps its lock session (ms); it fences after half. */
  readonly pgSessionTimeoutMs: number
  /** fsync at most every this many ms; 0 = before every reply. */
  readonly fsyncMs: number
  readonly fsyncNever: boolean
  readonly binlogSize: number
  readonly user: string | null
  /** How many times -V was given (or the file's log.level: debug 1, trace 2). */
  readonly verbosity: number
  /** --http: the metrics and health listener, off (null) by default. */
  readonly http: HttpAddress | null
  /** --metrics-max-tubes: tubes with series of their own in /metrics. */
  readonly metricsMaxTubes: number
  /** --log-format; null: JSON unless stderr is a terminal. */
  readonly logFormat: LogFormat | null
  /** --config FILE, if one was read. */
  readonly configFile: string | null
  /** --extensions: the commands beyond the reference's (docs/EXTENSIONS.md); off keeps its wire exactly. */
  readonly extensions: boolean
  /** The config file's [[tube_policy]] tables (--extensions only). */
  readonly tubePolicies: readonly TubePolicySpec[]
  /** --warm-up: compile the command path before listening (server/warm-up.ts; never with -b). */
  readonly warmUp: boolean
  /** --tls-cert, --tls-key, --tls-ca: for the listeners with TLS; null when none has it. */
  readonly tls: TlsFiles | null
  /** --auth-file: the tokens of the listeners with auth; null when none has it. */
  readonly authFile: string | null
  /** Sockets passed by systemd (served as plaintext) require auth: --auth-file with --auth-listeners all. */
  readonly authPlaintext: boolean
  /** --pending-timeout, --max-pending: limits before trust (server/pending.ts). */
  readonly pending: PendingLimits
  /** --http-token-file: bearer tokens for the HTTP endpoints that change state (POST /drain). */
  readonly httpTokenFile: string | null
  /** --http-token-metrics: /metrics wants the bearer token too. */
  readonly httpTokenMetrics: boolean
}

/** A bad flag value; the CLI prints it and exits with the reference's usage code. */
export class UsageError extends Error {
  readonly code = 'TSB_ERR_USAGE'
  /** The setting whose value is wrong, when there is one. */
  readonly setting: keyof RawFlags | undefined
  constructor(message: string, setting?: keyof RawFlags) {
    super(message)
    this.name = 'UsageError'
    this.setting = setting
  }
}

export interface RawFlags {
  listen?: string
  port?: string
  maxJobSize?: string
  binlogDir?: string
  store?: string
  pgUrl?: string
  pgSchema?: string
  pgSessionTimeout?: string
  fsync?: string
  fsyncNever?: boolean
  binlogSize?: string
  user?: string
  verbose?: number
  http?: string
  metricsMaxTubes?: string
  logFormat?: string
  extensions?: boolean
  warmUp?: boolean
  tlsPort?: string
  tlsOnly?: boolean
  tlsCert?: string
  tlsKey?: string
  tlsCa?: string
  authFile?: string
  authListeners?: string
  pendingTimeout?: string
  maxPending?: string
  httpTokenFile?: string
  httpTokenMetrics?: boolean
}

/** What a --config file adds below the flags (config-file.ts). */
export interface FileLayer {
  readonly path: string
  /** Settings a flag can also give, in the flags' string form. */
  readonly flags: RawFlags
  /** [[listen]]: used when none of -l, -p, --tls-port, --tls-only is given; `auth` unset follows --auth-listeners. */
  readonly listeners?: readonly ListenAddress[]
  /** [[tube_policy]] (--extensions), and where the first one is (`path:line`). */
  readonly tubePolicies?: readonly TubePolicySpec[]
  readonly tubePoliciesAt?: string
  /** Where each setting of `flags` is in the file, `path:line`, for error messages. */
  readonly where: Partial<Record<keyof RawFlags, string>>
}

/** sscanf("%zu")-like: leading digits are the value; none is an error. */
function parseSize(flag: string, value: string, setting?: keyof RawFlags): number {
  const m = /^\s*\+?(\d+)/.exec(value)
  if (m === null) throw new UsageError(`invalid size for ${flag}: ${value}`, setting)
  return Number(m[1])
}

/** Parses -l, with `unix:PATH` for a Unix socket; no -l listens on every address. */
function listenAddress(listen: string | undefined, port: number): ListenAddress {
  if (listen?.startsWith('unix:')) return { path: listen.slice(5) }
  return { host: listen ?? '::', port }
}

/** HOST:PORT, [IPv6]:PORT or :PORT (every address). */
export function parseHostPort(what: string, value: string): HttpAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value)
  const port = m === null ? NaN : Number(m[3])
  if (m === null || port > 65535) throw new UsageError(`invalid ${what}: ${value} (HOST:PORT, e.g. 127.0.0.1:9100)`)
  return { host: m[1] ?? (m[2] === '' ? '::' : m[2]!), port }
}

/**
 * Flags over the file: each setting from the flag if given, else from the
 * file, else the default; then the same checks for both.
 */
export function toConfig(flags: RawFlags, warn: (msg: string) => void, file?: FileLayer): Config {
  const f: RawFlags = { ...file?.flags, ...definedOnly(flags) }
  const fromFile = (k: keyof RawFlags): boolean => file?.where[k] !== undefined && flags[k] === undefined
  try {
    return check(f, flags, file, warn)
  } catch (err) {
    // Name the file's line when the bad value came from it.
    if (err instanceof UsageError && err.setting !== undefined && fromFile(err.setting)) {
      throw new UsageError(`${file!.where[err.setting]}: ${err.message}`)
    }
    throw err
  }
}

function definedOnly(f: RawFlags): RawFlags {
  return Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined)) as RawFlags
}

function check(f: RawFlags, flags: RawFlags, file: FileLayer | undefined, warn: (msg: string) => void): Config {
  const port = f.port === undefined ? DEFAULT_PORT : Number(f.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`invalid port: ${f.port}`, 'port')
  let maxJobSize = f.maxJobSize === undefined ? DEFAULT_MAX_JOB_SIZE : parseSize('-z', f.maxJobSize, 'maxJobSize')
  if (maxJobSize > MAX_JOB_SIZE_LIMIT) {
    warn(`maximum job size was set to ${maxJobSize}; clamped to ${MAX_JOB_SIZE_LIMIT}`)
    maxJobSize = MAX_JOB_SIZE_LIMIT
  }
  const store = (f.store ?? 'binlog') as StoreEngine
  if (!STORE_ENGINES.includes(store)) throw new UsageError(`invalid --store: ${f.store} (binlog, sqlite or postgres)`, 'store')
  if (store === 'postgres') {
    if (f.pgUrl === undefined) throw new UsageError('--store postgres needs --pg-url (postgres://user@host:port/database)', 'store')
    if (f.binlogDir !== undefined) throw new UsageError('-b and --store postgres exclude each other: the jobs are in the database', 'binlogDir')
    if (f.extensions === true) {
      throw new UsageError('--extensions with --store postgres: the PostgreSQL store does not keep the extensions\' job tags yet (README "PostgreSQL store")', 'extensions')
    }
  } else {
    if (f.store !== undefined && f.binlogDir === undefined) warn('--store has no effect without -b')
    if (f.pgUrl !== undefined || f.pgSchema !== undefined) warn('--pg-url and --pg-schema have no effect without --store postgres')
  }
  const pgSchema = f.pgSchema ?? DEFAULT_SCHEMA
  const schemaProblem = checkSchemaName(pgSchema)
  if (schemaProblem !== null) throw new UsageError(schemaProblem, 'pgSchema')
  const pgSessionTimeoutMs = f.pgSessionTimeout === undefined ? DEFAULT_SESSION_TIMEOUT_MS : Number(f.pgSessionTimeout)
  if (!Number.isInteger(pgSessionTimeoutMs) || pgSessionTimeoutMs < 200) {
    throw new UsageError(`invalid --pg-session-timeout: ${f.pgSessionTimeout} (whole ms, at least 200)`, 'pgSessionTimeout')
  }
  if (f.pgUrl !== undefined && !/^postgres(ql)?:\/\//.test(f.pgUrl)) throw new UsageError(`invalid --pg-url ${describePgUrl(f.pgUrl)}: not a postgres:// URL`, 'pgUrl')
  if (store === 'sqlite' && f.binlogDir !== undefined && maxJobSize > MAX_JOB_SIZE_SQLITE) {
    warn(`maximum job size was set to ${maxJobSize}; the SQLite store holds at most ${MAX_JOB_SIZE_SQLITE}: clamped`)
    maxJobSize = MAX_JOB_SIZE_SQLITE
  }
  const fsyncMs = f.fsync === undefined ? 50 : parseSize('-f', f.fsync, 'fsync')
  const logFormat = (f.logFormat ?? null) as LogFormat | null
  if (logFormat !== null && !LOG_FORMATS.includes(logFormat)) throw new UsageError(`invalid --log-format: ${f.logFormat} (json or pretty)`, 'logFormat')
  const maxTubes = f.metricsMaxTubes === undefined ? DEFAULT_METRICS_MAX_TUBES : Number(f.metricsMaxTubes)
  if (!Number.isInteger(maxTubes) || maxTubes < 0) throw new UsageError(`invalid --metrics-max-tubes: ${f.metricsMaxTubes}`, 'metricsMaxTubes')
  if (f.metricsMaxTubes !== undefined && f.http === undefined) warn('--metrics-max-tubes has no effect without --http')
  const fsyncLayer = flags.fsync !== undefined || flags.fsyncNever === true ? flags : (file?.flags ?? {})
  const listeners = secureListeners(f, flags, file, port, warn)
  const sec = security(f, listeners, warn)
  return {
    listeners,
    maxJobSize,
    binlogDir: f.binlogDir ?? null,
    store,
    pgUrl: store === 'postgres' ? f.pgUrl! : null,
    pgSchema,
    pgSessionTimeoutMs,
    fsyncMs,
    // -f after -F turns fsync back on in the reference; commander keeps the last word of each flag only.
    // Either flag on the command line decides; otherwise the file's settings do.
    fsyncNever: fsyncLayer.fsyncNever === true && fsyncLayer.fsync === undefined,
    binlogSize: f.binlogSize === undefined ? DEFAULT_BINLOG_SIZE : parseSize('-s', f.binlogSize, 'binlogSize'),
    user: f.user ?? null,
    // commander always sets -V's count (0 without it): the file's level applies when it is 0.
    verbosity: Math.max(flags.verbose ?? 0, file?.flags.verbose ?? 0),
    http: f.http === undefined ? null : parseHttp(f.http),
    metricsMaxTubes: maxTubes,
    logFormat,
    configFile: file?.path ?? null,
    extensions: f.extensions === true,
    tubePolicies: tubePolicies(f, file),
    warmUp: flags.warmUp === true,
    ...sec,
  }
}

/** The file's [[tube_policy]] tables; they are extension commands' state, so they need --extensions. */
function tubePolicies(f: RawFlags, file: FileLayer | undefined): readonly TubePolicySpec[] {
  const specs = file?.tubePolicies ?? []
  if (specs.length > 0 && f.extensions !== true) {
    throw new UsageError(`${file!.tubePoliciesAt ?? file!.path}: [[tube_policy]] needs --extensions (or extensions = true)`)
  }
  return specs
}

/**
 * The listeners with what each demands. -l, -p, --tls-port or --tls-only on
 * the command line make them (plaintext on -l:-p unless --tls-only, TLS on
 * -l:--tls-port), as -l/-p alone do in the reference; otherwise the file's
 * [[listen]] list; otherwise the default plaintext one. Then --auth-file
 * decides auth: on every listener (--auth-listeners all) or the TLS ones
 * (tls), unless a [[listen]] says `auth` itself.
 */
function secureListeners(f: RawFlags, flags: RawFlags, file: FileLayer | undefined, port: number, warn: (msg: string) => void): ListenAddress[] {
  const cliListens = flags.listen !== undefined || flags.port !== undefined || flags.tlsPort !== undefined || flags.tlsOnly === true
  let listeners: ListenAddress[]
  if (!cliListens && file?.listeners !== undefined && file.listeners.length > 0) {
    listeners = [...file.listeners]
  } else {
    const plain = listenAddress(f.listen, port)
    listeners = f.tlsOnly === true ? [] : [plain]
    if (f.tlsPort !== undefined) {
      const tlsPort = Number(f.tlsPort)
      if (!Number.isInteger(tlsPort) || tlsPort < 0 || tlsPort > 65535 || f.tlsPort.trim() === '') throw new UsageError(`invalid --tls-port: ${f.tlsPort}`, 'tlsPort')
      if (!('host' in plain)) throw new UsageError('--tls-port serves TLS on the -l address, which must be a TCP one (not unix:)', 'tlsPort')
      listeners.push({ host: plain.host, port: tlsPort, tls: true })
    } else if (f.tlsOnly === true) {
      throw new UsageError('--tls-only turns the plaintext port off: it needs --tls-port', 'tlsOnly')
    }
  }
  const authListeners = (f.authListeners ?? 'all') as AuthListeners
  if (!AUTH_LISTENERS.includes(authListeners)) throw new UsageError(`invalid --auth-listeners: ${f.authListeners} (all or tls)`, 'authListeners')
  const tokens = f.authFile !== undefined
  if (!tokens && f.authListeners !== undefined) warn('--auth-listeners has no effect without --auth-file')
  return listeners.map((l) => {
    const { tls, auth, ...where } = l
    if (auth === true && !tokens) throw new UsageError(`${formatListen(l)} asks for auth: it needs --auth-file ([auth] token_file)`, 'authFile')
    const needsAuth = tokens && (auth ?? (authListeners === 'all' || tls === true))
    const out: ListenAddress = { ...where, ...(tls === true ? { tls: true } : {}), ...(needsAuth ? { auth: true } : {}) }
    if (needsAuth && tls !== true && !onThisMachine(out)) {
      warn(`tokens cross the network in clear text on ${formatListen(out)}: give it TLS, or keep auth to loopback and Unix sockets`)
    }
    return out
  })
}

/** Loopback, a Unix socket, or a passed fd (whose address is systemd's business). */
function onThisMachine(a: ListenAddress): boolean {
  if (!('host' in a)) return true
  return a.host === 'localhost' || a.host === '::1' || a.host.startsWith('127.')
}

type SecuritySettings = Pick<Config, 'tls' | 'authFile' | 'authPlaintext' | 'pending' | 'httpTokenFile' | 'httpTokenMetrics'>

function security(f: RawFlags, listeners: readonly ListenAddress[], warn: (msg: string) => void): SecuritySettings {
  const anyTls = listeners.some((l) => l.tls === true)
  let tls: TlsFiles | null = null
  if (anyTls) {
    if (f.tlsCert === undefined || f.tlsKey === undefined) {
      throw new UsageError('a TLS listener needs --tls-cert and --tls-key ([tls] cert and key)', f.tlsCert === undefined ? 'tlsCert' : 'tlsKey')
    }
    tls = { cert: f.tlsCert, key: f.tlsKey, ca: f.tlsCa ?? null }
  } else if (f.tlsCert !== undefined || f.tlsKey !== undefined || f.tlsCa !== undefined) {
    warn('--tls-cert, --tls-key and --tls-ca have no effect without a TLS listener (--tls-port, or [[listen]] tls = true)')
  }
  const anyAuth = listeners.some((l) => l.auth === true)
  if (f.authFile !== undefined && !anyAuth) warn('--auth-file has no effect: no listener requires auth (--auth-listeners tls without a TLS listener)')
  const timeoutMs = positive('--pending-timeout', f.pendingTimeout, DEFAULT_PENDING.timeoutMs, 'pendingTimeout')
  const max = positive('--max-pending', f.maxPending, DEFAULT_PENDING.max, 'maxPending')
  if (f.httpTokenFile !== undefined && f.http === undefined) warn('--http-token-file has no effect without --http')
  if (f.httpTokenMetrics === true && f.httpTokenFile === undefined) throw new UsageError('--http-token-metrics needs --http-token-file', 'httpTokenMetrics')
  return {
    tls,
    authFile: anyAuth ? f.authFile! : null,
    authPlaintext: anyAuth && (f.authListeners ?? 'all') === 'all',
    pending: { timeoutMs, max },
    httpTokenFile: f.httpTokenFile ?? null,
    httpTokenMetrics: f.httpTokenMetrics === true,
  }
}

function positive(flag: string, value: string | undefined, dflt: number, setting: keyof RawFlags): number {
  if (value === undefined) return dflt
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || value.trim() === '') throw new UsageError(`invalid ${flag}: ${value} (a whole number, at least 1)`, setting)
  return n
}

function parseHttp(value: string): HttpAddress {
  try {
    return parseHostPort('--http', value)
  } catch (err) {
    throw new UsageError((err as Error).message, 'http')
  }
}

/** One listener as the logs and --check-config print it. */
export function formatListen(a: ListenAddress | HttpAddress): string {
  if ('fd' in a) return `fd ${a.fd}${a.name === undefined ? '' : ` (${a.name})`}${demands(a)}`
  if ('path' in a) return `unix:${a.path}${demands(a)}`
  return `${a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`}${'tls' in a || 'auth' in a ? demands(a) : ''}`
}

/** ` (tls, auth)`: what a listener demands; nothing for a plaintext one. */
function demands(a: ListenAddress): string {
  const d = [...(a.tls === true ? ['tls'] : []), ...(a.auth === true ? ['auth'] : [])]
  return d.length === 0 ? '' : ` (${d.join(', ')})`
}

/** What --check-config adds after reading the files it names (never a secret). */
export interface CredentialSummary {
  /** The certificate: subject, expiry, fingerprint. */
  readonly certificate?: string
  readonly tokens?: number
  readonly httpTokens?: number
}

/** --check-config: what the server would run with, one setting a line. */
export function describeConfig(c: Config, creds: CredentialSummary = {}): string {
  const store =
    c.store === 'postgres'
      ? `postgres ${describePgUrl(c.pgUrl ?? '')}, schema ${c.pgSchema}, ${c.fsyncNever ? 'synchronous_commit off' : c.fsyncMs === 0 ? 'synchronous_commit on (every reply waits for the commit)' : `synchronous_commit off, flushed at most every ${c.fsyncMs} ms`}; standby until it holds the schema's lock, fenced after ${c.pgSessionTimeoutMs / 2} ms without an answer`
      : c.binlogDir === null
      ? 'none (jobs in memory only)'
      : `${c.store} in ${c.binlogDir}, ${c.fsyncNever ? 'never fsync' : c.fsyncMs === 0 ? 'fsync before every reply' : `fsync at most every ${c.fsyncMs} ms`}` +
        (c.store === 'binlog' ? `, files of ${c.binlogSize} bytes` : '')
  const tlsListeners = c.listeners.some((l) => l.tls === true)
  const tls =
    c.tls === null
      ? 'off'
      : `certificate ${c.tls.cert}${creds.certificate === undefined ? '' : ` (${creds.certificate})`}, key ${c.tls.key}; client certificates ${c.tls.ca === null ? 'not asked for' : `required, signed by the CA in ${c.tls.ca}`}; TLS 1.2 and 1.3`
  const secured = c.listeners.filter((l) => l.tls === true || l.auth === true)
  const auth =
    c.authFile === null
      ? 'off'
      : `${creds.tokens === undefined ? 'tokens' : `${creds.tokens} token${creds.tokens === 1 ? '' : 's'}`} from ${c.authFile}, required on ${c.listeners.filter((l) => l.auth === true).map(formatListen).join(', ')}` +
        (c.authPlaintext ? ' and on sockets passed by systemd' : '')
  const httpToken =
    c.http === null
      ? ''
      : c.httpTokenFile === null
        ? '; POST /drain off (no --http-token-file)'
        : `; POST /drain${c.httpTokenMetrics ? ' and /metrics' : ''} with a bearer token (${creds.httpTokens === undefined ? '' : `${creds.httpTokens} from `}${c.httpTokenFile})`
  const lines = [
    `config file: ${c.configFile ?? 'none'}`,
    `listen: ${c.listeners.map(formatListen).join(', ')} (sockets passed by systemd take the place of ${tlsListeners ? 'the plaintext ones' : 'these'})`,
    `max job size: ${c.maxJobSize}`,
    `store: ${store}`,
    `http: ${c.http === null ? 'off' : `${formatListen(c.http)}, per-tube metrics for at most ${c.metricsMaxTubes} tubes${httpToken}`}`,
    `tls: ${tls}`,
    `auth: ${auth}`,
    ...(secured.length === 0 ? [] : [`before trust: ${c.pending.timeoutMs} ms to finish the TLS handshake and auth, at most ${c.pending.max} connections pending at once`]),
    `log: ${c.logFormat ?? 'json (pretty on a terminal)'}, level ${['info', 'debug', 'trace'][Math.min(c.verbosity, 2)]}`,
    `user: ${c.user ?? 'unchanged'}`,
    `extensions: ${c.extensions ? 'on (docs/EXTENSIONS.md)' : 'off (the reference\'s commands only)'}`,
  ]
  return `${lines.join('\n')}\n`
}

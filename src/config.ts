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
import type { ListenAddress } from './server/server.js'
import { ENGINES, MAX_JOB_SIZE_SQLITE, type Engine } from './store/store.js'

export const LOG_FORMATS = ['json', 'pretty'] as const
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
  /** --store: what keeps the jobs in binlogDir. */
  readonly store: Engine
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
  fsync?: string
  fsyncNever?: boolean
  binlogSize?: string
  user?: string
  verbose?: number
  http?: string
  metricsMaxTubes?: string
  logFormat?: string
  extensions?: boolean
}

/** What a --config file adds below the flags (config-file.ts). */
export interface FileLayer {
  readonly path: string
  /** Settings a flag can also give, in the flags' string form. */
  readonly flags: RawFlags
  /** [[listen]]: used when neither -l nor -p is given. */
  readonly listeners?: readonly ListenAddress[]
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
  const store = (f.store ?? 'binlog') as Engine
  if (!ENGINES.includes(store)) throw new UsageError(`invalid --store: ${f.store} (binlog or sqlite)`, 'store')
  if (f.store !== undefined && f.binlogDir === undefined) warn('--store has no effect without -b')
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
  // -l or -p on the command line make the one listener, as in the reference; otherwise the file's list.
  const cliListens = flags.listen !== undefined || flags.port !== undefined
  const listeners = !cliListens && file?.listeners !== undefined && file.listeners.length > 0 ? file.listeners : [listenAddress(f.listen, port)]
  return {
    listeners,
    maxJobSize,
    binlogDir: f.binlogDir ?? null,
    store,
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
  }
}

function parseHttp(value: string): HttpAddress {
  try {
    return parseHostPort('--http', value)
  } catch (err) {
    throw new UsageError((err as Error).message, 'http')
  }
}

/** One listener as the logs and --check-config print it. */
export function formatListen(a: ListenAddress): string {
  if ('fd' in a) return `fd ${a.fd}${a.name === undefined ? '' : ` (${a.name})`}`
  if ('path' in a) return `unix:${a.path}`
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

/** --check-config: what the server would run with, one setting a line. */
export function describeConfig(c: Config): string {
  const store =
    c.binlogDir === null
      ? 'none (jobs in memory only)'
      : `${c.store} in ${c.binlogDir}, ${c.fsyncNever ? 'never fsync' : c.fsyncMs === 0 ? 'fsync before every reply' : `fsync at most every ${c.fsyncMs} ms`}` +
        (c.store === 'binlog' ? `, files of ${c.binlogSize} bytes` : '')
  const lines = [
    `config file: ${c.configFile ?? 'none'}`,
    `listen: ${c.listeners.map(formatListen).join(', ')} (sockets passed by systemd take their place)`,
    `max job size: ${c.maxJobSize}`,
    `store: ${store}`,
    `http: ${c.http === null ? 'off' : `${formatListen(c.http)}, per-tube metrics for at most ${c.metricsMaxTubes} tubes`}`,
    `log: ${c.logFormat ?? 'json (pretty on a terminal)'}, level ${['info', 'debug', 'trace'][Math.min(c.verbosity, 2)]}`,
    `user: ${c.user ?? 'unchanged'}`,
    `extensions: ${c.extensions ? 'on (docs/EXTENSIONS.md)' : 'off (the reference\'s commands only)'}`,
  ]
  return `${lines.join('\n')}\n`
}

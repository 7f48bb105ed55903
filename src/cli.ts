/**
 * The command line: flags (over a --config file) -> Config -> logger -> the
 * HTTP listener -> server -> listeners -> store -> serving. The only place
 * that exits the process. Exit codes follow the reference: 5 usage, 111
 * socket, 32-34 dropping privileges.
 *
 * Start order, and what /readyz says meanwhile (one Readiness):
 *   starting -> (HTTP listens) -> the server listens (systemd's sockets, or
 *   -l/-p, or the file's) -> privileges dropped -> replaying (-b: the store
 *   opens and replays; beanstalk clients that connect wait unanswered, as
 *   in the reference's listen backlog) -> serving (READY=1 to systemd) ->
 *   draining (SIGUSR1) -> stopping (SIGTERM/SIGINT); failed when the store
 *   fails. The replay yields to the event loop every few ms
 *   (store/replay-progress.ts), so /readyz answers 503 throughout it.
 *
 * --store postgres: before the listeners, the process waits as a standby
 * (Readiness `standby`, /readyz 503, no beanstalk listener) until it holds
 * the schema's lock (store/postgres/leader.ts); losing it later exits 15
 * at once (fenced), closing every client with the process.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { Command, CommanderError, Option } from 'commander'
import { pino, type Logger } from 'pino'
import { parseConfigFile } from './config-file.js'
import {
  describeConfig,
  formatListen,
  toConfig,
  UsageError,
  LOG_FORMATS,
  AUTH_LISTENERS,
  DEFAULT_METRICS_MAX_TUBES,
  type Config,
  type FileLayer,
  type HttpAddress,
  type LogFormat,
  type RawFlags,
} from './config.js'
import type { HttpEndpoint as HttpEndpointType } from './http/http-server.js'
import type { MetricsSource } from './http/metrics.js'
import { CredentialsError, describeTls, loadTls, loadTokens, type TlsMaterial } from './server/credentials.js'
import { connectionBudget } from './server/fd-limit.js'
import { DEFAULT_PENDING } from './server/pending.js'
import { warmUp } from './server/warm-up.js'
import { BeanstalkServer, type ListenAddress } from './server/server.js'
import { inheritedListeners, SystemdNotifier } from './server/systemd.js'
import { convertDir } from './store/convert.js'
import { exportDir } from './store/beanstalkd/export.js'
import { importInto, importSummary, logReport } from './store/beanstalkd/import.js'
import { openStore } from './store/open.js'
import type { Leader } from './store/postgres/leader.js'
import { ENGINES, STORE_ENGINES, type DurableStore, type Engine, type ReplaySink } from './store/store.js'
import { systemClock } from './util/clock.js'
import { Readiness, ReadyState } from './util/readiness.js'
import type { TokenSet } from './util/token-set.js'
import { VERSION } from './version.js'

const EXIT_USAGE = 5
const EXIT_SOCKET = 111
/** Store exit codes (-b, either engine): 10 is the reference's lock failure; the others are ours. */
const EXIT_BINLOG: Record<string, number> = {
  TSB_ERR_BINLOG_LOCKED: 10,
  TSB_ERR_STORE_LOCKED: 10,
  TSB_ERR_BINLOG_CORRUPT: 11,
  TSB_ERR_STORE_CORRUPT: 11,
  TSB_ERR_STORE_VERSION: 11,
  TSB_ERR_BINLOG_FULL: 12,
  TSB_ERR_STORE_FULL: 12,
  TSB_ERR_BINLOG_IO: 13,
  TSB_ERR_BINLOG_FSYNC: 13,
  TSB_ERR_STORE_IO: 13,
  // DIR holds the other engine's data: a flag to fix, as a usage error is.
  TSB_ERR_STORE_MISMATCH: EXIT_USAGE,
  // A file tsbeanstalkd did not write stands in DIR; nothing was changed.
  TSB_ERR_STORE_FOREIGN: 14,
  // Tagged jobs in DIR and no --extensions: a flag to fix.
  TSB_ERR_EXTENSIONS_NEEDED: EXIT_USAGE,
  TSB_ERR_STORE_TAGS: EXIT_USAGE,
  // --store postgres: this process lost (or never confirmed) the schema's leadership.
  TSB_ERR_STORE_FENCED: 15,
  // --store postgres: the schema is not ours to use (other tables, a newer schema version).
  TSB_ERR_STORE_REFUSED: 16,
}
const EXIT_FENCED = 15
const EXIT_BINLOG_OTHER = 13

function program(): Command {
  return new Command('tsbeanstalkd')
    .description('A beanstalkd-compatible job queue daemon.')
    .helpOption('-h, --help', 'show this help')
    .version(`tsbeanstalkd ${VERSION}`, '-v, --version', 'show version information')
    .option('-b, --binlog-dir <DIR>', 'keep the jobs in DIR (binlog, or --store sqlite) and replay them at start (default is memory only)')
    .option('-f, --fsync <MS>', 'fsync at most once every MS milliseconds (use -f0 for "always fsync") (default is 50)')
    .option('-F, --fsync-never', 'never fsync')
    .option('-l, --listen <ADDR>', 'listen on address, or unix:PATH for a Unix socket (default is 0.0.0.0 and ::)')
    .option('-p, --port <PORT>', 'listen on port (default is 11300)')
    .option('-u, --user <USER>', 'become user and group')
    .option('-z, --max-job-size <BYTES>', 'set the maximum job size in bytes (default is 65535, max 1073741824)')
    .option('-s, --binlog-size <BYTES>', 'set the size of each write-ahead log file (default is 10485760)')
    .addOption(new Option('--store <ENGINE>', 'what keeps the jobs: in the -b directory, or postgres (default is binlog)').choices(STORE_ENGINES))
    .option('--pg-url <URL>', '--store postgres: the database, postgres://user:password@host:port/database (libpq form; ?host=/socket/dir)')
    .option('--pg-session-timeout <MS>', '--store postgres: a leader PostgreSQL hears nothing from for MS ms loses its lock to a standby; it fences itself after MS/2 (default is 2000)')
    .option('--pg-schema <NAME>', '--store postgres: the schema holding this queue; processes on the same one are leader and standbys (default is tsbeanstalkd)')
    .addOption(new Option('-c', 'compact the binlog (default; accepted and ignored)'))
    .addOption(new Option('-n', 'do not compact the binlog (accepted and ignored)'))
    .option('-V, --verbose', 'increase verbosity (repeatable)', (_v: string, prev: number) => prev + 1, 0)
    .option('--config <FILE>', 'read settings from a TOML file; flags override it')
    .option('--check-config', 'check the flags and the --config file, print the settings and exit (0 valid, 5 not)')
    .option('--http <HOST:PORT>', 'serve /metrics, /healthz and /readyz over HTTP on HOST:PORT (default is off)')
    .option('--metrics-max-tubes <N>', `tubes with /metrics series of their own; the rest are summed as tube="*" (default is ${DEFAULT_METRICS_MAX_TUBES})`)
    .option('--extensions', "also serve the commands beyond the reference's (docs/EXTENSIONS.md); off by default, which keeps its wire exactly")
    .option('--warm-up', 'before listening, compile the command path on a throw-away server (at most 0.6 s; not with -b, whose start it would delay); off by default')
    .addOption(
      new Option('--log-format <FORMAT>', 'log lines as json or pretty (default is json, pretty when stderr is a terminal)').choices(LOG_FORMATS),
    )
    .option('--tls-port <PORT>', 'also serve the protocol over TLS on PORT, on the -l address (default is off)')
    .option('--tls-only', 'no plaintext listener: only the --tls-port one')
    .option('--tls-cert <FILE>', 'PEM certificate (chain) of the TLS listeners')
    .option('--tls-key <FILE>', 'PEM private key of --tls-cert')
    .option('--tls-ca <FILE>', 'require client certificates signed by this CA (mutual TLS)')
    .option('--auth-file <FILE>', 'require "auth <token>" before anything else; one token a line (default is off)')
    .addOption(new Option('--auth-listeners <WHICH>', 'with --auth-file: the listeners that require it, all or tls (default is all)').choices(AUTH_LISTENERS))
    .option('--pending-timeout <MS>', `close a connection not through its TLS handshake and auth MS after its accept (default is ${DEFAULT_PENDING.timeoutMs})`)
    .option('--max-pending <N>', `connections in their TLS handshake or before auth at once; more are closed (default is ${DEFAULT_PENDING.max})`)
    .option('--http-token-file <FILE>', 'bearer tokens for POST /drain on --http (default is off: no endpoint changes state)')
    .option('--http-token-metrics', '/metrics requires the bearer token too')
    .addHelpText(
      'after',
      [
        '',
        'Commands (each has -h):',
        "  convert --from ENGINE --to ENGINE DIR   rewrite a stopped server's -b DIR for the other --store",
        "  import-beanstalkd SRC DIR               read beanstalkd's binlog directory SRC into a new -b DIR",
        "  export-beanstalkd DIR OUT               write a stopped server's -b DIR as a beanstalkd binlog directory",
      ].join('\n'),
    )
    .allowExcessArguments(false)
}

function makeLogger(verbosity: number): Logger {
  return pino({ name: 'tsbeanstalkd', level: logLevel(verbosity) }, pino.destination({ fd: 2, sync: true }))
}

const logLevel = (verbosity: number): string => (verbosity >= 2 ? 'trace' : verbosity === 1 ? 'debug' : 'info')

/** The server's logger: JSON, or readable lines for --log-format pretty (the default on a terminal). */
async function serverLogger(verbosity: number, format: LogFormat | null): Promise<Logger> {
  const tty = process.stderr.isTTY === true
  if ((format ?? (tty ? 'pretty' : 'json')) === 'json') return makeLogger(verbosity)
  // Loaded only when used (it takes ~70 ms to load). A stream, not a
  // transport: transports run in a worker thread, and the log must stay
  // synchronous so the last line before an exit is written.
  const { default: pinoPretty } = await import('pino-pretty')
  const pretty = pinoPretty({
    destination: 2,
    sync: true,
    colorize: tty,
    singleLine: true,
    ignore: 'pid,hostname,name',
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
  })
  return pino({ name: 'tsbeanstalkd', level: logLevel(verbosity) }, pretty)
}

/** The log line and exit of a leader that lost its schema's leadership. */
function fenced(log: Logger, readiness: Readiness, schema: string, reason: string): never {
  readiness.set(ReadyState.FAILED, `fenced: ${reason}`)
  log.fatal(
    { schema, reason },
    `postgres: lost the leadership of schema ${schema} (${reason}); closing every client and exiting ${EXIT_FENCED} (fenced): a standby takes over`,
  )
  process.exit(EXIT_FENCED)
}

/** --store postgres: waits as a standby until this process leads the schema (store/postgres/leader.ts). */
async function leadSchema(config: Config, log: Logger, readiness: Readiness): Promise<Leader> {
  const { Leader } = await import('./store/postgres/leader.js')
  const schema = config.pgSchema
  readiness.set(ReadyState.STANDBY, `waiting for the leadership of schema ${schema}`)
  return Leader.acquire({
    url: config.pgUrl!,
    schema,
    log,
    readiness,
    sessionTimeoutMs: config.pgSessionTimeoutMs,
    onLost: (reason) => fenced(log, readiness, schema, reason),
  })
}

/** -b (or --store postgres): opens the store and replays it into `into`, or exits with a clear log line and a code per error. */
async function openBinlog(config: Config, dir: string, log: Logger, into: ReplaySink, readiness: Readiness, leader: Leader | null): Promise<DurableStore> {
  try {
    return await openStore({
      engine: config.store,
      ...(leader === null ? {} : { postgres: { url: config.pgUrl!, schema: config.pgSchema, leader } }),
      dir,
      fileSize: config.binlogSize,
      fsyncMs: config.fsyncMs,
      fsyncNever: config.fsyncNever,
      maxJobSize: config.maxJobSize,
      log,
      clock: systemClock,
      readiness,
      // An fsync or write error after start: stop rather than acknowledge what may not be on disk.
      onFatal: (err) => {
        if ((err as { code?: string }).code === 'TSB_ERR_STORE_FENCED') fenced(log, readiness, config.pgSchema, err.message)
        readiness.set(ReadyState.FAILED, err.message)
        log.fatal({ err }, `${config.store} write or fsync failed; exiting (a restart replays everything acknowledged)`)
        process.exit(EXIT_BINLOG[(err as { code?: string }).code ?? ''] ?? EXIT_BINLOG_OTHER)
      },
    }, into)
  } catch (err) {
    const code = (err as { code?: string }).code ?? ''
    readiness.set(ReadyState.FAILED, (err as Error).message)
    if (config.store === 'postgres') log.fatal({ err, schema: config.pgSchema, store: config.store }, `cannot use the postgres store: ${(err as Error).message}`)
    else log.fatal({ err, dir, store: config.store }, `cannot use the ${config.store} directory: ${(err as Error).message}`)
    process.exit(EXIT_BINLOG[code] ?? EXIT_BINLOG_OTHER)
  }
}

/** -u: become that user (and its primary group) after binding, as the reference does. */
function dropPrivileges(user: string, log: Logger): void {
  let gid: number
  try {
    gid = Number(execFileSync('id', ['-g', user], { encoding: 'latin1' }).trim())
  } catch {
    log.fatal({ user }, 'unknown user')
    process.exit(32)
  }
  try {
    process.setgid!(gid)
  } catch (err) {
    log.fatal({ err, user, gid }, 'setgid failed')
    process.exit(33)
  }
  try {
    process.setuid!(user)
  } catch (err) {
    log.fatal({ err, user }, 'setuid failed')
    process.exit(34)
  }
}

/** With no -l the reference listens on every address; fall back to IPv4 where IPv6 is off. */
async function listenDualStack(server: BeanstalkServer, addr: ListenAddress): ReturnType<BeanstalkServer['listen']> {
  try {
    return await server.listen(addr)
  } catch (err) {
    const ipv6Off = (err as NodeJS.ErrnoException).code === 'EAFNOSUPPORT'
    if (!ipv6Off || !('host' in addr) || addr.host !== '::') throw err
    return server.listen({ host: '0.0.0.0', port: addr.port })
  }
}

/** The secrets the settings name, read and checked; SIGHUP reads them again. */
interface Secrets {
  readonly tls: TlsMaterial | null
  readonly tokens: TokenSet | null
  readonly httpTokens: TokenSet | null
}

/** Reads every secret the settings name; a CredentialsError names the file at fault. */
function loadSecrets(c: Config, warn: (msg: string) => void): Secrets {
  return {
    tls: c.tls === null ? null : loadTls(c.tls, warn),
    tokens: c.authFile === null ? null : loadTokens(c.authFile, warn),
    httpTokens: c.http === null || c.httpTokenFile === null ? null : loadTokens(c.httpTokenFile, warn),
  }
}

/** SIGHUP: each secret read again; one that fails keeps what is in use, with an error line naming the file. */
function reloadSecrets(c: Config, old: Secrets, log: Logger): { secrets: Secrets; failures: number } {
  let failures = 0
  const warn = (msg: string): void => log.warn(msg)
  const again = <T>(what: string, current: T | null, load: () => T): T | null => {
    if (current === null) return null
    try {
      return load()
    } catch (err) {
      failures++
      log.error({ err, file: (err as Partial<CredentialsError>).file }, `SIGHUP: ${what} not reloaded; the one loaded before stays in use: ${(err as Error).message}`)
      return current
    }
  }
  const secrets: Secrets = {
    tls: again('the TLS certificate', old.tls, () => loadTls(c.tls!, warn)),
    tokens: again('the auth tokens', old.tokens, () => loadTokens(c.authFile!, warn)),
    httpTokens: again('the HTTP tokens', old.httpTokens, () => loadTokens(c.httpTokenFile!, warn)),
  }
  return { secrets, failures }
}

/** What the log and --check-config say of the secrets (no secret in it). */
function secretSummary(s: Secrets): { certificate?: string; tokens?: number; httpTokens?: number } {
  return {
    ...(s.tls === null ? {} : { certificate: describeTls(s.tls) }),
    ...(s.tokens === null ? {} : { tokens: s.tokens.size }),
    ...(s.httpTokens === null ? {} : { httpTokens: s.httpTokens.size }),
  }
}

/** What the HTTP listener may do besides reading (POST /drain) and who may. */
interface HttpActions {
  readonly tokens: () => TokenSet | null
  readonly tokenMetrics: boolean
  /** Drain mode, as SIGUSR1; false while there is no server yet. */
  readonly drain: () => boolean
}

/** --http: listens before the store opens, so /readyz answers during a replay; exits 111 when it cannot. */
async function startHttp(
  at: HttpAddress,
  maxTubes: number,
  readiness: Readiness,
  source: () => MetricsSource | null,
  actions: HttpActions,
  log: Logger,
): Promise<{ label: string; close(): Promise<void> }> {
  // Loaded only with --http: prom-client takes ~140 ms to load, which every start would pay.
  const [{ HttpEndpoint }, { Metrics }] = await Promise.all([import('./http/http-server.js'), import('./http/metrics.js')])
  let endpoint: HttpEndpointType | null = null
  const metrics = new Metrics({ readiness, source, maxTubes, httpAuthFailures: () => endpoint?.authFailures ?? 0 })
  try {
    endpoint = await HttpEndpoint.listen({ ...at, readiness, metrics, log, ...actions })
  } catch (err) {
    log.fatal({ err, http: formatListen(at) }, 'cannot listen for --http')
    process.exit(EXIT_SOCKET)
  }
  const ep = endpoint
  const label = formatListen({ host: ep.address.address, port: ep.address.port })
  log.info({ http: label }, `http: serving /metrics, /healthz, /readyz${actions.tokens() === null ? '' : ', POST /drain (bearer token)'}`)
  return { label, close: () => ep.close() }
}

/** Opens every listener in turn (exit 111 on the first that fails); what each is bound to. */
async function listenAll(server: BeanstalkServer, addrs: readonly ListenAddress[], log: Logger): Promise<{ label: string; address: string; port?: number }[]> {
  const out: { label: string; address: string; port?: number }[] = []
  for (const addr of addrs) {
    try {
      const b = await listenDualStack(server, addr)
      const demands = { ...(addr.tls === true ? { tls: true } : {}), ...(addr.auth === true ? { auth: true } : {}) }
      out.push(
        typeof b === 'string'
          ? { label: formatListen({ path: b, ...demands }), address: b }
          : { label: formatListen({ host: b.address, port: b.port, ...demands }), address: b.address, port: b.port },
      )
    } catch (err) {
      log.fatal({ err, listen: formatListen(addr) }, 'cannot listen')
      process.exit(EXIT_SOCKET)
    }
  }
  return out
}

/** --config FILE, read and checked (UsageError naming file:line when it is wrong). */
function readConfigFile(file: string): FileLayer {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read the config file ${file}: ${(err as Error).message}`)
  }
  return parseConfigFile(file, text)
}

/** `tsbeanstalkd convert --from binlog --to sqlite DIR` (and back): see src/store/convert.ts. */
async function convert(argv: string[]): Promise<void> {
  const engine = (flag: string): Option => new Option(`${flag} <ENGINE>`, 'binlog or sqlite').choices(ENGINES).makeOptionMandatory()
  const cmd = new Command('tsbeanstalkd convert')
    .description("Rewrites a stopped server's -b DIR for the other --store, keeping every job and the id high-water mark.")
    .helpOption('-h, --help', 'show this help')
    .addOption(engine('--from'))
    .addOption(engine('--to'))
    .option('-s, --binlog-size <BYTES>', 'with --to binlog: size of each binlog file (default is 10485760)')
    .argument('<DIR>', 'the -b directory')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: (str) => process.stderr.write(str) })
  let raw: { from: Engine; to: Engine; binlogSize?: string }
  try {
    cmd.parse(argv, { from: 'user' })
    raw = cmd.opts()
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE)
    throw err
  }
  const dir = cmd.args[0]!
  const log = makeLogger(0)
  let size: number
  try {
    size = toConfig({ binlogDir: dir, ...(raw.binlogSize === undefined ? {} : { binlogSize: raw.binlogSize }) }, () => undefined).binlogSize
  } catch (err) {
    process.stderr.write(`tsbeanstalkd: ${(err as Error).message}\n`)
    process.exit(EXIT_USAGE)
  }
  try {
    const r = convertDir(dir, raw.from, raw.to, size, log)
    log.info({ dir, from: raw.from, to: raw.to, ...r }, `converted ${r.jobs} jobs from ${raw.from} to ${raw.to}; the ${raw.from} files are kept in ${r.backup}`)
  } catch (err) {
    const code = (err as { code?: string }).code ?? ''
    log.fatal({ err, dir }, `convert failed: ${(err as Error).message}`)
    process.exit(EXIT_BINLOG[code] ?? EXIT_BINLOG_OTHER)
  }
}

/** A subcommand's own small parser: two directory arguments and -s / -z. */
function subcommand(name: string, description: string, args: [string, string][], argv: string[]): { dirs: string[]; size: number; maxJobSize: number; store: Engine } {
  const cmd = new Command(`tsbeanstalkd ${name}`)
    .description(description)
    .helpOption('-h, --help', 'show this help')
    .option('-s, --binlog-size <BYTES>', 'size of each binlog file written (default is 10485760)')
    .option('-z, --max-job-size <BYTES>', 'report bodies above this size (default is 65535)')
    .addOption(new Option('--store <ENGINE>', 'import-beanstalkd: the engine to write (default is binlog)').choices(ENGINES))
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: (str) => process.stderr.write(str) })
  for (const [a, d] of args) cmd.argument(a, d)
  let raw: { binlogSize?: string; maxJobSize?: string; store?: Engine }
  try {
    cmd.parse(argv, { from: 'user' })
    raw = cmd.opts()
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE)
    throw err
  }
  try {
    const c = toConfig(
      {
        binlogDir: cmd.args[1]!,
        ...(raw.binlogSize === undefined ? {} : { binlogSize: raw.binlogSize }),
        ...(raw.maxJobSize === undefined ? {} : { maxJobSize: raw.maxJobSize }),
      },
      () => undefined,
    )
    return { dirs: cmd.args, size: c.binlogSize, maxJobSize: c.maxJobSize, store: raw.store ?? 'binlog' }
  } catch (err) {
    process.stderr.write(`tsbeanstalkd: ${(err as Error).message}\n`)
    process.exit(EXIT_USAGE)
  }
}

/** `tsbeanstalkd import-beanstalkd SRC DIR`: src/store/beanstalkd/import.ts. Prints the report (JSON) on stdout. */
function importBeanstalkd(argv: string[]): void {
  const a = subcommand(
    'import-beanstalkd',
    "Reads a beanstalkd binlog directory (SRC, left unchanged) into a new tsbeanstalkd -b DIR, and reports what it imported and anything it could not read.",
    [
      ['<SRC>', "beanstalkd's -b directory (stopped)"],
      ['<DIR>', 'the new tsbeanstalkd -b directory'],
    ],
    argv,
  )
  storeCommand('import-beanstalkd', (log) => {
    const r = importInto(a.dirs[0]!, a.dirs[1]!, { engine: a.store, fileSize: a.size, maxJobSize: a.maxJobSize, log })
    logReport(log, r.read)
    const { jobs, ...rest } = r.read
    const summary = importSummary(r.read)
    process.stdout.write(JSON.stringify({ summary, ...rest }, null, 2) + '\n')
    log.info({ src: a.dirs[0], dir: a.dirs[1], ...summary }, `imported ${jobs.length} jobs`)
  })
}

/** `tsbeanstalkd export-beanstalkd DIR OUT`: src/store/beanstalkd/export.ts. */
function exportBeanstalkd(argv: string[]): void {
  const a = subcommand(
    'export-beanstalkd',
    "Writes a stopped server's -b DIR (left unchanged) as a beanstalkd (1.10-1.13) binlog directory OUT, to go back to beanstalkd.",
    [
      ['<DIR>', 'the tsbeanstalkd -b directory (server stopped)'],
      ['<OUT>', 'a new directory for beanstalkd -b'],
    ],
    argv,
  )
  storeCommand('export-beanstalkd', (log) => {
    const r = exportDir(a.dirs[0]!, a.dirs[1]!, a.size)
    const z = Math.max(65535, r.maxBodySize)
    process.stdout.write(JSON.stringify({ ...r, start: `beanstalkd -b ${a.dirs[1]}${z > 65535 ? ` -z ${z}` : ''}` }, null, 2) + '\n')
    if (z > 65535) log.warn({ maxBodySize: r.maxBodySize }, `start beanstalkd with -z ${z} or larger: it drops, at replay, jobs above its -z`)
    log.info({ dir: a.dirs[0], out: a.dirs[1], ...r }, `exported ${r.jobs} jobs`)
  })
}

/** Runs a store subcommand; a failure is logged and exits with its store exit code. */
function storeCommand(name: string, run: (log: Logger) => void): void {
  const log = makeLogger(0)
  try {
    run(log)
  } catch (err) {
    log.fatal({ err }, `${name} failed: ${(err as Error).message}`)
    process.exit(EXIT_BINLOG[(err as { code?: string }).code ?? ''] ?? EXIT_BINLOG_OTHER)
  }
}

export async function main(argv: string[]): Promise<void> {
  if (argv[2] === 'convert') return convert(argv.slice(3))
  if (argv[2] === 'import-beanstalkd') return importBeanstalkd(argv.slice(3))
  if (argv[2] === 'export-beanstalkd') return exportBeanstalkd(argv.slice(3))
  // Like the reference, help and errors go to stderr.
  const cmd = program()
    .exitOverride()
    .configureOutput({ writeOut: (str) => process.stderr.write(str) })
  let config: Config
  let checkOnly = false
  const early: string[] = []
  try {
    cmd.parse(argv)
    const opts = cmd.opts<RawFlags & { c?: boolean; n?: boolean; config?: string; checkConfig?: boolean }>()
    if (opts.c === true || opts.n === true) early.push('-c and -n are accepted for compatibility and have no effect')
    const { config: file, checkConfig, c: _c, n: _n, ...flags } = opts
    checkOnly = checkConfig === true
    config = toConfig(flags, (msg) => early.push(msg), file === undefined ? undefined : readConfigFile(file))
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE)
    if (err instanceof UsageError) {
      process.stderr.write(`tsbeanstalkd: ${err.message}\n`)
      process.exit(EXIT_USAGE)
    }
    throw err
  }
  if (checkOnly) {
    let secrets: Secrets
    try {
      secrets = loadSecrets(config, (msg) => early.push(msg))
    } catch (err) {
      if (!(err instanceof CredentialsError)) throw err
      process.stderr.write(`tsbeanstalkd: ${err.message}\n`)
      process.exit(EXIT_USAGE)
    }
    for (const msg of early) process.stderr.write(`tsbeanstalkd: warning: ${msg}\n`)
    process.stdout.write(describeConfig(config, secretSummary(secrets)))
    process.exit(0)
  }
  const log = await serverLogger(config.verbosity, config.logFormat)
  for (const msg of early) log.warn(msg)
  let secrets: Secrets
  try {
    secrets = loadSecrets(config, (msg) => log.warn(msg))
  } catch (err) {
    if (!(err instanceof CredentialsError)) throw err
    log.fatal({ err, file: err.file }, err.message)
    process.exit(EXIT_USAGE)
  }
  let reloadFailures = 0
  const readiness = new Readiness()
  const notifier = new SystemdNotifier(log)
  // Read (and removed from the environment) before anything can spawn a child.
  const inherited = inheritedListeners()
  let binlog: DurableStore | undefined
  let leader: Leader | null = null
  // -b, or --store postgres: jobs outlive the process, and the store replays before clients are served.
  const persistent = config.binlogDir !== null || config.store === 'postgres'
  // Queue and store figures once the store has replayed and the server serves; until then the process's only.
  let serving: BeanstalkServer | null = null
  const source = (): MetricsSource | null => {
    const s = serving
    return s === null
      ? null
      : {
          queue: s.registry,
          cmd: s.ctx.cmd,
          extensions: config.extensions,
          info: s.ctx.info,
          store: binlog,
          refusedConnections: () => s.refusedConnections,
          security: () => s.security(),
          reloadFailures: () => reloadFailures,
        }
  }
  // The server, once made (POST /drain can come before).
  let made: BeanstalkServer | null = null
  const drain = (why: string): boolean => {
    if (made === null) return false
    log.info(`${why}: entering drain mode; puts now answer DRAINING`)
    readiness.set(ReadyState.DRAINING)
    notifier.status('draining: puts answer DRAINING')
    made.drain()
    return true
  }
  const actions: HttpActions = { tokens: () => secrets.httpTokens, tokenMetrics: config.httpTokenMetrics, drain: () => drain('POST /drain') }
  const http = config.http === null ? null : await startHttp(config.http, config.metricsMaxTubes, readiness, source, actions, log)
  const security = config.tls === null && config.authFile === null ? undefined : { tls: secrets.tls, tokens: secrets.tokens, pending: config.pending }
  // With -b the port is bound first and the store replays after (as the reference does): clients
  // that connect meanwhile wait, unanswered, until the replay is over (README "Restart at scale").
  // They count against the fd budget of the moment; the store's few files come out of its headroom.
  // Before the real server exists, so nothing of the warm-up's reaches its registry or counters.
  // Not with -b: the start (and a restart's replay) would wait for it.
  if (config.warmUp && config.binlogDir === null) await warmUp({ maxJobSize: config.maxJobSize, extensions: config.extensions })
  const srv = new BeanstalkServer({
    maxJobSize: config.maxJobSize,
    binlogMaxSize: config.binlogSize,
    log,
    awaitStore: persistent,
    maxConnections: connectionBudget(),
    extensions: config.extensions,
    tubePolicies: config.tubePolicies,
    security,
  })
  made = srv
  // Signal handlers go in before the first log line announces the server.
  process.on('SIGUSR1', () => drain('SIGUSR1'))
  // SIGHUP reloads certificates and tokens; with nothing to reload it keeps its default (exit), as in the reference.
  if (secrets.tls !== null || secrets.tokens !== null || secrets.httpTokens !== null) {
    process.on('SIGHUP', () => {
      const r = reloadSecrets(config, secrets, log)
      secrets = r.secrets
      reloadFailures += r.failures
      srv.updateCredentials(secrets.tls, secrets.tokens)
      log.info({ ...secretSummary(secrets), failures: r.failures }, r.failures === 0 ? 'SIGHUP: certificates and tokens reloaded' : 'SIGHUP: reloaded what could be read')
    })
  }
  const stop = (signal: string): void => {
    log.info({ signal }, 'shutting down')
    readiness.set(ReadyState.STOPPING)
    notifier.stopping()
    void Promise.all([srv.close(), http?.close()]).then(async () => {
      // Everything acknowledged is written and fsynced before exit, whatever -f says.
      if (binlog?.closeAsync !== undefined) await binlog.closeAsync()
      else binlog?.close()
      // A clean stop unlocks the schema: a standby takes over at its next poll.
      await leader?.release()
      process.exit(0)
    })
    // Connections that never finish closing must not keep the process alive.
    setTimeout(() => process.exit(0), 2000).unref()
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  // Sockets passed by systemd replace -l/-p and the file's listeners, as in the reference.
  if (inherited.length > 0) {
    log.info({ sockets: inherited.map(formatListen) }, 'socket activation: serving the sockets systemd passed; -l/-p and [[listen]] are not used')
  }
  // A standby does not listen: clients (and a load balancer's probes) find only the leader.
  if (config.store === 'postgres') leader = await leadSchema(config, log, readiness)
  // They are served as plaintext; the TLS listeners are bound here all the same.
  const passed = inherited.map((a) => (config.authPlaintext ? { ...a, auth: true } : a))
  const listens = await listenAll(srv, inherited.length > 0 ? [...passed, ...config.listeners.filter((l) => l.tls === true)] : config.listeners, log)
  if (config.user !== null) dropPrivileges(config.user, log)
  const first = listens[0]!
  if (persistent) {
    // A SIGUSR1 that came during the start has put the server in drain mode already.
    if (!srv.registry.draining) readiness.set(ReadyState.REPLAYING)
    log.info({ address: first.address, port: first.port, listeners: listens.map((l) => l.label) }, 'bound; connections wait until the store has replayed')
    binlog = await openBinlog(config, config.binlogDir ?? '', log, srv.restoreInto, readiness, leader)
  }
  // What is open now (store files, the HTTP listener) is not a client's to take; the clients that waited hold theirs already.
  const maxConnections = connectionBudget() + srv.waitingCount
  srv.serve(binlog, maxConnections)
  serving = srv
  readiness.set(srv.registry.draining ? ReadyState.DRAINING : ReadyState.SERVING)
  notifier.ready(`serving on ${listens.map((l) => l.label).join(', ')}`)
  log.info(
    {
      address: first.address,
      port: first.port,
      listeners: listens.map((l) => l.label),
      maxJobSize: config.maxJobSize,
      maxConnections: Number.isFinite(maxConnections) ? maxConnections : undefined,
      binlogDir: config.binlogDir,
      store: persistent ? config.store : undefined,
      pgSchema: config.store === 'postgres' ? config.pgSchema : undefined,
      http: http?.label,
      config: config.configFile ?? undefined,
      ...secretSummary(secrets),
      version: VERSION,
    },
    'listening',
  )
}

/**
 * --config FILE: TOML (smol-toml) into the same settings the flags give
 * (config.ts), plus what flags express poorly: several listeners.
 *
 *     max_job_size = 65535          # -z
 *     user = "beanstalkd"           # -u
 *     extensions = false            # --extensions
 *     [[listen]]                    # -l/-p; one table per listener
 *     host = "127.0.0.1"
 *     port = 11300
 *     [[listen]]
 *     path = "/run/tsbeanstalkd/beanstalkd.sock"
 *     [[listen]]
 *     port = 11301
 *     tls = true                    # --tls-port; auth = true/false overrides [auth] listeners
 *     [store]                       # -b DIR and what goes with it
 *     dir = "/var/lib/tsbeanstalkd"
 *     engine = "binlog"             # --store
 *     fsync_ms = 50                 # -f  (fsync_never = true: -F)
 *     binlog_size = 10485760        # -s
 *     [store.postgres]              # engine = "postgres" (no dir)
 *     url = "postgres://..."        # --pg-url
 *     schema = "tsbeanstalkd"       # --pg-schema
 *     session_timeout_ms = 2000     # --pg-session-timeout
 *     [http]
 *     listen = "127.0.0.1:9100"     # --http
 *     metrics_max_tubes = 1000      # --metrics-max-tubes
 *     token_file = "/etc/..."       # --http-token-file
 *     token_metrics = false         # --http-token-metrics
 *     [log]
 *     format = "json"               # --log-format
 *     level = "info"                # -V: "debug", -VV: "trace"
 *     [tls]
 *     cert = "/etc/..."             # --tls-cert (also key: --tls-key, ca: --tls-ca)
 *     [auth]
 *     token_file = "/etc/..."       # --auth-file
 *     listeners = "all"             # --auth-listeners
 *     [limits]
 *     pending_timeout_ms = 10000    # --pending-timeout
 *     max_pending = 1024            # --max-pending
 *     [[tube_policy]]               # --extensions: as `tube-policy` (docs/EXTENSIONS.md)
 *     tube = "emails"
 *     max_retries = 5
 *     dead_letter = "emails-dead"
 *     max_jobs = 100000
 *     fan_out = ["emails-log"]      # a put into tube puts one copy into each of these instead
 *
 * Invariants:
 * - Every key is in SCHEMA or it is an error naming file:line; so is a value
 *   of the wrong TOML type. Range checks are config.ts's, for flags and file
 *   alike, and name the line too (FileLayer.where).
 * - Later settings (TLS, auth, a PostgreSQL store) are new SCHEMA entries: a
 *   section (`tls`), or a nested one (`store.postgres`); nothing else changes.
 */
import { parse, TomlError } from 'smol-toml'
import { UsageError, type FileLayer, type RawFlags } from './config.js'
import type { ListenAddress } from './server/server.js'
import type { TubePolicySpec } from './queue/extensions/policies.js'
import { FAN_OUT_MAX } from './protocol/admin-verbs.js'

type Value = string | number | boolean
interface Setting {
  readonly type: 'string' | 'integer' | 'boolean'
  readonly flag: keyof RawFlags
  /** The flag form of the value (default: String(value)). */
  readonly toFlag?: (v: Value) => string | number | boolean
}

const str = (flag: keyof RawFlags): Setting => ({ type: 'string', flag })
const int = (flag: keyof RawFlags): Setting => ({ type: 'integer', flag })
const bool = (flag: keyof RawFlags): Setting => ({ type: 'boolean', flag, toFlag: (v) => v })
const LEVELS: Record<string, number> = { info: 0, debug: 1, trace: 2 }

/** Sections by dotted path ('' is the top level) and the settings each may hold. */
const SCHEMA: Record<string, Record<string, Setting>> = {
  '': { max_job_size: int('maxJobSize'), user: str('user'), extensions: bool('extensions') },
  store: {
    dir: str('binlogDir'),
    engine: str('store'),
    fsync_ms: int('fsync'),
    fsync_never: bool('fsyncNever'),
    binlog_size: int('binlogSize'),
  },
  'store.postgres': { url: str('pgUrl'), schema: str('pgSchema'), session_timeout_ms: int('pgSessionTimeout') },
  http: {
    listen: str('http'),
    metrics_max_tubes: int('metricsMaxTubes'),
    token_file: str('httpTokenFile'),
    token_metrics: bool('httpTokenMetrics'),
  },
  tls: { cert: str('tlsCert'), key: str('tlsKey'), ca: str('tlsCa') },
  auth: { token_file: str('authFile'), listeners: str('authListeners') },
  limits: { pending_timeout_ms: int('pendingTimeout'), max_pending: int('maxPending') },
  log: {
    format: str('logFormat'),
    level: {
      type: 'string',
      flag: 'verbose',
      toFlag: (v) => {
        const n = LEVELS[String(v)]
        if (n === undefined) throw new Error(`log.level must be one of ${Object.keys(LEVELS).join(', ')}`)
        return n
      },
    },
  },
}
/** Array-of-tables sections: [[listen]], [[tube_policy]]. */
const LISTEN = 'listen'
const TUBE_POLICY = 'tube_policy'

export function parseConfigFile(file: string, text: string): FileLayer {
  let doc: Record<string, unknown>
  try {
    doc = parse(text) as Record<string, unknown>
  } catch (err) {
    if (err instanceof TomlError) throw new UsageError(`${file}:${err.line}: ${err.message.split('\n', 1)[0]}`)
    throw err
  }
  const at = (keyPath: readonly (string | number)[]): string => `${file}:${lineOf(text, keyPath)}`
  const flags: Record<string, unknown> = {}
  const where: Partial<Record<keyof RawFlags, string>> = {}
  let listeners: ListenAddress[] | undefined
  let tubePolicies: TubePolicySpec[] | undefined

  const walk = (table: Record<string, unknown>, section: string, keyPath: (string | number)[]): void => {
    const settings = SCHEMA[section]!
    for (const [key, value] of Object.entries(table)) {
      const path = [...keyPath, key]
      const dotted = section === '' ? key : `${section}.${key}`
      if (section === '' && key === LISTEN) {
        listeners = readListeners(value, path, at)
        continue
      }
      if (section === '' && key === TUBE_POLICY) {
        tubePolicies = readTubePolicies(value, path, at)
        continue
      }
      if (SCHEMA[dotted] !== undefined) {
        if (!isTable(value)) throw new UsageError(`${at(path)}: ${dotted} must be a table ([${dotted}])`)
        walk(value, dotted, path)
        continue
      }
      const s = settings[key]
      if (s === undefined) throw new UsageError(`${at(path)}: unknown setting ${dotted}${hint(section)}`)
      if (!hasType(value, s.type)) throw new UsageError(`${at(path)}: ${dotted} must be ${article(s.type)}`)
      try {
        flags[s.flag] = s.toFlag === undefined ? String(value) : s.toFlag(value as Value)
      } catch (err) {
        throw new UsageError(`${at(path)}: ${(err as Error).message}`)
      }
      where[s.flag] = at(path)
    }
  }
  walk(doc, '', [])
  return {
    path: file,
    flags: flags as RawFlags,
    where,
    ...(listeners === undefined ? {} : { listeners }),
    ...(tubePolicies === undefined ? {} : { tubePolicies, tubePoliciesAt: at([TUBE_POLICY, 0]) }),
  }
}

/** A tube name by the protocol's rules (1-200 bytes of letters, digits, `-+/;.$_()`, no leading '-'). */
const TUBE_NAME = /^[A-Za-z0-9+/;.$_()][A-Za-z0-9\-+/;.$_()]{0,199}$/

function readTubePolicies(value: unknown, path: (string | number)[], at: (p: readonly (string | number)[]) => string): TubePolicySpec[] {
  if (!Array.isArray(value)) throw new UsageError(`${at(path)}: tube_policy must be an array of tables ([[tube_policy]])`)
  const seen = new Set<string>()
  return value.map((entry: unknown, i) => {
    const p = [...path, i]
    if (!isTable(entry)) throw new UsageError(`${at(p)}: each [[tube_policy]] must be a table`)
    for (const k of Object.keys(entry)) {
      if (!['tube', 'max_retries', 'dead_letter', 'max_jobs', 'fan_out'].includes(k)) {
        throw new UsageError(`${at([...p, k])}: unknown setting tube_policy.${k} (tube, max_retries, dead_letter, max_jobs, fan_out)`)
      }
    }
    const name = (k: string): string => {
      const v = entry[k]
      if (typeof v !== 'string' || !TUBE_NAME.test(v)) throw new UsageError(`${at([...p, k])}: tube_policy.${k} must be a tube name (1-200 bytes of A-Z a-z 0-9 -+/;.$_(), not starting with -)`)
      return v
    }
    const count = (k: string): number => {
      const v = entry[k]
      if (v === undefined) return 0
      if (!hasType(v, 'integer') || (v as number) > 4294967295) throw new UsageError(`${at([...p, k])}: tube_policy.${k} must be an integer 0-4294967295`)
      return v as number
    }
    if (entry['tube'] === undefined) throw new UsageError(`${at(p)}: a [[tube_policy]] needs tube = "<name>"`)
    const tube = name('tube')
    if (seen.has(tube)) throw new UsageError(`${at([...p, 'tube'])}: a second [[tube_policy]] for tube ${tube}`)
    seen.add(tube)
    const maxRetries = count('max_retries')
    const maxJobs = count('max_jobs')
    let deadLetter: string | null = null
    if (entry['dead_letter'] !== undefined) {
      deadLetter = name('dead_letter')
      if (deadLetter === tube) throw new UsageError(`${at([...p, 'dead_letter'])}: tube_policy.dead_letter must be another tube than ${tube}`)
      if (maxRetries === 0) throw new UsageError(`${at([...p, 'dead_letter'])}: tube_policy.dead_letter needs max_retries above 0`)
    }
    const fanOut: string[] = []
    const f = entry['fan_out']
    if (f !== undefined) {
      if (!Array.isArray(f) || f.length === 0 || f.length > FAN_OUT_MAX) {
        throw new UsageError(`${at([...p, 'fan_out'])}: tube_policy.fan_out must be an array of 1-${FAN_OUT_MAX} tube names`)
      }
      for (const t of f) {
        if (typeof t !== 'string' || !TUBE_NAME.test(t) || t === tube || fanOut.includes(t)) {
          throw new UsageError(`${at([...p, 'fan_out'])}: tube_policy.fan_out must name distinct tubes other than ${tube}`)
        }
        fanOut.push(t)
      }
    }
    return { tube, maxRetries, deadLetter, maxJobs, fanOut }
  })
}

function readListeners(value: unknown, path: (string | number)[], at: (p: readonly (string | number)[]) => string): ListenAddress[] {
  if (!Array.isArray(value)) throw new UsageError(`${at(path)}: listen must be an array of tables ([[listen]])`)
  return value.map((entry: unknown, i) => {
    const p = [...path, i]
    if (!isTable(entry)) throw new UsageError(`${at(p)}: each [[listen]] must be a table`)
    for (const k of Object.keys(entry)) {
      if (!['host', 'port', 'path', 'tls', 'auth'].includes(k)) {
        throw new UsageError(`${at([...p, k])}: unknown setting listen.${k} (host and port, or path; tls, auth)`)
      }
    }
    const { host, port, path: sock } = entry
    const demands: { tls?: boolean; auth?: boolean } = {}
    for (const k of ['tls', 'auth'] as const) {
      const v = entry[k]
      if (v === undefined) continue
      if (typeof v !== 'boolean') throw new UsageError(`${at([...p, k])}: listen.${k} must be a boolean`)
      demands[k] = v
    }
    if (sock !== undefined) {
      if (typeof sock !== 'string' || sock === '') throw new UsageError(`${at([...p, 'path'])}: listen.path must be a non-empty string`)
      if (host !== undefined || port !== undefined) throw new UsageError(`${at(p)}: a [[listen]] has either path or host and port`)
      return { path: sock, ...demands }
    }
    if (host !== undefined && typeof host !== 'string') throw new UsageError(`${at([...p, 'host'])}: listen.host must be a string`)
    const portNum = port ?? 11300
    if (typeof portNum !== 'number' || !Number.isInteger(portNum) || portNum < 0 || portNum > 65535) {
      throw new UsageError(`${at([...p, 'port'])}: listen.port must be an integer 0-65535`)
    }
    return { host: host ?? '::', port: portNum, ...demands }
  })
}

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date)
}

function hasType(v: unknown, type: Setting['type']): boolean {
  if (type === 'integer') return typeof v === 'number' && Number.isInteger(v) && v >= 0
  return typeof v === type
}

const article = (type: Setting['type']): string => (type === 'integer' ? 'a non-negative integer' : `a ${type}`)

function hint(section: string): string {
  const known = [...Object.keys(SCHEMA[section]!), ...Object.keys(SCHEMA).filter((s) => s !== '' && !s.includes('.') && section === ''), ...(section === '' ? [LISTEN, TUBE_POLICY] : [])]
  return ` (known here: ${known.join(', ')})`
}

/**
 * The 1-based line that defines `keyPath` (table names, array indices and a
 * key), found in the source text: the parser gives no positions. Tracks
 * `[table]` and `[[array]]` headers and matches `key =` (bare, quoted or
 * dotted) under the right one; falls back to the nearest enclosing table's
 * header, then line 1.
 */
export function lineOf(text: string, keyPath: readonly (string | number)[]): number {
  const lines = text.split(/\r?\n/)
  const want = keyPath.map(String).join('\u0000')
  const arrayCounts = new Map<string, number>()
  let table: string[] = []
  let best = { len: 0, line: 1 }
  const consider = (full: string[], line: number): void => {
    const joined = full.join('\u0000')
    if (joined === want) best = { len: Infinity, line }
    else if (full.length > best.len && want.startsWith(`${joined}\u0000`)) best = { len: full.length, line }
  }
  for (let i = 0; i < lines.length && best.len !== Infinity; i++) {
    const l = lines[i]!.trim()
    const header = /^\[(\[)?\s*([^\]]+?)\s*\]\]?/.exec(l)
    if (header !== null) {
      const parts = splitKey(header[2]!)
      if (header[1] !== undefined) {
        const name = parts.join('\u0000')
        const n = arrayCounts.get(name) ?? 0
        arrayCounts.set(name, n + 1)
        table = [...parts, String(n)]
      } else {
        table = parts
      }
      consider(table, i + 1)
      continue
    }
    const kv = /^((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=/.exec(l)
    if (kv !== null) consider([...table, ...splitKey(kv[1]!)], i + 1)
  }
  return best.line
}

function splitKey(key: string): string[] {
  return (key.match(/"[^"]*"|'[^']*'|[^.\s]+/g) ?? []).map((k) => k.replace(/^["']|["']$/g, ''))
}

/**
 * Connections to PostgreSQL (postgres.js): --pg-url in libpq's URL form
 * turned into postgres.js options, and the session settings every
 * connection of the store starts with.
 *
 * Why these settings (README "High availability" has the bounds they give):
 * - idle_in_transaction_session_timeout: a leader paused or cut off in the
 *   middle of a transaction holds the epoch row's lock; PostgreSQL ends that
 *   session so the next leader's takeover is not blocked behind it.
 * - idle_session_timeout (the lock session only): a leader that stops
 *   sending heartbeats (paused, machine gone, network cut) loses its
 *   session, and with it the advisory lock, after this long, whatever TCP
 *   says. The leader fences itself after half of it without an answer.
 * - tcp_user_timeout and TCP keepalives (server side) and keepalive on our
 *   socket (client side) bound how long a dead peer goes unnoticed while
 *   data is in flight; they do nothing on a Unix socket, where none is needed.
 *
 * Invariants: int8 columns come back as numbers (ids, times and counters
 * stay below 2^53); a connection is never closed by the library on a timer
 * of its own (max_lifetime, idle_timeout off); the URL's password is never
 * logged (names.ts `describePgUrl`).
 */
import postgres from 'postgres'

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export type Sql = postgres.Sql<{}>

const URL_RE = /^postgres(?:ql)?:\/\/(?:([^:@/?]*)(?::([^@/?]*))?@)?([^/?]*)(?:\/([^?]*))?(?:\?(.*))?$/

/**
 * libpq's URL: postgres://user:pass@host:port/db?sslmode=...&host=/socket/dir;
 * other query parameters become session settings. Throws on what is not one.
 */
export function pgOptions(url: string): postgres.Options<Record<string, never>> {
  const m = URL_RE.exec(url)
  if (m === null) throw new Error('not a postgres:// URL (postgres://user:password@host:port/database?sslmode=...)')
  const dec = (s: string | undefined): string | undefined => (s === undefined || s === '' ? undefined : decodeURIComponent(s))
  const query = new URLSearchParams(m[5] ?? '')
  let hostPort = dec(m[3]) ?? ''
  let port: number | undefined
  const hp = /^(\[[^\]]+\]|[^:]*)(?::(\d+))?$/.exec(hostPort)
  if (hp !== null && !hostPort.startsWith('/')) {
    hostPort = hp[1]!.replace(/^\[|\]$/g, '')
    if (hp[2] !== undefined) port = Number(hp[2])
  }
  const socketDir = query.get('host')
  const host = socketDir ?? (hostPort === '' ? undefined : hostPort)
  const qport = query.get('port')
  if (qport !== null) port = Number(qport)
  const o: postgres.Options<Record<string, never>> & { connection: Record<string, string> } = { connection: {} }
  if (host !== undefined) o.host = host
  if (port !== undefined) o.port = port
  const user = dec(m[1])
  const pass = dec(m[2])
  const db = dec(m[4])
  if (user !== undefined) o.user = user
  if (pass !== undefined) o.pass = pass
  if (db !== undefined) o.database = db
  for (const [k, v] of query) {
    if (k === 'host' || k === 'port') continue
    if (k === 'sslmode') o.ssl = v === 'disable' ? false : (v as 'require' | 'prefer' | 'verify-full' | 'allow')
    else if (k === 'connect_timeout') o.connect_timeout = Number(v)
    else if (k === 'application_name' || k === 'options' || /^[a-z_.]+$/.test(k)) o.connection[k] = v
  }
  return o
}

export interface SessionOptions {
  readonly url: string
  /** The namespace: search_path is set to it. */
  readonly schema: string
  /** The bound of the session timeouts, ms. */
  readonly sessionTimeoutMs: number
  /** Extra session settings (synchronous_commit, idle_session_timeout). */
  readonly settings?: Record<string, string>
  /** A connection of this pool closed (the lock session: fence at once). */
  readonly onclose?: () => void
}

/** A one-connection postgres.js pool with the store's session settings. */
export function connect(o: SessionOptions): Sql {
  const base = pgOptions(o.url)
  const t = String(Math.max(1, o.sessionTimeoutMs))
  const keepaliveCount = String(Math.max(1, Math.floor(o.sessionTimeoutMs / 1000)))
  const options = {
    ...base,
    max: 1,
    // postgres.js closes a connection after a random 30-60 min by default: for the lock session
    // that would be a lost leadership (a fence) every half hour. Ours live as long as the process.
    max_lifetime: null,
    idle_timeout: null,
    connect_timeout: base.connect_timeout ?? 5,
    keep_alive: 1,
    onnotice: () => undefined,
    ...(o.onclose === undefined ? {} : { onclose: o.onclose }),
    types: {
      int8: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) },
    },
    connection: {
      application_name: 'tsbeanstalkd',
      ...base.connection,
      search_path: o.schema,
      idle_in_transaction_session_timeout: t,
      tcp_user_timeout: t,
      tcp_keepalives_idle: '1',
      tcp_keepalives_interval: '1',
      tcp_keepalives_count: keepaliveCount,
      ...o.settings,
    },
  }
  // postgres.js types the session settings it knows as numbers; libpq's text form is what the server reads.
  return postgres(options as unknown as postgres.Options<{}>) as unknown as Sql
}

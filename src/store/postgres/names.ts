/**
 * The PostgreSQL store's names, without the client library (config.ts and
 * --check-config use them): the namespace rule and default, the advisory
 * lock's keys, and a URL fit for a log line.
 */

export const DEFAULT_SCHEMA = 'tsbeanstalkd'
/** --pg-session-timeout: the lock session's idle_session_timeout, ms (leader.ts). */
export const DEFAULT_SESSION_TIMEOUT_MS = 2000
/** The advisory lock's first key: "TSBQ", as the SQLite store's application_id. */
export const LOCK_CLASS = 0x54534251

/** A name used unquoted in SQL: lower case, digits, underscore, as PostgreSQL folds identifiers. */
export function checkSchemaName(name: string): string | null {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) return `invalid --pg-schema ${JSON.stringify(name)}: lower-case letters, digits and _ (not first a digit)`
  if (name.length > 63) return `invalid --pg-schema ${JSON.stringify(name)}: at most 63 characters`
  if (name.startsWith('pg_') || name === 'information_schema' || name === 'public') return `invalid --pg-schema ${name}: a name PostgreSQL or its users own`
  return null
}

/** The advisory lock's second key: FNV-1a of the schema name, 31 bits (pg_locks shows it as objid). */
export function lockKey(schema: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < schema.length; i++) {
    h ^= schema.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h & 0x7fffffff
}

/** The URL with its password masked, for logs and --check-config. */
export function describePgUrl(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:@/?]*:)[^@/?]*@/, '$1***@')
}

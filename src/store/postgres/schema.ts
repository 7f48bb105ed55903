/**
 * The PostgreSQL store's schema (docs/postgres-schema.md is its prose
 * version; keep the two in step): the SQLite store's tables and fields
 * (sqlite/schema.ts) in a PostgreSQL schema of their own, the namespace
 * (--pg-schema), plus the leader epoch.
 *
 * Invariants:
 * - A namespace holds `meta` (schema_version = SCHEMA_VERSION, next_id,
 *   epoch) and `jobs`, one row per live job, body without its CRLF. A newer
 *   schema_version, or tables that are not ours, are refused (PgRefusedError)
 *   before anything is written.
 * - Only the holder of the namespace's advisory lock (leader.ts) writes,
 *   and every write transaction first locks the epoch row and checks it is
 *   still the one its takeover set (postgres-store.ts), so a takeover
 *   (which raises the epoch under the same row lock) orders every earlier
 *   leader's commit before it and fails every later one.
 */
import { PgRefusedError } from './errors.js'
import type { Sql } from './connect.js'

export const SCHEMA_VERSION = 1
export { DEFAULT_SCHEMA, LOCK_CLASS, checkSchemaName, lockKey } from './names.js'
import { checkSchemaName } from './names.js'

const ddl = (s: string): string => `
CREATE TABLE ${s}.meta (
  key   text PRIMARY KEY,     -- 'schema_version', 'next_id', 'epoch'
  value bigint NOT NULL
);
CREATE TABLE ${s}.jobs (
  id         bigint PRIMARY KEY,  -- the job id; never reused (see meta next_id)
  tube       text    NOT NULL,
  state      text    NOT NULL CHECK (state IN ('ready', 'reserved', 'delayed', 'buried')),
  pri        bigint  NOT NULL,    -- 0 is most urgent (0 .. 2^32-1)
  delay_ms   bigint  NOT NULL,    -- the last delay asked for (put or release)
  ttr_ms     bigint  NOT NULL,
  created_at bigint  NOT NULL,    -- wall-clock ms since the epoch
  due_at     bigint,              -- delayed: when it becomes ready (wall-clock ms); else NULL
  bury_seq   bigint,              -- buried: bury order, larger = buried later; else NULL
  reserves   bigint  NOT NULL,
  timeouts   bigint  NOT NULL,
  releases   bigint  NOT NULL,
  buries     bigint  NOT NULL,
  kicks      bigint  NOT NULL,
  body       bytea   NOT NULL     -- the job body, without the trailing CRLF
);
INSERT INTO ${s}.meta (key, value) VALUES ('schema_version', ${SCHEMA_VERSION}), ('next_id', 1), ('epoch', 0);
COMMENT ON SCHEMA ${s} IS 'tsbeanstalkd job store, schema version ${SCHEMA_VERSION} (docs/postgres-schema.md)';`

export interface TakeOver {
  /** This leader's epoch: every write transaction checks it. */
  readonly epoch: number
  readonly nextId: number
  /** The namespace was created now. */
  readonly created: boolean
}

/**
 * The new leader's first transaction (the advisory lock held): creates the
 * namespace when it has no tables, checks it otherwise, and raises the
 * epoch. Committed with synchronous_commit on whatever -f says: the epoch
 * must survive a crash, or a stale leader could match it again.
 */
export async function takeOver(sql: Sql, schema: string): Promise<TakeOver> {
  // The name goes into DDL unquoted: only names the CLI would accept.
  const bad = checkSchemaName(schema)
  if (bad !== null) throw new PgRefusedError(schema, bad)
  return sql.begin(async (tx) => {
    await tx`SET LOCAL synchronous_commit = on`
    const tables = (await tx`SELECT tablename FROM pg_tables WHERE schemaname = ${schema}`).map((r) => String(r['tablename']))
    let created = false
    if (tables.length === 0) {
      await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
      await tx.unsafe(ddl(schema))
      created = true
    } else if (!tables.includes('meta') || !tables.includes('jobs')) {
      throw new PgRefusedError(schema, `it holds tables that are not a tsbeanstalkd store (${tables.join(', ')}); choose another --pg-schema`)
    }
    const meta = new Map<string, number>()
    for (const r of await tx`SELECT key, value FROM meta`) meta.set(String(r['key']), Number(r['value']))
    const version = meta.get('schema_version')
    if (version === undefined || !meta.has('next_id') || !meta.has('epoch')) {
      throw new PgRefusedError(schema, 'its meta table lacks schema_version, next_id or epoch: not a tsbeanstalkd store')
    }
    if (version > SCHEMA_VERSION) {
      throw new PgRefusedError(schema, `schema version ${version}; this build reads version ${SCHEMA_VERSION}: run the newer tsbeanstalkd that wrote it`)
    }
    const [row] = await tx`UPDATE meta SET value = value + 1 WHERE key = 'epoch' RETURNING value`
    return { epoch: Number(row!['value']), nextId: meta.get('next_id')!, created }
  }) as Promise<TakeOver>
}

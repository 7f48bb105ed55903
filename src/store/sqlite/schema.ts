/**
 * The SQLite store's schema (docs/sqlite-schema.md is its prose version; keep
 * the two in step), and opening a store file: create it, or check that it is
 * one of ours, of a version this build reads, and undamaged.
 *
 * Invariants:
 * - A store file has application_id APPLICATION_ID, a `meta` row
 *   schema_version = SCHEMA_VERSION and one next_id, and is in WAL mode.
 *   A newer schema_version is refused (StoreVersionError) before anything is
 *   written to the file.
 * - `jobs` has one row per live job; a deleted job has no row. Bodies are
 *   stored without their trailing CRLF (what the client sent).
 * - Times are wall-clock ms since the epoch; due_at is set only for delayed
 *   jobs and bury_seq only for buried ones (larger = buried later).
 * - --extensions: `job_tags` has a row for each live tagged job (none for
 *   others), `idp_tombstones` one per idempotency key whose cooldown may not
 *   have run out (expired rows are purged as new ones come). The two tables
 *   are made at open when missing; a store without tags never has rows in them.
 *   `tube_policies` has one row per tube name with a policy (tube-policy).
 */
import Database from 'better-sqlite3'
import { StoreCorruptError, StoreFullError, StoreIoError, StoreLockedError, StoreVersionError, isBusy, isCorrupt, isFull } from '../errors.js'
import type { StoredJob } from '../store.js'
import { LocalPages, PageDecoder, type JobRow } from './job-pages.js'

export type Db = Database.Database

export const SCHEMA_VERSION = 1
/** "TSBQ": marks the file as a tsbeanstalkd store (`PRAGMA application_id`). */
export const APPLICATION_ID = 0x54534251
/** The largest body (CRLF not counted) a row takes; the CLI clamps -z to it. */
export { MAX_JOB_SIZE_SQLITE as MAX_BODY } from '../store.js'

/** State names as stored, indexed by the queue's JobState number (0 is never stored). */
export const STATE_NAMES = ['', 'ready', 'reserved', 'buried', 'delayed'] as const
export type { StateName } from '../store.js'

const DDL = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,     -- 'schema_version', 'next_id'
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE jobs (
  id         INTEGER PRIMARY KEY,  -- the job id; never reused (see meta next_id)
  tube       TEXT    NOT NULL,
  state      TEXT    NOT NULL CHECK (state IN ('ready', 'reserved', 'delayed', 'buried')),
  pri        INTEGER NOT NULL,     -- 0 is most urgent
  delay_ms   INTEGER NOT NULL,     -- the last delay asked for (put or release)
  ttr_ms     INTEGER NOT NULL,
  created_at INTEGER NOT NULL,     -- wall-clock ms since the epoch
  due_at     INTEGER,              -- delayed: when it becomes ready (wall-clock ms); else NULL
  bury_seq   INTEGER,              -- buried: bury order, larger = buried later; else NULL
  reserves   INTEGER NOT NULL,
  timeouts   INTEGER NOT NULL,
  releases   INTEGER NOT NULL,
  buries     INTEGER NOT NULL,
  kicks      INTEGER NOT NULL,
  body       BLOB    NOT NULL      -- the job body, without the trailing CRLF
);`

/** The extensions' tables (made at open when missing: older files of schema version 1 lack them). */
export const EXTENSION_DDL = `
CREATE TABLE IF NOT EXISTS job_tags (
  id        INTEGER PRIMARY KEY,  -- the job's id (a row of jobs)
  idp_key   TEXT,                 -- idp:<key>
  idp_ttl   INTEGER NOT NULL,     -- its cooldown after the delete, seconds
  grp       TEXT,                 -- grp:<name>
  aft       TEXT,                 -- aft:<name>, as put
  aft_done  INTEGER NOT NULL,     -- 1 once the job was ready (its group complete): never held again
  con_key   TEXT,                 -- con:<key>
  con_limit INTEGER NOT NULL      -- con:<key>:<n>
);
CREATE TABLE IF NOT EXISTS idp_tombstones (
  tube       TEXT    NOT NULL,
  key        TEXT    NOT NULL,
  id         INTEGER NOT NULL,    -- the deleted job, which the key answers with
  ttl        INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,    -- wall-clock ms
  PRIMARY KEY (tube, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tube_policies (
  tube        TEXT    PRIMARY KEY,  -- the tube name (the tube need not exist)
  max_retries INTEGER NOT NULL,     -- 0: off
  dead_letter TEXT,                 -- NULL: bury instead
  max_jobs    INTEGER NOT NULL,     -- 0: off
  fan_out     TEXT                  -- the fan-out targets, comma-separated (',' is not a name byte); NULL: none
) WITHOUT ROWID;`

export const INSERT_TAGS =
  'INSERT OR REPLACE INTO job_tags (id, idp_key, idp_ttl, grp, aft, aft_done, con_key, con_limit) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'
export const AFTER_DONE = 'UPDATE job_tags SET aft_done = 1 WHERE id = ? AND aft_done = 0'
export const DELETE_TAGS = 'DELETE FROM job_tags WHERE id = ?'
export const INSERT_TOMBSTONE = 'INSERT OR REPLACE INTO idp_tombstones (tube, key, id, ttl, expires_at) VALUES (?, ?, ?, ?, ?)'
export const PURGE_TOMBSTONES = 'DELETE FROM idp_tombstones WHERE expires_at <= ?'
export const SET_POLICY = 'INSERT OR REPLACE INTO tube_policies (tube, max_retries, dead_letter, max_jobs, fan_out) VALUES (?, ?, ?, ?, ?)'
export const DELETE_POLICY = 'DELETE FROM tube_policies WHERE tube = ?'

export const INSERT_JOB =
  'INSERT INTO jobs (id, tube, state, pri, delay_ms, ttr_ms, created_at, due_at, bury_seq, ' +
  'reserves, timeouts, releases, buries, kicks, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'
export const UPDATE_JOB =
  'UPDATE jobs SET state = ?, pri = ?, delay_ms = ?, due_at = ?, bury_seq = ?, ' +
  'reserves = ?, timeouts = ?, releases = ?, buries = ?, kicks = ? WHERE id = ?'
export const DELETE_JOB = 'DELETE FROM jobs WHERE id = ?'
/** A flush slice's deletes, one statement: the ids as a JSON array. */
export const DELETE_JOBS = 'DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))'
export const DELETE_TAGS_MANY = 'DELETE FROM job_tags WHERE id IN (SELECT value FROM json_each(?))'
export const SET_NEXT_ID = "UPDATE meta SET value = ? WHERE key = 'next_id'"

export type { StoredJob } from '../store.js'

export interface OpenedDb {
  readonly db: Db
  /** The file was new (or empty) and the schema was just created. */
  readonly created: boolean
}

/**
 * Opens (or creates) a store file and checks it. Every failure is one of the
 * store's errors: damaged or foreign file (StoreCorruptError), newer schema
 * (StoreVersionError), another connection's write lock (StoreLockedError),
 * no space to create it (StoreFullError), anything else (StoreIoError).
 */
export function openDb(file: string, opts: { readonly timeoutMs: number; readonly check: boolean }): OpenedDb {
  let db: Db | null = null
  try {
    db = new Database(file, { timeout: opts.timeoutMs })
    const appId = db.pragma('application_id', { simple: true }) as number
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[]
    if (appId === 0 && tables.length === 0) {
      create(db)
      return { db, created: true }
    }
    if (appId !== APPLICATION_ID) {
      throw new StoreCorruptError(file, `not a tsbeanstalkd store (application_id ${appId}, tables ${tables.join(', ') || 'none'})`)
    }
    if (!tables.includes('meta') || !tables.includes('jobs')) throw new StoreCorruptError(file, 'the meta or jobs table is missing')
    const version = metaValue(db, 'schema_version')
    if (version === undefined || version < 1) throw new StoreCorruptError(file, 'meta has no valid schema_version')
    if (version > SCHEMA_VERSION) throw new StoreVersionError(file, version, SCHEMA_VERSION)
    if (opts.check) {
      const problems = db.pragma('quick_check(5)', { simple: false }) as { quick_check: string }[]
      if (problems.length !== 1 || problems[0]?.quick_check !== 'ok') {
        throw new StoreCorruptError(file, `quick_check: ${problems.map((p) => p.quick_check).join('; ')}`)
      }
    }
    const mode = db.pragma('journal_mode = WAL', { simple: true })
    if (mode !== 'wal') throw new StoreIoError(file, `cannot switch to WAL journal mode (got ${String(mode)})`)
    return { db, created: false }
  } catch (err) {
    try {
      db?.close()
    } catch {
      // Closing a half-opened handle; the first error is the one to report.
    }
    throw storeError(file, err, 'cannot open the SQLite store')
  }
}

function create(db: Db): void {
  // Both must come before the first table: auto_vacuum cannot be turned on later.
  db.pragma('auto_vacuum = INCREMENTAL')
  const mode = db.pragma('journal_mode = WAL', { simple: true })
  if (mode !== 'wal') throw new Error(`cannot switch to WAL journal mode (got ${String(mode)})`)
  db.exec('BEGIN IMMEDIATE')
  try {
    db.exec(DDL)
    db.prepare('INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)').run('schema_version', SCHEMA_VERSION, 'next_id', 1)
    db.pragma(`application_id = ${APPLICATION_ID}`)
    db.exec('COMMIT')
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK')
    throw err
  }
}

export function metaValue(db: Db, key: string): number | undefined {
  const v = db.prepare('SELECT value FROM meta WHERE key = ?').pluck().get(key)
  return typeof v === 'number' ? v : undefined
}

/** Maps whatever an open or read threw to one of the store's errors (theirs pass through). */
export function storeError(file: string, err: unknown, doing: string): Error {
  if (
    err instanceof StoreCorruptError ||
    err instanceof StoreVersionError ||
    err instanceof StoreIoError ||
    err instanceof StoreFullError ||
    err instanceof StoreLockedError
  ) {
    return err
  }
  const msg = err instanceof Error ? err.message : String(err)
  if (isCorrupt(err)) return new StoreCorruptError(file, `SQLite reports damage: ${msg}`, { cause: err })
  if (isBusy(err)) return new StoreLockedError(file, { cause: err })
  if (isFull(err)) return new StoreFullError(file, msg, { cause: err })
  return new StoreIoError(file, `${doing}: ${msg}`, { cause: err })
}

const CRLF = 0x0a0d // "\r\n" as a little-endian u16

/** Every job row in id order, bodies with their CRLF (a conversion reads a whole store this way). */
export function readJobs(db: Db, file: string): StoredJob[] {
  const pages = new LocalPages(db)
  const decoder = new PageDecoder(file)
  const out: StoredJob[] = []
  const keep = (r: JobRow): void => {
    const len = r.bodyEnd - r.bodyStart
    const body = Buffer.allocUnsafeSlow(len + 2)
    r.body.copy(body, 0, r.bodyStart, r.bodyEnd)
    body.writeUInt16LE(CRLF, len)
    const { bodyStart: _s, bodyEnd: _e, ...fields } = r
    out.push({ ...fields, body })
  }
  for (let page = pages.next(); page !== null; page = pages.next()) decoder.decode(page, keep)
  return out
}

/** Writes `jobs` and next_id into a store that has none of them yet, in one transaction. */
export function writeJobs(db: Db, jobs: readonly StoredJob[], nextId: number): void {
  const insert = db.prepare(INSERT_JOB)
  db.transaction(() => {
    for (const j of jobs) {
      insert.run(
        j.id,
        j.tube,
        j.state,
        j.pri,
        j.delayMs,
        j.ttrMs,
        j.createdAtWall,
        j.state === 'delayed' ? j.readyAtWall : null,
        j.state === 'buried' ? j.buryKey : null,
        j.reserves,
        j.timeouts,
        j.releases,
        j.buries,
        j.kicks,
        j.body.subarray(0, j.body.length - 2),
      )
    }
    db.prepare(SET_NEXT_ID).run(nextId)
  })()
}

/**
 * The SQLite store's environment errors, in the binlog's style: a stable
 * `code` the CLI maps to an exit status (the binlog's numbers where the
 * meaning is the same), the file, and the SQLite or system error as `cause`.
 * The directory lock is the binlog's (BinlogLockedError, TSB_ERR_BINLOG_LOCKED).
 * Errors both engines meet (the lock, raw I/O, no space) are at the end.
 */

/** The database file is damaged, or is not a tsbeanstalkd store. */
export class StoreCorruptError extends Error {
  readonly code = 'TSB_ERR_STORE_CORRUPT'
  readonly file: string
  constructor(file: string, detail: string, options?: ErrorOptions) {
    super(
      `${file}: ${detail}. The server will not start on a damaged store (starting anyway could silently drop ` +
        `jobs). Keep a copy of the directory; then restore the file from a backup, or salvage what SQLite can ` +
        `read: sqlite3 '${file}' .recover | sqlite3 /tmp/recovered.sqlite, check it, and put it in its place.`,
      options,
    )
    this.name = 'StoreCorruptError'
    this.file = file
  }
}

/** The store was written by a newer tsbeanstalkd (a schema version this build does not know). */
export class StoreVersionError extends Error {
  readonly code = 'TSB_ERR_STORE_VERSION'
  readonly file: string
  readonly found: number
  readonly supported: number
  constructor(file: string, found: number, supported: number) {
    super(
      `${file}: SQLite store schema version ${found}; this build reads version ${supported}. It was written by a ` +
        `newer tsbeanstalkd: run that version on it (or convert it to a binlog with that version).`,
    )
    this.name = 'StoreVersionError'
    this.file = file
    this.found = found
    this.supported = supported
  }
}

/** Another connection holds the database's write lock at start (an operator's write transaction?). */
export class StoreLockedError extends Error {
  readonly code = 'TSB_ERR_STORE_LOCKED'
  readonly file: string
  constructor(file: string, options?: ErrorOptions) {
    super(
      `${file}: the database is locked by another connection (an open write transaction in a sqlite3 shell?); ` +
        `end it, or open the file read-only (sqlite3 -readonly), and start again`,
      options,
    )
    this.name = 'StoreLockedError'
    this.file = file
  }
}

/** Not even an empty store fits on the disk. */
export class StoreFullError extends Error {
  readonly code = 'TSB_ERR_STORE_FULL'
  readonly file: string
  constructor(file: string, detail: string, options?: ErrorOptions) {
    super(`${file}: no space for the SQLite store: ${detail}`, options)
    this.name = 'StoreFullError'
    this.file = file
  }
}

/**
 * A failed fsync, an I/O error, or damage found while running. Fatal, as
 * the binlog's write and fsync errors are: stop, and let a restart replay
 * what is really on disk.
 */
export class StoreIoError extends Error {
  readonly code = 'TSB_ERR_STORE_IO'
  readonly file: string
  constructor(file: string, detail: string, options?: ErrorOptions) {
    super(`${file}: ${detail}`, options)
    this.name = 'StoreIoError'
    this.file = file
  }
}

/** DIR holds the other engine's data (or a half-done conversion): starting would hide every job in it. */
export class StoreMismatchError extends Error {
  readonly code = 'TSB_ERR_STORE_MISMATCH'
  readonly dir: string
  constructor(dir: string, detail: string) {
    super(`${dir}: ${detail}`)
    this.name = 'StoreMismatchError'
    this.dir = dir
  }
}

/** A store with extension tags (--extensions) asked of a tool that does not carry them (convert, export). */
export class StoreTagsError extends Error {
  readonly code = 'TSB_ERR_STORE_TAGS'
  readonly file: string
  constructor(file: string) {
    super(
      `${file}: holds jobs with extension tags (idp:, grp:, aft:, con:), idempotency cooldowns or tube policies, which this tool does ` +
        `not carry over; nothing was changed. Delete or finish those jobs (clear the policies: tube-policy <tube> max-retries 0, max-jobs 0) with the server (--extensions) first.`,
    )
    this.name = 'StoreTagsError'
    this.file = file
  }
}

/** SQLite's result code name of a better-sqlite3 error ('SQLITE_FULL', ...), or ''. */
export function sqliteCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : ''
}

export const isFull = (err: unknown): boolean => sqliteCode(err) === 'SQLITE_FULL'
export const isBusy = (err: unknown): boolean => /^SQLITE_(BUSY|LOCKED)/.test(sqliteCode(err))
export const isCorrupt = (err: unknown): boolean => /^SQLITE_(CORRUPT|NOTADB)/.test(sqliteCode(err))

/** Another live process holds the directory's lock. */
export class BinlogLockedError extends Error {
  readonly code = 'TSB_ERR_BINLOG_LOCKED'
  readonly dir: string
  /** The holder's pid as it wrote it into DIR/lock, when readable. */
  readonly holderPid: number | null
  constructor(dir: string, holderPid: number | null, hint: string | null = null, options?: ErrorOptions) {
    const who = holderPid === null ? 'another process' : `process ${holderPid}`
    super(
      `${dir}: binlog directory is in use by ${who}; stop it first, or give this server another -b directory` +
        (hint === null ? '' : ` (${hint})`),
      options,
    )
    this.name = 'BinlogLockedError'
    this.dir = dir
    this.holderPid = holderPid
  }
}

/** Any other I/O failure (EIO, EACCES, EROFS, ...): fatal, like fsync. */
export class BinlogIoError extends Error {
  readonly code = 'TSB_ERR_BINLOG_IO'
  readonly file: string
  constructor(file: string, detail: string, options?: ErrorOptions) {
    super(`${file}: ${detail}`, options)
    this.name = 'BinlogIoError'
    this.file = file
  }
}

const NO_SPACE = new Set(['ENOSPC', 'EDQUOT', 'EFBIG'])

/** True for the errno codes that mean "no room", which the binlog survives. */
export function isNoSpace(err: unknown): boolean {
  return err instanceof Error && NO_SPACE.has((err as NodeJS.ErrnoException).code ?? '')
}

/**
 * A file in DIR that tsbeanstalkd did not write (or cannot prove it wrote)
 * stands where it would read or write: the start stops, and nothing in DIR
 * is changed. The message names the file, says what it looks like, and what
 * to do.
 */
export class ForeignFileError extends Error {
  readonly code = 'TSB_ERR_STORE_FOREIGN'
  readonly file: string
  constructor(file: string, looksLike: string, todo: string) {
    super(`${file}: ${looksLike}; tsbeanstalkd did not write it and will not change it. ${todo} The directory was left as it was.`)
    this.name = 'ForeignFileError'
    this.file = file
  }
}

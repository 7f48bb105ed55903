/**
 * The binlog's environment errors: each has a stable `code` the CLI maps to
 * an exit status, the context an operator needs (file, offset, directory),
 * and the underlying system error as `cause`. Client mistakes and bugs are
 * not here (STYLE.md, Errors). The lock and I/O errors both engines meet
 * live in ../errors.ts and are re-exported here.
 */
export { BinlogIoError, BinlogLockedError, isNoSpace } from '../errors.js'

/** A record or file header that is damaged somewhere other than a torn tail. */
export class BinlogCorruptError extends Error {
  readonly code = 'TSB_ERR_BINLOG_CORRUPT'
  readonly file: string
  readonly offset: number
  constructor(file: string, offset: number, detail: string, options?: ErrorOptions) {
    super(
      `${file}@${offset}: ${detail}. The binlog is damaged before its end, so the server will not start on it ` +
        `(starting anyway would silently drop jobs). Keep a copy of the directory; then either restore it from a ` +
        `backup, or accept losing the records from this offset to the end of this file: ` +
        `truncate -s ${offset} '${file}' and start again.`,
      options,
    )
    this.name = 'BinlogCorruptError'
    this.file = file
    this.offset = offset
  }
}

/**
 * fsync failed. Fatal: after a failed fsync Linux may drop the dirty pages
 * and report success on the next try, so the only safe course is to stop
 * and let replay rebuild the state from what is really on disk.
 */
export class BinlogFsyncError extends Error {
  readonly code = 'TSB_ERR_BINLOG_FSYNC'
  readonly file: string
  constructor(file: string, options?: ErrorOptions) {
    super(`${file}: fsync failed; records written since the last successful fsync may not be on disk`, options)
    this.name = 'BinlogFsyncError'
    this.file = file
  }
}

/**
 * The disk is full (ENOSPC, EDQUOT, EFBIG). Not fatal: the binlog keeps its
 * records queued, refuses new puts and retries; logged, and thrown by `open`
 * only when not even the first file can be created.
 */
export class BinlogFullError extends Error {
  readonly code = 'TSB_ERR_BINLOG_FULL'
  readonly dir: string
  constructor(dir: string, detail: string, options?: ErrorOptions) {
    super(`${dir}: no space for the binlog: ${detail}`, options)
    this.name = 'BinlogFullError'
    this.dir = dir
  }
}

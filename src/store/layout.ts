/**
 * What lives in a `-b DIR`, per engine, and the check made before a server
 * opens it: a directory holding the other engine's data (or a conversion
 * that was interrupted) is refused, because starting on it would show an
 * empty queue while every job sits in files the server ignores.
 */
import fs from 'node:fs'
import path from 'node:path'
import { StoreMismatchError } from './errors.js'
import type { Engine } from './store.js'

export const SQLITE_FILE = 'tsbeanstalkd.sqlite'
/** A conversion writes the new engine's files here before moving them into DIR. */
export const CONVERT_DIR = 'convert.tmp'
const BINLOG_FILE = /^binlog\.[1-9]\d*$/

export const sqlitePath = (dir: string): string => path.join(dir, SQLITE_FILE)

export interface Layout {
  /** `binlog.<N>` files. */
  readonly binlog: string[]
  /** The database and any WAL or shared-memory file beside it. */
  readonly sqlite: string[]
  readonly converting: boolean
}

export function layoutOf(dir: string): Layout {
  let names: string[]
  try {
    names = fs.readdirSync(dir)
  } catch {
    names = []
  }
  return {
    binlog: names.filter((n) => BINLOG_FILE.test(n)),
    sqlite: names.filter((n) => n === SQLITE_FILE || n === `${SQLITE_FILE}-wal` || n === `${SQLITE_FILE}-shm`),
    converting: names.includes(CONVERT_DIR),
  }
}

/** A file either engine writes into a staging directory (convert, import): what an unfinished attempt may leave. */
export const isStoreFileName = (name: string): boolean => BINLOG_FILE.test(name) || name.startsWith(SQLITE_FILE)

/** True when DIR holds data of this engine (a SQLite -wal or -shm alone does not count). */
export function holds(l: Layout, engine: Engine): boolean {
  return engine === 'binlog' ? l.binlog.length > 0 : l.sqlite.includes(SQLITE_FILE)
}

/** Throws StoreMismatchError unless DIR is empty or holds only `engine`'s data. */
export function checkLayout(dir: string, engine: Engine): void {
  const l = layoutOf(dir)
  if (l.converting) {
    throw new StoreMismatchError(
      dir,
      `a conversion was interrupted (${CONVERT_DIR} exists); run the same 'tsbeanstalkd convert' again to finish it`,
    )
  }
  const other: Engine = engine === 'binlog' ? 'sqlite' : 'binlog'
  if (!holds(l, other)) return
  const what = other === 'sqlite' ? `a SQLite store (${SQLITE_FILE})` : `a binlog (${l.binlog.length} binlog.N files)`
  throw new StoreMismatchError(
    dir,
    holds(l, engine)
      ? `holds both a binlog and a SQLite store; move the one that is not current out of the directory`
      : `holds ${what}, not a ${engine === 'sqlite' ? 'SQLite store' : 'binlog'}; start with --store ${other}, ` +
          `or convert it: tsbeanstalkd convert --from ${other} --to ${engine} ${dir}`,
  )
}

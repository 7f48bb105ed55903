/**
 * Settings of one server process, with the reference's defaults and limits
 * (ref:util.c optparse; REFERENCE.md 2.11).
 */
import {
  DEFAULT_BINLOG_SIZE,
  DEFAULT_MAX_JOB_SIZE,
  DEFAULT_PORT,
  MAX_JOB_SIZE_LIMIT,
} from './protocol/constants.js'
import type { ListenAddress } from './server/server.js'
import { ENGINES, MAX_JOB_SIZE_SQLITE, type Engine } from './store/store.js'

export interface Config {
  readonly listen: ListenAddress
  readonly maxJobSize: number
  readonly binlogDir: string | null
  /** --store: what keeps the jobs in binlogDir. */
  readonly store: Engine
  /** fsync at most every this many ms; 0 = before every reply. */
  readonly fsyncMs: number
  readonly fsyncNever: boolean
  readonly binlogSize: number
  readonly user: string | null
  /** How many times -V was given. */
  readonly verbosity: number
}

/** A bad flag value; the CLI prints it and exits with the reference's usage code. */
export class UsageError extends Error {
  readonly code = 'TSB_ERR_USAGE'
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
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
}

/** sscanf("%zu")-like: leading digits are the value; none is an error. */
function parseSize(flag: string, value: string): number {
  const m = /^\s*\+?(\d+)/.exec(value)
  if (m === null) throw new UsageError(`invalid size for ${flag}: ${value}`)
  return Number(m[1])
}

/** Parses -l, with `unix:PATH` for a Unix socket; no -l listens on every address. */
function listenAddress(listen: string | undefined, port: number): ListenAddress {
  if (listen?.startsWith('unix:')) return { path: listen.slice(5) }
  return { host: listen ?? '::', port }
}

export function toConfig(f: RawFlags, warn: (msg: string) => void): Config {
  const port = f.port === undefined ? DEFAULT_PORT : Number(f.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`invalid port: ${f.port}`)
  let maxJobSize = f.maxJobSize === undefined ? DEFAULT_MAX_JOB_SIZE : parseSize('-z', f.maxJobSize)
  if (maxJobSize > MAX_JOB_SIZE_LIMIT) {
    warn(`maximum job size was set to ${maxJobSize}; clamped to ${MAX_JOB_SIZE_LIMIT}`)
    maxJobSize = MAX_JOB_SIZE_LIMIT
  }
  const store = (f.store ?? 'binlog') as Engine
  if (!ENGINES.includes(store)) throw new UsageError(`invalid --store: ${f.store} (binlog or sqlite)`)
  if (f.store !== undefined && f.binlogDir === undefined) warn('--store has no effect without -b')
  if (store === 'sqlite' && f.binlogDir !== undefined && maxJobSize > MAX_JOB_SIZE_SQLITE) {
    warn(`maximum job size was set to ${maxJobSize}; the SQLite store holds at most ${MAX_JOB_SIZE_SQLITE}: clamped`)
    maxJobSize = MAX_JOB_SIZE_SQLITE
  }
  const fsyncMs = f.fsync === undefined ? 50 : parseSize('-f', f.fsync)
  return {
    listen: listenAddress(f.listen, port),
    maxJobSize,
    binlogDir: f.binlogDir ?? null,
    store,
    fsyncMs,
    // -f after -F turns fsync back on in the reference; commander keeps the last word of each flag only.
    fsyncNever: f.fsyncNever === true && f.fsync === undefined,
    binlogSize: f.binlogSize === undefined ? DEFAULT_BINLOG_SIZE : parseSize('-s', f.binlogSize),
    user: f.user ?? null,
    verbosity: f.verbose ?? 0,
  }
}

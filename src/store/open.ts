/**
 * Opens the engine chosen with --store on a `-b DIR`, after checking that
 * DIR does not hold the other engine's data (layout.ts), and after importing
 * a beanstalkd binlog found there, and replays it into the registry
 * (store.ts). The one place that knows both engines' option sets.
 */
import { Binlog } from './binlog/binlog.js'
import { importAtStart } from './beanstalkd/import.js'
import { checkLayout } from './layout.js'
import { SqliteStore } from './sqlite/sqlite-store.js'
import type { DurableStore, Engine, ReplaySink, StoreOptions } from './store.js'

export interface OpenStoreOptions extends StoreOptions {
  readonly engine: Engine
  /** -s: the binlog's file size (the SQLite store has no files to rotate). */
  readonly fileSize: number
}

/** Resolves once every stored job is in `into` and the store takes new changes. */
export async function openStore(o: OpenStoreOptions, into: ReplaySink): Promise<DurableStore> {
  // A beanstalkd binlog in DIR becomes this engine's store first (beanstalkd/import.ts).
  importAtStart(o.dir, { engine: o.engine, fileSize: o.fileSize, maxJobSize: o.maxJobSize, log: o.log })
  checkLayout(o.dir, o.engine)
  const { engine, fileSize, ...common } = o
  return engine === 'sqlite' ? SqliteStore.open(common, into) : Binlog.open({ ...common, fileSize }, into)
}

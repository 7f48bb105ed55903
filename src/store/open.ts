/**
 * Opens the engine chosen with --store and replays it into the registry
 * (store.ts). For the directory engines (-b DIR): after checking that DIR
 * does not hold the other engine's data (layout.ts), and after importing a
 * beanstalkd binlog found there. For PostgreSQL: under a leadership the
 * caller holds (postgres/leader.ts). The one place that knows every
 * engine's option set.
 */
import { Binlog } from './binlog/binlog.js'
import { importAtStart } from './beanstalkd/import.js'
import { checkLayout } from './layout.js'
import type { Leader } from './postgres/leader.js'
import { SqliteStore } from './sqlite/sqlite-store.js'
import type { DurableStore, ReplaySink, StoreEngine, StoreOptions } from './store.js'

export interface OpenStoreOptions extends StoreOptions {
  readonly engine: StoreEngine
  /** -s: the binlog's file size (the SQLite store has no files to rotate). */
  readonly fileSize: number
  /** --store postgres: where, which namespace, and the leadership held. */
  readonly postgres?: { readonly url: string; readonly schema: string; readonly leader: Leader }
}

/** Resolves once every stored job is in `into` and the store takes new changes. */
export async function openStore(o: OpenStoreOptions, into: ReplaySink): Promise<DurableStore> {
  const { engine, fileSize, postgres, ...common } = o
  if (engine === 'postgres') {
    if (postgres === undefined) throw new Error('--store postgres without its connection settings')
    // Loaded only when used: the client library is not needed by the other engines.
    const { PostgresStore } = await import('./postgres/postgres-store.js')
    return PostgresStore.open({ ...common, ...postgres }, into)
  }
  // A beanstalkd binlog in DIR becomes this engine's store first (beanstalkd/import.ts).
  importAtStart(o.dir, { engine, fileSize, maxJobSize: o.maxJobSize, log: o.log })
  checkLayout(o.dir, engine)
  return engine === 'sqlite' ? SqliteStore.open(common, into) : Binlog.open({ ...common, fileSize }, into)
}

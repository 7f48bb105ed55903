/**
 * The two engines behind DurableStore, for tests that run against both
 * (describe.each(ENGINES)): each opens its store from the binlog test
 * options (the SQLite store ignores the binlog-only ones: fileSize, fs).
 */
import { Binlog, type BinlogOptions } from '../../src/store/binlog/binlog.js'
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import type { DurableStore, Engine, ReplaySink } from '../../src/store/store.js'

export interface EngineFactory<S extends DurableStore = DurableStore> {
  readonly name: Engine
  /** The CLI flags that choose it. */
  readonly flags: readonly string[]
  /** Opens and replays into `into`. */
  open(o: BinlogOptions, into: ReplaySink): Promise<S>
}

export const binlogEngine: EngineFactory<Binlog> = { name: 'binlog', flags: [], open: (o, into) => Binlog.open(o, into) }
export const sqliteEngine: EngineFactory<SqliteStore> = {
  name: 'sqlite',
  flags: ['--store', 'sqlite'],
  open: (o, into) => SqliteStore.open(o, into),
}

export const ENGINES: readonly EngineFactory[] = [binlogEngine, sqliteEngine]

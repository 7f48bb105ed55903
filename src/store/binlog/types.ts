/**
 * The binlog's view of a job is the one every durable store uses
 * (src/store/store.ts). `binlog.ts` re-exports it; it is named here so the
 * binlog's own files can share it without importing the facade.
 */
export type { JobView } from '../store.js'

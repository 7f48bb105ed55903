/**
 * The binlog's view of a job: the fields it logs, read from the registry's
 * Job at each call. `binlog.ts` re-exports it; it lives here so the binlog's
 * own files can share it without importing the facade.
 */
export interface JobView {
  readonly id: number
  readonly tube: { readonly name: string }
  pri: number
  delayMs: number
  ttrMs: number
  /** Including the trailing CRLF. */
  body: Buffer
  /** The queue's JobState number: 1 ready, 2 reserved, 3 buried, 4 delayed. */
  state: number
  /** Monotonic ms. */
  createdAt: number
  /** Delayed: when it becomes ready; reserved: TTR end (monotonic ms). */
  deadline: number
  reserves: number
  timeouts: number
  releases: number
  buries: number
  kicks: number
}

/**
 * What the process is doing now, in one place: the CLI creates one Readiness,
 * the store reports replay progress into it, the server says when it serves
 * and when it drains, and whatever reports health (logs, `/readyz`) reads it.
 *
 * Invariants:
 * - `state` only moves forward through starting -> replaying -> serving,
 *   except that `standby` may come before replaying (a standby waits for the
 *   leadership of a shared store), `draining` follows serving, and `failed`
 *   and `stopping` may follow any state and are final.
 * - Only `serving` is ready: clients are accepted and the store is replayed.
 */

export const ReadyState = {
  STARTING: 'starting',
  STANDBY: 'standby',
  REPLAYING: 'replaying',
  SERVING: 'serving',
  DRAINING: 'draining',
  STOPPING: 'stopping',
  FAILED: 'failed',
} as const
export type ReadyState = (typeof ReadyState)[keyof typeof ReadyState]

/** How far a replay has got; totals are what is known at its start (0 where unknown). */
export interface ReplayProgress {
  readonly files: number
  readonly filesTotal: number
  readonly bytes: number
  readonly bytesTotal: number
  readonly records: number
  readonly jobs: number
}

export class Readiness {
  private current: ReadyState = ReadyState.STARTING
  private why: string | null = null
  private replay: ReplayProgress | null = null
  private readonly listeners: ((state: ReadyState) => void)[] = []

  get state(): ReadyState {
    return this.current
  }

  /** Why the state is what it is (the store error, the leader being waited for), if anything. */
  get detail(): string | null {
    return this.why
  }

  /** The last replay progress reported, kept after the replay ends. */
  get progress(): ReplayProgress | null {
    return this.replay
  }

  get ready(): boolean {
    return this.current === ReadyState.SERVING
  }

  set(state: ReadyState, detail: string | null = null): void {
    if (this.current === ReadyState.FAILED || this.current === ReadyState.STOPPING) return
    this.current = state
    this.why = detail
    for (const l of this.listeners) l(state)
  }

  reportReplay(p: ReplayProgress): void {
    this.replay = p
  }

  onChange(listener: (state: ReadyState) => void): void {
    this.listeners.push(listener)
  }
}

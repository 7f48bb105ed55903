/**
 * The retry both stores run while a commit cannot go through (a full disk,
 * or for SQLite a lock held elsewhere): one unref'd timer at a time, so a
 * quiet server still exits; an error thrown by the retry goes to `onError`
 * (the store's path for failures found outside a call).
 */
export class RetryTimer {
  private timer: NodeJS.Timeout | null = null
  private readonly ms: number
  private readonly run: () => void
  private readonly onError: (err: unknown) => void

  constructor(ms: number, run: () => void, onError: (err: unknown) => void) {
    this.ms = ms
    this.run = run
    this.onError = onError
  }

  /** Runs `run` once after `ms`, unless already armed. */
  arm(): void {
    if (this.timer !== null) return
    this.timer = setTimeout(() => {
      this.timer = null
      try {
        this.run()
      } catch (err) {
        this.onError(err)
      }
    }, this.ms)
    this.timer.unref()
  }

  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }
}

/**
 * Write-ahead for replies: with a -b store (binlog or SQLite), the replies of
 * every connection that ran in one event-loop turn are held, the turn's records
 * go out in one write (one transaction), and each connection's replies leave
 * once that is durable (at once under -F and -f N; after one shared fsync
 * under -f 0).
 */
import type { DurableStore } from '../store/store.js'
import type { Connection, ReplyGate } from './connection.js'

/** Batches of the same lone client in a row before its fsyncs may run inline. */
const LONE_STREAK = 2

export class BinlogGate implements ReplyGate {
  private readonly binlog: DurableStore
  private dirty: Connection[] = []
  private scheduled = false
  /** The connection whose replies alone made the last batches, and how many in a row. */
  private lone: Connection | null = null
  private loneStreak = 0
  private readonly whenDurable: (seq: number, cb: () => void) => void

  constructor(binlog: DurableStore) {
    this.binlog = binlog
    this.whenDurable = (seq, cb) => binlog.whenDurable(seq, cb)
  }

  hold(c: Connection): void {
    this.dirty.push(c)
    this.schedule()
  }

  /** Flush at the end of this turn (also for records with no reply, e.g. TTR timeouts). */
  schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => this.commit())
  }

  commit(): void {
    this.scheduled = false
    // A lone client: the same one connection behind LONE_STREAK batches in
    // a row (timeouts' batches, with none, count neither way). Then the
    // store may fsync inline (-f 0), sparing it the thread-pool round trip,
    // and nobody else's commands wait meanwhile. A batch of one connection
    // alone proves nothing: with many clients, the first to answer after a
    // group fsync makes one, and an inline fsync would hold the others unread.
    const d = this.dirty
    if (d.length === 1) {
      this.loneStreak = d[0] === this.lone ? this.loneStreak + 1 : 1
      this.lone = d[0]!
    } else if (d.length > 1) {
      this.loneStreak = 0
      this.lone = null
    }
    const seq = this.binlog.flush(this.loneStreak >= LONE_STREAK)
    const dirty = this.dirty
    this.dirty = []
    for (const c of dirty) c.release(seq, this.whenDurable)
  }
}

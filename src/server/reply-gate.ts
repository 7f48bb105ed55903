/**
 * Write-ahead for replies: with a -b store (binlog or SQLite), the replies of
 * every connection that ran in one event-loop turn are held, the turn's records
 * go out in one write (one transaction), and each connection's replies leave
 * once that is durable (at once under -F and -f N; after one shared fsync
 * under -f 0).
 */
import type { DurableStore } from '../store/store.js'
import type { Connection, ReplyGate } from './connection.js'

export class BinlogGate implements ReplyGate {
  private readonly binlog: DurableStore
  private dirty: Connection[] = []
  private scheduled = false
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
    const seq = this.binlog.flush()
    const dirty = this.dirty
    this.dirty = []
    for (const c of dirty) c.release(seq, this.whenDurable)
  }
}

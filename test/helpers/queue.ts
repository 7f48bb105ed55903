/**
 * A registry on a ManualClock for scheduling tests: time moves only by
 * advance(), which fires what is due exactly as the server's Node timer does.
 */
import type { Job } from '../../src/queue/job.js'
import { Registry } from '../../src/queue/registry.js'
import type { Session, Waiter } from '../../src/queue/session.js'
import { TimingWheel } from '../../src/queue/timing-wheel.js'
import { ManualClock } from '../../src/util/clock.js'

/** A Waiter that writes down what the registry told it, as reply words. */
export class RecordingWaiter implements Waiter {
  readonly events: string[] = []
  jobReserved(job: Job): void {
    this.events.push(`RESERVED ${job.id}`)
  }
  waitEnded(reply: Buffer): void {
    this.events.push(reply.toString('latin1').trim())
  }
}

export class TestQueue {
  readonly clock = new ManualClock(1_000_000)
  readonly wheel = new TimingWheel(this.clock.now())
  readonly r = new Registry(this.clock, this.wheel)

  /** Moves time forward and fires what is due. */
  advance(ms: number): void {
    this.clock.advance(ms)
    this.wheel.advance(this.clock.now())
  }

  session(): [Session, RecordingWaiter] {
    const w = new RecordingWaiter()
    return [this.r.openSession(w), w]
  }
}

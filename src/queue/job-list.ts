/**
 * Intrusive FIFO of jobs through `job.prev`/`job.next`: O(1) append, unlink
 * and head. Used for a tube's buried jobs (bury order) and a session's
 * reserved jobs (reserve order).
 */
import type { Job } from './job.js'

export class JobList {
  head: Job | null = null
  tail: Job | null = null
  size = 0

  append(job: Job): void {
    job.prev = this.tail
    job.next = null
    if (this.tail === null) this.head = job
    else this.tail.next = job
    this.tail = job
    this.size++
  }

  unlink(job: Job): void {
    if (job.prev === null) this.head = job.next
    else job.prev.next = job.next
    if (job.next === null) this.tail = job.prev
    else job.next.prev = job.prev
    job.prev = null
    job.next = null
    this.size--
  }
}

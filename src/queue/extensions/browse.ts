/**
 * list-jobs (--extensions): one page of a tube's jobs in one state, in the
 * order that state serves them, after a cursor job.
 *
 * - ready: priority, then id (the ready heap's order); delayed: due time,
 *   then id (the delay heap's order). The heaps are walked best-first with
 *   the cursor's key as a lower bound: the jobs at or before the cursor form
 *   a subtree at the heap's root, which is walked (no comparisons beyond one
 *   per node), and its frontier seeds a best-first search that stops after
 *   `limit` jobs. So a page costs O(k + limit log limit) for a cursor k jobs
 *   deep, with no allocation proportional to the tube and no sort of it.
 * - buried: bury order, from the cursor's successor in the tube's list: O(limit).
 * - reserved: by id, over the reserved jobs of every session: O(reserved).
 *
 * The cursor is a job id. Its key is the one it had when this session's
 * last page ended with it (so a cursor job that was reserved or deleted
 * meanwhile still marks the place), else the job's key now; a cursor that is
 * neither answers null (NOT_FOUND). Ready jobs parked behind a concurrency
 * key and held after-jobs are not in the heaps and are not listed.
 */
import { ListState } from '../../protocol/admin-verbs.js'
import type { Heap } from '../heap.js'
import { byDeadline, byPriority, JobState, type Job } from '../job.js'
import type { Registry } from '../registry.js'
import type { Session } from '../session.js'
import type { Tube } from '../tube.js'

/** Where a session's last page ended: the key of its last job then. */
export interface ListCursor {
  tube: string
  state: ListState
  id: number
  pri: number
  deadline: number
}

/** The key a heap orders by, as a stand-in job. */
type Key = Pick<Job, 'id' | 'pri' | 'deadline'>

/** The ids of one page, or null when the cursor is unknown. */
export function listJobs(r: Registry, s: Session, t: Tube, state: ListState, after: number, limit: number): Job[] | null {
  let page: Job[] | null
  if (state === ListState.BURIED) page = buriedPage(r, t, after, limit)
  else if (state === ListState.RESERVED) page = reservedPage(r, t, after, limit)
  else {
    const heap = state === ListState.READY ? t.ready : t.delayed
    const less = state === ListState.READY ? byPriority : byDeadline
    let key: Key | null = null
    if (after !== 0) {
      const c = s.listCursor
      if (c !== null && c.id === after && c.tube === t.name && c.state === state) key = c
      else key = r.jobs.get(after) ?? null
      if (key === null) return null
    }
    page = heapPage(heap, less as (a: Key, b: Key) => boolean, key, limit)
  }
  if (page === null) return null
  const last = page[page.length - 1]
  if (last !== undefined) s.listCursor = { tube: t.name, state, id: last.id, pri: last.pri, deadline: last.deadline }
  return page
}

function buriedPage(r: Registry, t: Tube, after: number, limit: number): Job[] | null {
  let j: Job | null
  if (after === 0) j = t.buried.head
  else {
    const c = r.jobs.get(after)
    if (c === undefined || c.state !== JobState.BURIED || c.tube !== t) return null
    j = c.next
  }
  const out: Job[] = []
  for (; j !== null && out.length < limit; j = j.next) out.push(j)
  return out
}

function reservedPage(r: Registry, t: Tube, after: number, limit: number): Job[] {
  const all: Job[] = []
  for (const s of r.sessions) for (let j = s.reserved.head; j !== null; j = j.next) if (j.tube === t && j.id > after) all.push(j)
  all.sort((a, b) => a.id - b.id)
  return all.slice(0, limit)
}

/** The first `limit` jobs of `heap` (in `less` order) that come after `key` (from the start: null). */
export function heapPage(heap: Heap<Job>, less: (a: Key, b: Key) => boolean, key: Key | null, limit: number): Job[] {
  const size = heap.size
  if (size === 0) return []
  const items = heap.slots
  const at = (i: number): Job => items[i]!
  // Seeds: the heap positions after the key whose parent is not (the root's, from the start).
  // Only the `limit` best seeds can lead to the page (a seed's subtree comes
  // after the seed), so they are kept in a bounded worst-first heap as they
  // are found, and a seed no better than its worst is dropped at once.
  const worstFirst = new PosHeap((a, b) => less(at(b), at(a)))
  if (key === null) worstFirst.push(0)
  else {
    const stack = [0]
    while (stack.length > 0) {
      const i = stack.pop()!
      const j = items[i]!
      if (less(key, j)) {
        if (worstFirst.size < limit) worstFirst.push(i)
        else if (less(j, at(worstFirst.peek()))) {
          worstFirst.pop()
          worstFirst.push(i)
        }
      } else {
        const l = 2 * i + 1
        if (l < size) stack.push(l)
        if (l + 1 < size) stack.push(l + 1)
      }
    }
  }
  const seeds = worstFirst.items
  const frontier = new PosHeap((a, b) => less(at(a), at(b)))
  for (const i of seeds) frontier.push(i)
  const out: Job[] = []
  while (out.length < limit && frontier.size > 0) {
    const i = frontier.pop()
    out.push(at(i))
    const l = 2 * i + 1
    if (l < size) frontier.push(l)
    if (l + 1 < size) frontier.push(l + 1)
  }
  return out
}

/** A plain binary heap of numbers (heap positions) under `less`. */
class PosHeap {
  readonly items: number[] = []
  private readonly less: (a: number, b: number) => boolean
  constructor(less: (a: number, b: number) => boolean) {
    this.less = less
  }
  get size(): number {
    return this.items.length
  }
  peek(): number {
    return this.items[0]!
  }
  push(x: number): void {
    const a = this.items
    let k = a.length
    a.push(x)
    while (k > 0) {
      const p = (k - 1) >> 1
      if (!this.less(a[k]!, a[p]!)) break
      ;[a[k], a[p]] = [a[p]!, a[k]!]
      k = p
    }
  }
  pop(): number {
    const a = this.items
    const top = a[0]!
    const last = a.pop()!
    if (a.length > 0) {
      a[0] = last
      let k = 0
      for (;;) {
        const l = 2 * k + 1
        if (l >= a.length) break
        const c = l + 1 < a.length && this.less(a[l + 1]!, a[l]!) ? l + 1 : l
        if (!this.less(a[c]!, a[k]!)) break
        ;[a[k], a[c]] = [a[c]!, a[k]!]
        k = c
      }
    }
    return top
  }
}

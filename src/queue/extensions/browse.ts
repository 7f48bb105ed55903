/**
 * list-jobs (--extensions): one page of a tube's jobs in one state, in the
 * order that state serves them, after a cursor job.
 *
 * - ready: priority, then id (the ready heap's order); delayed: due time,
 *   then id (the delay heap's order). A page is read from the heap's ordered
 *   index (tube-heap.ts, ordered-index.ts): a seek to the cursor's key and
 *   `limit` steps, O(log n + limit) however deep the cursor. The index is
 *   built on the state's first page in that tube (a large heap's in the
 *   background, its pages meanwhile read by one pass over the heap, O(n)),
 *   then kept in step by the heap's pushes and removes until the heap empties.
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
import { JobState, type Job } from '../job.js'
import type { Registry } from '../registry.js'
import type { Session } from '../session.js'
import type { JobKey } from '../tube-heap.js'
import type { Tube } from '../tube.js'

/** Where a session's last page ended: the key of its last job then. */
export interface ListCursor {
  tube: string
  state: ListState
  id: number
  pri: number
  deadline: number
}


/** The ids of one page, or null when the cursor is unknown. */
export function listJobs(r: Registry, s: Session, t: Tube, state: ListState, after: number, limit: number): Job[] | null {
  let page: Job[] | null
  if (state === ListState.BURIED) page = buriedPage(r, t, after, limit)
  else if (state === ListState.RESERVED) page = reservedPage(r, t, after, limit)
  else {
    const heap = state === ListState.READY ? t.ready : t.delayed
    let key: JobKey | null = null
    if (after !== 0) {
      const c = s.listCursor
      if (c !== null && c.id === after && c.tube === t.name && c.state === state) key = c
      else key = r.jobs.get(after) ?? null
      if (key === null) return null
    }
    page = heap.page(key, limit)
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

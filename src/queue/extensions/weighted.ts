/**
 * Weighted reserve (`reserve-mode weighted`, `watch <tube> <weight>`), as
 * tuber defines it: among the watched tubes that have a job a reserve may
 * take now (ready, not paused), pick one at random in proportion to its
 * weight, then take that tube's best job (priority, then id).
 *
 * O(watched tubes) per reserve, like tuber; a weight is per session and per
 * tube name (1 unless `watch` gave another).
 */
import type { Job } from '../job.js'
import type { Session } from '../session.js'

/** A number in [0, 1); Math.random, or a seeded one in tests. */
export type Random = () => number

export function weightedPick(s: Session, random: Random): Job | undefined {
  let total = 0
  for (const t of s.watching) if (!t.paused && t.ready.size > 0) total += s.weightOf(t.name)
  if (total === 0) return undefined
  let r = random() * total
  let last: Job | undefined
  for (const t of s.watching) {
    if (t.paused || t.ready.size === 0) continue
    last = t.ready.peek()
    r -= s.weightOf(t.name)
    if (r < 0) return last
  }
  return last // rounding left r at 0: the last candidate
}

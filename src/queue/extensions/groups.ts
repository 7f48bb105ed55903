/**
 * Job groups (put tags `grp:<name>`, `aft:<name>`): a group is complete while
 * it has no live member; an after-job becomes ready only at a moment when the
 * group it waits for is complete, and is held (state HELD) until then.
 * Group names are global, across tubes (as in tuber).
 *
 * Cycles (tuber does not look for them): a member of B that waits for A makes
 * B unable to complete before A, the edge B -> A in `waitsOn`. A put that
 * would close a cycle of such edges (A waiting, through groups, for B) would
 * hold jobs that can never run without a manual delete, so it is refused.
 *
 * Invariants:
 * - `members` counts the live jobs tagged grp:<name>, `buried` those of
 *   them that are buried; `held` lists the HELD after-jobs in hold order
 *   (through job.prev/next, free while a job is held), and `afterRefs` counts
 *   every after-job not yet satisfied (held or still delayed).
 * - `waitsOn` has an entry (with its count) exactly for the groups that the
 *   members' unsatisfied after-tags name.
 * - A group exists while members + afterRefs > 0; stats-group of any other
 *   name is NOT_FOUND.
 */
import { JobList } from '../job-list.js'

export class Group {
  readonly name: string
  members = 0
  buried = 0
  readonly held = new JobList()
  afterRefs = 0
  readonly waitsOn = new Map<Group, number>()

  constructor(name: string) {
    this.name = name
  }

  get complete(): boolean {
    return this.members === 0
  }
}

export class Groups {
  private readonly byName = new Map<string, Group>()

  get size(): number {
    return this.byName.size
  }

  find(name: string): Group | undefined {
    return this.byName.get(name)
  }

  /** The named group, made if needed (a put names it). */
  get(name: string): Group {
    let g = this.byName.get(name)
    if (g === undefined) {
      g = new Group(name)
      this.byName.set(name, g)
    }
    return g
  }

  /** Forgets a group nothing refers to any more. */
  dropIfIdle(g: Group): void {
    if (g.members === 0 && g.afterRefs === 0 && this.byName.get(g.name) === g) this.byName.delete(g.name)
  }

  /** A member of `g` waits for `after` (the edge g -> after), or no longer does (`by` -1). */
  static edge(g: Group, after: Group, by: 1 | -1): void {
    const n = (g.waitsOn.get(after) ?? 0) + by
    if (n === 0) g.waitsOn.delete(after)
    else g.waitsOn.set(after, n)
  }

  /**
   * Whether a job tagged aft:<after> grp:<group> would close a cycle: it is
   * its own group, or `after` already waits (through groups) for `group`.
   */
  static closesCycle(after: string, group: string, find: (name: string) => Group | undefined): boolean {
    if (after === group) return true
    const target = find(group)
    const start = find(after)
    if (target === undefined || start === undefined) return false
    const seen = new Set<Group>([start])
    const stack = [start]
    for (let g = stack.pop(); g !== undefined; g = stack.pop()) {
      for (const next of g.waitsOn.keys()) {
        if (next === target) return true
        if (!seen.has(next)) {
          seen.add(next)
          stack.push(next)
        }
      }
    }
    return false
  }
}

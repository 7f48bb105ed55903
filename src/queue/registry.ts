/**
 * The in-memory queue: tubes, jobs by id, sessions, and every state change of
 * the protocol. Knows nothing of sockets or bytes: commands come in as calls,
 * results go out as return values, and replies to sessions that were waiting
 * go out through their Waiter.
 *
 * Invariants:
 * - After every public call, no unpaused tube has both a ready job and a
 *   waiting session (`processQueue` pairs them, best job first).
 * - `eligible` holds exactly the tubes with (per-tube) waiters, ready jobs and
 *   no pause, ordered by their best ready job.
 * - A waiting session that watches many tubes (more than WIDE_WATCH) is not
 *   entered in each tube's waiting list, which would make every wait and wake
 *   O(watched tubes) (beanstalkd #561): it waits in `wideWaiters`, and
 *   processQueue finds its best job through the ready-tube index.
 * - Every delayed or reserved job has its timer scheduled at its deadline; a
 *   waiting session with a timeout or a held job has its wait timer scheduled,
 *   and that timer is in the future: a wait that would end at once (a
 *   reserve-with-timeout 0, DEADLINE_SOON) is answered by the reserve itself,
 *   as the reference answers it on its next tick, before any other command.
 * - Each tube's waiting list and take index are the reference's (ref:ms.c,
 *   prot.c enqueue_waiting_conn / process_queue), also after a reserve that is
 *   served at once (tsbeanstalkd takes that job directly; the reference
 *   enqueues the session and takes it from the list again, which moves the
 *   index). Wide waiters are the documented exception (docs/COMPAT.md#wide-waiter-order).
 * - A paused tube's pause is in the future: `pause-tube T 0` (1 ns in the
 *   reference, lifted on its next tick) ends at once.
 * - Global counters equal the sums of the per-tube ones.
 * - With the extensions (`ext`, --extensions) a tagged job's placement goes
 *   through the RegistryExtension hooks: a ready job may sit in a
 *   concurrency lane instead of its tube's ready heap (tube.parked), an
 *   after-job may be HELD (tube.held, counted as delayed). Untagged jobs
 *   (`job.ext === null`, all of them without the switch) never reach a hook.
 */
import { DEFAULT_TUBE, MIN_TTR_MS, Reply, SAFETY_MARGIN_MS, URGENT_THRESHOLD } from '../protocol/constants.js'
import type { Clock } from '../util/clock.js'
import { BodyArena, type Slab } from './body-arena.js'
import { Heap } from './heap.js'
import { Job, JobState, byPriority } from './job.js'
import { JobTable, type JobWalk } from './job-table.js'
import { noPolicy, type Journal, type RestoredFields, type RestoredPolicy, type RestoredTags, type RestoredTombstone } from './journal.js'
import { NO_WAIT_LIMIT, Session, type WaitTimerHandler, type Waiter } from './session.js'
import { ReadyIndex, SCAN_LIMIT } from './ready-index.js'
import { Tube, byTopJob, type TubeHandler } from './tube.js'
import type { TimingWheel } from './timing-wheel.js'
import { TubePolicy } from './extensions/policies.js'

/** A put beyond a tube's max-jobs (--extensions; protocol/admin-replies.ts has the same bytes). */
const TUBE_FULL = Buffer.from('TUBE_FULL\r\n', 'latin1')

/**
 * What the registry asks the extensions (queue/extensions/) about a tagged
 * job, at the moments its state changes. Declared here so the registry does
 * not depend on them; installed as `registry.ext` only with --extensions.
 */
export interface RegistryExtension {
  /** The job is about to become ready: true if it is held instead (state HELD, counted). */
  holdsBack(j: Job): boolean
  /** A job just made ready: into its tube's ready heap or its concurrency lane. */
  placeReady(j: Job): void
  /** A ready job leaves the ready state: out of wherever placeReady put it. */
  unplaceReady(j: Job): void
  reserved(j: Job): void
  unreserved(j: Job): void
  /** The job was buried (true) or left the buried state (false). */
  buried(j: Job, on: boolean): void
  /** A HELD job leaves its hold without becoming ready (delete). */
  unhold(j: Job): void
  /** The job was deleted (detached, journaled); its keys and group counts go. */
  deleted(j: Job): void
  /** reserve-job: false while the job is held or its key is at its limit. */
  mayReserve(j: Job): boolean
  /** The job a weighted session reserves next, if any. */
  weightedPick(s: Session): Job | undefined
  /** A restored job's tags, attached before restoreEnd places it. */
  restoreTags(j: Job, tags: RestoredTags): void
  restoreTombstone(t: RestoredTombstone): void
}

/** A store holds jobs with extension tags and the server runs without --extensions. */
export class ExtensionsNeededError extends Error {
  readonly code = 'TSB_ERR_EXTENSIONS_NEEDED'
  constructor() {
    super(
      'the store holds jobs with extension tags (idp:, grp:, aft:, con:) or idempotency cooldowns: start with --extensions ' +
        '(or extensions = true in the config file); without it their keys and group dependencies would be lost',
    )
    this.name = 'ExtensionsNeededError'
  }
}

/** A session watching more tubes than this waits without entering each tube's list. */
const WIDE_WATCH = SCAN_LIMIT
const isWide = (s: Session): boolean => s.watching.length > WIDE_WATCH
/** Job slots a delete visits of a body compaction under way. */
const COMPACT_STEP = 1024

export class Registry implements TubeHandler, WaitTimerHandler {
  readonly clock: Clock
  readonly wheel: TimingWheel
  readonly tubes = new Map<string, Tube>()
  /** Creation order with swap-remove, as `list-tubes` shows (REFERENCE.md 2.9). */
  readonly tubeList: Tube[] = []
  readonly jobs = new JobTable()
  /** Job bodies, packed into shared slabs. */
  readonly bodies: BodyArena
  /** A body compaction under way: where it has got to. */
  private compaction: JobWalk | null = null
  readonly defaultTube: Tube
  private readonly eligible = new Heap<Tube>(byTopJob)
  private readonly readyIndex = new ReadyIndex()
  /** Waiting sessions that watch more than WIDE_WATCH tubes, in the order they began to wait. */
  private readonly wideWaiters: Session[] = []
  /**
   * Puts whose line was read and whose body is still arriving, by id. They
   * exist for peek and stats-job (state `invalid`, REFERENCE.md 2.5) and
   * nothing else. Only puts whose body spans reads ever enter.
   */
  private readonly arriving = new Map<number, Job>()
  private nextJobId = 1
  private nextSessionId = 1

  // Global counters (stats).
  readyCount = 0
  urgentCount = 0
  reservedCount = 0
  delayedCount = 0
  buriedCount = 0
  timeouts = 0
  totalJobs = 0
  sessionCount = 0
  totalSessions = 0
  producers = 0
  workers = 0
  waitingCount = 0
  draining = false
  /** Where state changes are recorded before their replies leave (the binlog), if anywhere. */
  journal: Journal | null = null
  /** The extensions' hooks (--extensions), or null. */
  ext: RegistryExtension | null = null
  /** Extensions: tube policies by tube name (extensions/policies.ts); null without --extensions. */
  policies: Map<string, TubePolicy> | null = null
  /** Open sessions (list-jobs of reserved jobs walks their reserved lists). */
  readonly sessions = new Set<Session>()
  /** While restoring: the tags of restored jobs, by id (restoreTags). */
  private restoredTags: Map<number, RestoredTags> | null = null

  constructor(clock: Clock, wheel: TimingWheel, bodies = new BodyArena()) {
    this.clock = clock
    this.wheel = wheel
    this.bodies = bodies
    this.defaultTube = this.tube(DEFAULT_TUBE)
  }

  // --- tubes ---------------------------------------------------------------

  /** The named tube, created if needed. */
  tube(name: string): Tube {
    let t = this.tubes.get(name)
    if (t === undefined) {
      t = new Tube(name, this)
      if (this.policies !== null) t.policy = this.policies.get(name) ?? null
      this.tubes.set(name, t)
      t.listIndex = this.tubeList.length
      this.tubeList.push(t)
    }
    return t
  }

  /** Destroys a tube nothing references any more (never `default`). */
  private dropIfUnused(t: Tube): void {
    if (t === this.defaultTube || t.usingCount > 0 || t.watchingCount > 0 || t.jobCount > 0) return
    this.tubes.delete(t.name)
    const last = this.tubeList.pop()!
    if (last !== t) {
      this.tubeList[t.listIndex] = last
      last.listIndex = t.listIndex
    }
    t.listIndex = -1
    this.wheel.cancel(t)
    this.eligible.remove(t)
    this.readyIndex.remove(t)
  }

  /** Re-files a tube in the eligible heap after its waiters, ready jobs or pause changed. */
  private refresh(t: Tube): void {
    this.readyIndex.refresh(t)
    if (t.eligible) {
      if (t.heapIndex === -1) this.eligible.push(t)
      else this.eligible.update(t)
    } else if (t.heapIndex !== -1) {
      this.eligible.remove(t)
    }
  }

  // --- sessions ------------------------------------------------------------

  openSession(waiter: Waiter): Session {
    const s = new Session(this.nextSessionId++, this.defaultTube, waiter, this)
    this.defaultTube.usingCount++
    s.addWatch(this.defaultTube)
    this.defaultTube.watchingCount++
    this.sessionCount++
    this.totalSessions++
    this.sessions.add(s)
    return s
  }

  /**
   * A connection went away: its wait ends, its reserved jobs go straight back
   * to ready in reserve order (no timeout counted), its tube references drop.
   */
  closeSession(s: Session): void {
    this.stopWaiting(s)
    for (let j = s.reserved.head; j !== null; j = s.reserved.head) {
      this.unreserve(j)
      this.makeReady(j)
      this.processQueue()
    }
    // ref:conn.c connclose: the watch list is cleared by deleting its first
    // element until empty (ms_clear: the last moves into slot 0), then the
    // used tube goes. The order decides list-tubes' order (swap-remove).
    const w = s.watching
    for (let k = 0; k < w.length; k++) {
      const t = w[k === 0 ? 0 : w.length - k]!
      t.watchingCount--
      this.dropIfUnused(t)
    }
    s.clearWatches()
    s.used.usingCount--
    this.dropIfUnused(s.used)
    if (s.producer) this.producers--
    if (s.worker) this.workers--
    this.sessionCount--
    this.sessions.delete(s)
  }

  markProducer(s: Session): void {
    if (!s.producer) {
      s.producer = true
      this.producers++
    }
  }

  markWorker(s: Session): void {
    if (!s.worker) {
      s.worker = true
      this.workers++
    }
  }

  use(s: Session, name: string): Tube {
    const t = this.tube(name)
    const old = s.used
    t.usingCount++
    s.used = t
    old.usingCount--
    this.dropIfUnused(old)
    return t
  }

  /** Returns the number of watched tubes. */
  watch(s: Session, name: string): number {
    const existing = this.tubes.get(name)
    if (existing === undefined || !s.watches(existing)) {
      const t = existing ?? this.tube(name)
      s.addWatch(t)
      t.watchingCount++
    }
    return s.watching.length
  }

  /** Returns the number of watched tubes, or -1 for NOT_IGNORED (the last one). */
  ignore(s: Session, name: string): number {
    const t = this.tubes.get(name)
    if (t === undefined) return s.watching.length
    if (!s.watches(t)) return s.watching.length
    if (s.watching.length === 1) return -1
    s.removeWatch(t)
    t.watchingCount--
    this.dropIfUnused(t)
    return s.watching.length
  }

  // --- putting jobs ----------------------------------------------------------

  /** Ids are taken when the put line is accepted (REFERENCE.md 2.5). */
  allocateId(): number {
    return this.nextJobId++
  }

  /**
   * A new job whose body (with its CRLF) was read into `slab` at `off`, or
   * null when the journal has no room (OUT_OF_MEMORY; the space is released).
   */
  put(s: Session, id: number, pri: number, delaySecs: number, ttrSecs: number, slab: Slab, off: number, len: number): Job | null {
    // Its age counts from the put line, as in the reference.
    const early = this.arriving.size > 0 ? this.endArriving(id) : undefined
    if (this.journal !== null && !this.journal.canPut()) {
      this.bodies.release(slab, len)
      return null
    }
    const now = this.clock.now()
    const job = early ?? this.newJob(s, id, pri, delaySecs, ttrSecs, slab, off, len, now)
    this.admit(job, now)
    return job
  }

  /**
   * A new job (its tags attached, if any) enters the queue at `now`: indexed,
   * counted, delayed or made ready, journaled, paired with a waiter. The
   * caller made sure the journal can take it.
   */
  admit(job: Job, now: number): void {
    const t = job.tube
    this.jobs.set(job.id, job)
    t.totalJobs++
    this.totalJobs++
    if (job.delayMs > 0) this.makeDelayed(job, now + job.delayMs)
    else this.makeReady(job)
    // canPut() just said yes, and nothing ran since: put() cannot refuse here.
    this.journal?.put(job)
    this.processQueue()
  }

  private newJob(s: Session, id: number, pri: number, delaySecs: number, ttrSecs: number, slab: Slab, off: number, len: number, now: number): Job {
    return new Job(id, pri, delaySecs * 1000, Math.max(ttrSecs * 1000, MIN_TTR_MS), slab, off, len, s.used, now)
  }

  /**
   * A put's body did not all come with its line (`arrived` bytes so far):
   * until it has, `peek` and `stats-job` see the job, in state `invalid`.
   * Idempotent. The bytes still to come read as zeros (the reference shows
   * whatever its memory held there: docs/COMPAT.md#peek-arriving-body).
   */
  beginArriving(s: Session, id: number, pri: number, delaySecs: number, ttrSecs: number, slab: Slab, off: number, len: number, arrived: number): void {
    if (this.arriving.has(id)) return
    slab.buf.fill(0, off + arrived, off + len)
    this.arriving.set(id, this.newJob(s, id, pri, delaySecs, ttrSecs, slab, off, len, this.clock.now()))
  }

  /** The put ended (stored, refused, or its connection gone). */
  endArriving(id: number): Job | undefined {
    const j = this.arriving.get(id)
    if (j !== undefined) this.arriving.delete(id)
    return j
  }

  // --- restoring from a journal at start (the store's ReplaySink) -----------
  //
  // Between restoreJob and restoreEnd the restored jobs are only in `jobs`,
  // with their state as stored; restoreEnd files each one where its state
  // says. No counters are bumped, and no session exists meanwhile.

  /**
   * A job as stored, its body `src[start, end)` without the CRLF: copied once
   * into the body arena. A job with the same id is replaced, or only updated
   * when it is the same job stored again (a compaction's copy).
   */
  restoreJob(f: RestoredFields, tube: string, src: Buffer, start: number, end: number): void {
    const len = end - start + 2
    const old = this.jobs.get(f.id)
    if (old !== undefined) {
      if (sameJob(old, f, tube, src, start, end)) {
        this.restoreUpdate(f)
        return
      }
      this.restoreDelete(f.id)
    }
    const slab = this.bodies.slabFor(len)
    const off = slab.take(len)
    src.copy(slab.buf, off, start, end)
    slab.buf[off + len - 2] = 0x0d
    slab.buf[off + len - 1] = 0x0a
    const j = new Job(f.id, f.pri, f.delayMs, f.ttrMs, slab, off, len, this.tube(tube), f.createdAt)
    this.jobs.set(j.id, j)
    this.restoreUpdate(f)
  }

  /** A later record's state, priority, delay and counters; false if there is no such job. */
  restoreUpdate(f: RestoredFields): boolean {
    const j = this.jobs.get(f.id)
    if (j === undefined) return false
    j.state = f.state as JobState
    j.pri = f.pri
    j.delayMs = f.delayMs
    j.deadline = f.deadline
    j.reserves = f.reserves
    j.timeouts = f.timeouts
    j.releases = f.releases
    j.buries = f.buries
    j.kicks = f.kicks
    return true
  }

  restoreDelete(id: number): boolean {
    const j = this.jobs.get(id)
    if (j === undefined) return false
    this.restoredTags?.delete(id)
    this.jobs.delete(id)
    j.state = JobState.INVALID
    this.bodies.release(j.slab, j.bodyLen)
    return true
  }

  /**
   * Files every restored job where its state says: reserved ones back to
   * ready, delayed ones whose time has passed too, buried ones in `buried`
   * (bury) order; drops tubes left empty; ids continue at `nextId`.
   */
  /** --extensions: a restored job's tags, kept aside until restoreEnd (when every group's members are known). */
  restoreTags(id: number, tags: RestoredTags): boolean {
    if (this.ext === null) throw new ExtensionsNeededError()
    if (this.jobs.get(id) === undefined) return false
    ;(this.restoredTags ??= new Map()).set(id, { ...tags })
    return true
  }

  restoreTombstone(t: RestoredTombstone): void {
    if (this.ext === null) throw new ExtensionsNeededError()
    this.ext.restoreTombstone(t)
  }

  restoreEnd(buried: readonly number[], nextId: number): void {
    const now = this.clock.now()
    const tags = this.restoredTags
    this.restoredTags = null
    if (tags !== null) for (const [id, t] of tags) this.ext!.restoreTags(this.jobs.get(id)!, t)
    let buriedSeen = 0
    for (const j of this.jobs.values()) {
      if (j.state === JobState.BURIED) buriedSeen++
      else if (j.state === JobState.DELAYED && j.deadline > now) this.makeDelayed(j, j.deadline)
      else this.makeReady(j)
    }
    if (buriedSeen !== buried.length) throw new Error(`restore: ${buriedSeen} buried jobs, ${buried.length} in the bury order`)
    for (const id of buried) {
      const j = this.jobs.get(id)
      if (j?.state !== JobState.BURIED) throw new Error(`restore: job ${id} in the bury order is not buried`)
      j.tube.buried.append(j)
      this.buriedCount++
      if (j.ext !== null) this.ext!.buried(j, true)
    }
    for (const t of [...this.tubeList]) this.dropIfUnused(t)
    this.nextJobId = Math.max(this.nextJobId, nextId)
  }

  // --- state transitions (each keeps tube and global counters in step) -------

  private makeReady(j: Job): void {
    const x = j.ext
    if (x !== null && this.ext!.holdsBack(j)) return
    const t = j.tube
    j.state = JobState.READY
    if (x === null) t.ready.push(j)
    else this.ext!.placeReady(j)
    this.readyCount++
    if (j.pri < URGENT_THRESHOLD) {
      t.urgentCount++
      this.urgentCount++
    }
    this.refresh(t)
  }

  private removeReady(j: Job): void {
    const t = j.tube
    if (j.ext === null) t.ready.remove(j)
    else this.ext!.unplaceReady(j)
    this.readyCount--
    if (j.pri < URGENT_THRESHOLD) {
      t.urgentCount--
      this.urgentCount--
    }
    this.refresh(t)
  }

  private makeDelayed(j: Job, deadline: number): void {
    j.state = JobState.DELAYED
    j.deadline = deadline
    j.tube.delayed.push(j)
    this.delayedCount++
    this.wheel.schedule(j, j.deadline)
  }

  private removeDelayed(j: Job): void {
    j.tube.delayed.remove(j)
    this.delayedCount--
    this.wheel.cancel(j)
  }

  private makeBuried(j: Job): void {
    j.state = JobState.BURIED
    j.tube.buried.append(j)
    this.buriedCount++
    j.buries++
    j.tube.buries++
    if (j.ext !== null) this.ext!.buried(j, true)
  }

  private removeBuried(j: Job): void {
    j.tube.buried.unlink(j)
    this.buriedCount--
    if (j.ext !== null) this.ext!.buried(j, false)
  }

  /** Takes a job out of the structure its current state keeps it in. */
  private detach(j: Job): void {
    switch (j.state) {
      case JobState.READY:
        this.removeReady(j)
        break
      case JobState.DELAYED:
        this.removeDelayed(j)
        break
      case JobState.BURIED:
        this.removeBuried(j)
        break
      case JobState.RESERVED:
        this.unreserve(j)
        break
      case JobState.HELD:
        this.ext!.unhold(j)
        break
      case JobState.INVALID:
        break
    }
  }

  private reserve(s: Session, j: Job, now: number): void {
    const t = j.tube
    j.state = JobState.RESERVED
    j.reserver = s
    j.reserves++
    j.deadline = now + j.ttrMs
    t.reservedCount++
    this.reservedCount++
    s.deadlines.push(j)
    s.reserved.append(j)
    this.wheel.schedule(j, j.deadline)
    if (j.ext !== null) this.ext!.reserved(j)
    // Not journaled (as in the reference): replay brings reserved jobs back
    // ready, and the next record of this job carries its `reserves` count.
  }

  private unreserve(j: Job): void {
    const s = j.reserver!
    s.deadlines.remove(j)
    s.reserved.unlink(j)
    j.reserver = null
    j.tube.reservedCount--
    this.reservedCount--
    this.wheel.cancel(j)
    if (j.ext !== null) this.ext!.unreserved(j)
  }

  // --- reserving -------------------------------------------------------------

  /** The session holds a job whose TTR ends within the safety margin. */
  private deadlineSoon(s: Session, now: number): boolean {
    const j = s.deadlines.peek()
    return j !== undefined && now >= j.deadline - SAFETY_MARGIN_MS
  }

  /** Any watched tube has a ready job (pause not considered, as in the reference). */
  private hasReady(s: Session): boolean {
    for (const t of s.watching) if (t.ready.size > 0) return true
    return false
  }

  /**
   * reserve / reserve-with-timeout. Returns the reserved job, Reply.DEADLINE_SOON,
   * or null when the session now waits (its Waiter will hear the outcome).
   * `timeoutSecs` < 0 waits forever.
   */
  reserveOrWait(s: Session, timeoutSecs: number): Job | Buffer | null {
    const now = this.clock.now()
    this.markWorker(s)
    const soon = this.deadlineSoon(s, now)
    if (soon && !this.hasReady(s)) return Reply.DEADLINE_SOON
    // By the invariant, no other session waits on a watched tube that has a
    // ready job, so the reference's enqueue-then-process_queue would pick
    // exactly this job for this session.
    const best = s.weighted ? this.ext!.weightedPick(s) : this.readyIndex.bestFor(s.watching, (t) => s.watches(t))
    if (best !== undefined) {
      // The reference took this session from that tube's waiting list, where
      // it was alone: ms_take left the take index at 1.
      best.tube.waitTake = 1
      this.removeReady(best)
      this.reserve(s, best, now)
      return best
    }
    // A wait that would end at once ends here (the reference ends it on its
    // next tick, before any other command; the session would have left every
    // waiting list as it found it, being the last in each).
    if (soon) return Reply.DEADLINE_SOON
    if (timeoutSecs === 0) return Reply.TIMED_OUT
    this.startWaiting(s, timeoutSecs < 0 ? NO_WAIT_LIMIT : now + timeoutSecs * 1000, now)
    return null
  }

  /** reserve-job <id>: any tube, any state but reserved; never DEADLINE_SOON. */
  reserveById(s: Session, id: number): Job | null {
    const j = this.jobs.get(id)
    if (j === undefined || j.state === JobState.RESERVED) return null
    if (j.ext !== null && !this.ext!.mayReserve(j)) return null
    this.markWorker(s)
    this.detach(j)
    this.reserve(s, j, this.clock.now())
    return j
  }

  private startWaiting(s: Session, until: number, now: number): void {
    s.waiting = true
    s.waitUntil = until
    this.waitingCount++
    if (isWide(s)) {
      this.wideWaiters.push(s)
    } else {
      for (const t of s.watching) {
        t.waiting.push(s)
        this.refresh(t)
      }
    }
    this.scheduleWait(s, now)
    // A watched tube may be unpaused with ready jobs only if the fast path in
    // reserveOrWait missed it, which it does not; nothing to pair here.
  }

  /** The wait timer: the requested timeout or the safety margin of the soonest held job. */
  private scheduleWait(s: Session, now: number): void {
    const j = s.deadlines.peek()
    const at = Math.min(s.waitUntil === NO_WAIT_LIMIT ? Infinity : s.waitUntil, j === undefined ? Infinity : j.deadline - SAFETY_MARGIN_MS)
    if (at === Infinity) this.wheel.cancel(s)
    else this.wheel.schedule(s, Math.max(at, now))
  }

  private stopWaiting(s: Session): void {
    if (!s.waiting) return
    s.waiting = false
    this.waitingCount--
    this.wheel.cancel(s)
    // A session's watch list cannot change while it waits, so it is where it was put.
    if (isWide(s)) {
      this.wideWaiters.splice(this.wideWaiters.indexOf(s), 1)
      return
    }
    for (const t of s.watching) {
      t.removeWaiter(s)
      this.refresh(t)
    }
  }

  /** Pairs waiting sessions with ready jobs, best job first (ref:prot.c process_queue). */
  processQueue(): void {
    for (;;) {
      const t = this.eligible.peek()
      let j = t?.ready.peek()
      let s: Session | undefined
      // Wide waiters compete with per-tube ones: the best job goes first; on
      // the same job, the tube's own waiter is served first.
      for (const w of this.wideWaiters) {
        const wj = this.readyIndex.bestFor(w.watching, (x) => w.watches(x))
        if (wj !== undefined && (j === undefined || byPriority(wj, j))) {
          j = wj
          s = w
        }
      }
      if (j === undefined) return
      if (s === undefined) s = t!.takeWaiter()!
      // A wide waiter, and the tube had no waiter of its own: as the only one
      // in the reference's list, ms_take would leave the index at 1.
      else if (j.tube.waiting.length === 0) j.tube.waitTake = 1
      // A weighted waiter draws its tube (j's tube has a job, so one is drawn).
      if (s.weighted) j = this.ext!.weightedPick(s)!
      this.stopWaiting(s)
      this.removeReady(j)
      this.reserve(s, j, this.clock.now())
      s.waiter.jobReserved(j)
    }
  }

  /** current-waiting of a tube: its own waiters and the wide waiters that watch it. */
  waitingOn(t: Tube): number {
    let n = t.waiting.length
    for (const w of this.wideWaiters) if (w.watches(t)) n++
    return n
  }

  waitTimerFired(s: Session, now: number): void {
    if (!s.waiting) return
    if (this.deadlineSoon(s, now)) {
      this.stopWaiting(s)
      s.waiter.waitEnded(Reply.DEADLINE_SOON)
    } else if (s.waitUntil !== NO_WAIT_LIMIT && now >= s.waitUntil) {
      this.stopWaiting(s)
      s.waiter.waitEnded(Reply.TIMED_OUT)
    } else {
      this.scheduleWait(s, now)
    }
  }

  /** A half-closed client waiting in reserve hears TIMED_OUT (protocol.txt). */
  cancelWait(s: Session): boolean {
    if (!s.waiting) return false
    this.stopWaiting(s)
    return true
  }

  // --- timers ----------------------------------------------------------------

  jobTimerFired(j: Job, now: number): void {
    if (j.state === JobState.DELAYED) {
      this.removeDelayed(j)
      this.makeReady(j)
    } else if (j.state === JobState.RESERVED) {
      // TTR ran out: back to ready on time, whether or not its holder is talking.
      this.unreserve(j)
      j.timeouts++
      this.timeouts++
      j.tube.timeouts++
      if (j.tube.policy !== null && this.outOfRetries(j)) this.retire(j)
      else {
        this.makeReady(j)
        this.journal?.update(j)
      }
    } else {
      return
    }
    void now
    this.processQueue()
  }

  pauseEnded(t: Tube): void {
    t.paused = false
    t.pauseSecs = 0
    this.refresh(t)
    this.processQueue()
  }

  // --- commands on jobs ------------------------------------------------------

  /** A job the session may act on as its reserver, or undefined. */
  private heldBy(s: Session, id: number): Job | undefined {
    const j = this.jobs.get(id)
    return j !== undefined && j.state === JobState.RESERVED && j.reserver === s ? j : undefined
  }

  /**
   * Body compaction, spread over deletes: each one visits COMPACT_STEP job
   * slots, so a queue of millions of jobs never stops for the whole walk
   * (one walk over 1,000,000 jobs took 180 ms).
   */
  private compactBodies(): void {
    if (this.compaction === null) {
      if (!this.bodies.needsCompaction() || !this.bodies.beginCompaction()) return
      this.compaction = this.jobs.walk()
    }
    if (!this.compaction.step(COMPACT_STEP, this.relocateBody)) {
      this.compaction = null
      this.bodies.endCompaction()
    }
  }

  private readonly relocateBody = (j: Job): void => this.bodies.relocate(j)

  /** delete: ready, delayed, buried, or reserved by this session. */
  delete(s: Session, id: number): boolean {
    const j = this.jobs.get(id)
    if (j === undefined || (j.state === JobState.RESERVED && j.reserver !== s)) return false
    this.detach(j)
    j.state = JobState.INVALID
    this.jobs.delete(id)
    this.journal?.delete(j)
    j.tube.cmdDelete++
    if (j.ext !== null) {
      // Its key may free a slot, its group may complete: waiters may get jobs now.
      this.ext!.deleted(j)
      this.processQueue()
    }
    this.dropIfUnused(j.tube)
    this.bodies.release(j.slab, j.bodyLen)
    this.compactBodies()
    return true
  }

  release(s: Session, id: number, pri: number, delaySecs: number): boolean {
    const j = this.heldBy(s, id)
    if (j === undefined) return false
    this.unreserve(j)
    j.pri = pri
    j.delayMs = delaySecs * 1000
    j.releases++
    if (j.tube.policy !== null && this.outOfRetries(j)) this.retire(j)
    else {
      if (delaySecs > 0) this.makeDelayed(j, this.clock.now() + j.delayMs)
      else this.makeReady(j)
      this.journal?.update(j)
    }
    this.processQueue()
    return true
  }

  bury(s: Session, id: number, pri: number): boolean {
    const j = this.heldBy(s, id)
    if (j === undefined) return false
    this.unreserve(j)
    j.pri = pri
    this.makeBuried(j)
    this.journal?.update(j)
    if (j.ext !== null) this.processQueue() // its concurrency slot is free
    return true
  }

  touch(s: Session, id: number): boolean {
    const j = this.heldBy(s, id)
    if (j === undefined) return false
    j.deadline = this.clock.now() + j.ttrMs
    s.deadlines.update(j)
    this.wheel.schedule(j, j.deadline)
    return true
  }

  /** kick <n> on the used tube: buried jobs if it has any, else delayed ones. */
  kick(s: Session, n: number): number {
    const t = s.used
    let k = 0
    if (t.buried.size > 0) {
      for (; k < n && t.buried.head !== null; k++) this.kickOne(t.buried.head)
    } else {
      for (let j = t.delayed.peek(); k < n && j !== undefined; j = t.delayed.peek(), k++) this.kickOne(j)
    }
    return k
  }

  /** kick-job <id>: a buried or delayed job in any tube. */
  kickJob(id: number): boolean {
    const j = this.jobs.get(id)
    if (j === undefined || (j.state !== JobState.BURIED && j.state !== JobState.DELAYED)) return false
    this.kickOne(j)
    return true
  }

  private kickOne(j: Job): void {
    this.detach(j)
    j.kicks++
    this.makeReady(j)
    this.journal?.update(j)
    this.processQueue()
  }

  /** pause-tube: false if the tube does not exist (it is never created). */
  pause(name: string, secs: number): boolean {
    const t = this.tubes.get(name)
    if (t === undefined) return false
    t.cmdPause++
    if (secs === 0) {
      // The reference pauses for 1 ns and lifts it on its next tick, before
      // it reads another command: so at once.
      this.wheel.cancel(t)
      this.pauseEnded(t)
      return true
    }
    t.paused = true
    t.pauseSecs = secs
    t.pauseUntil = this.clock.now() + secs * 1000
    this.wheel.schedule(t, t.pauseUntil)
    this.refresh(t)
    return true
  }

  // --- for the extensions (queue/extensions/) ----------------------------------

  /** max-retries: the job's timeouts + releases reached its tube's limit. */
  private outOfRetries(j: Job): boolean {
    const n = j.tube.policy!.maxRetries
    return n > 0 && j.timeouts + j.releases >= n
  }

  /**
   * A job out of retries (unreserved, in no structure): buried, or moved to
   * the dead-letter tube as a new job. The copy is journaled before the
   * original's delete, so a crash between the two records keeps both, never
   * neither. A tagged job, or one the journal has no room for, is buried.
   */
  private retire(j: Job): void {
    const p = j.tube.policy!
    p.retired++
    const to = p.deadLetter
    if (to === null || to === j.tube.name || j.ext !== null || (this.journal !== null && !this.journal.canPut())) {
      this.makeBuried(j)
      this.journal?.update(j)
      return
    }
    const t = this.tube(to)
    const k = new Job(this.allocateId(), j.pri, 0, j.ttrMs, j.slab, j.bodyOff, j.bodyLen, t, j.createdAt)
    k.reserves = j.reserves
    k.timeouts = j.timeouts
    k.releases = j.releases
    k.buries = j.buries
    k.kicks = j.kicks
    k.origin = { tube: j.tube.name, id: j.id }
    this.jobs.set(k.id, k)
    t.totalJobs++
    this.totalJobs++
    this.makeReady(k)
    this.journal?.put(k)
    // The original goes without its body, which is the copy's now.
    j.state = JobState.INVALID
    this.jobs.delete(j.id)
    this.journal?.delete(j)
    this.dropIfUnused(j.tube)
  }

  /** max-jobs: a put into `t` now would pass its limit (TUBE_FULL). */
  tubeFull(t: Tube): boolean {
    const p = t.policy
    if (p === null || p.maxJobs === 0 || t.jobCount < p.maxJobs) return false
    p.refused++
    return true
  }

  /**
   * A put into a fan-out source (its body read into `slab` at `off`): one
   * new job in each target tube instead, ids consecutive, the first keeping
   * the body's space and the others a copy. All or none: TUBE_FULL if a
   * target is at its max-jobs, OUT_OF_MEMORY if the journal has no room;
   * journaled in one record where the engine has one (putAll).
   */
  putFanOut(targets: readonly string[], pri: number, delaySecs: number, ttrSecs: number, slab: Slab, off: number, len: number): Job[] | Buffer {
    const refuse = (reply: Buffer, made: readonly Tube[]): Buffer => {
      this.bodies.release(slab, len)
      for (const t of made) this.dropIfUnused(t)
      return reply
    }
    if (this.journal !== null && !this.journal.canPut()) return refuse(Reply.OUT_OF_MEMORY, [])
    const tubes = targets.map((name) => this.tube(name))
    for (const t of tubes) if (this.tubeFull(t)) return refuse(TUBE_FULL, tubes)
    const now = this.clock.now()
    const jobs: Job[] = []
    for (let i = 0; i < tubes.length; i++) {
      let sl = slab
      let o = off
      if (i > 0) {
        sl = this.bodies.slabFor(len)
        o = sl.take(len)
        slab.buf.copy(sl.buf, o, off, off + len)
      }
      jobs.push(new Job(this.allocateId(), pri, delaySecs * 1000, Math.max(ttrSecs * 1000, MIN_TTR_MS), sl, o, len, tubes[i]!, now))
    }
    for (const j of jobs) {
      this.jobs.set(j.id, j)
      j.tube.totalJobs++
      this.totalJobs++
      if (j.delayMs > 0) this.makeDelayed(j, now + j.delayMs)
      else this.makeReady(j)
    }
    const journal = this.journal
    if (journal !== null) {
      if (journal.putAll !== undefined) journal.putAll(jobs)
      else for (const j of jobs) journal.put(j)
    }
    this.processQueue()
    return jobs
  }

  /** The policy of a tube name, made if needed (tube-policy); the tube, if it exists, sees it. */
  policyFor(name: string): TubePolicy {
    const m = (this.policies ??= new Map())
    let p = m.get(name)
    if (p === undefined) {
      p = new TubePolicy(name)
      m.set(name, p)
      const t = this.tubes.get(name)
      if (t !== undefined) t.policy = p
    }
    return p
  }

  /** Drops a tube name's policy (delete-tube, or every limit set to 0), journaled. */
  dropPolicy(name: string): void {
    if (this.policies?.delete(name) !== true) return
    const t = this.tubes.get(name)
    if (t !== undefined) t.policy = null
    this.journal?.policy?.({ tube: name, maxRetries: 0, deadLetter: null, maxJobs: 0, fanOut: [] })
  }

  /** tube-policy changed `p`: journaled, or dropped when nothing is set any more. */
  policyChanged(p: TubePolicy): void {
    if (p.empty) return this.dropPolicy(p.tube)
    this.journal?.policy?.(p)
  }

  /**
   * A stored policy (replay). Ignored without --extensions, where no tube has
   * a policy (the reference's wire); the store keeps it for a start with it.
   */
  restorePolicy(s: RestoredPolicy): void {
    if (this.ext === null) return
    if (noPolicy(s)) {
      if (this.policies?.delete(s.tube) === true) {
        const t = this.tubes.get(s.tube)
        if (t !== undefined) t.policy = null
      }
      return
    }
    const p = this.policyFor(s.tube)
    p.maxRetries = s.maxRetries
    p.deadLetter = s.deadLetter
    p.maxJobs = s.maxJobs
    p.fanOut = [...s.fanOut]
  }

  /**
   * The jobs of one flush-tube slice, deleted as `delete` would, whoever
   * holds them, and journaled together (Journal.deleteMany: one record);
   * their tube is left for the caller to drop.
   */
  removeAll(jobs: readonly Job[]): void {
    if (jobs.length === 0) return
    let tagged = false
    for (const j of jobs) {
      this.detach(j)
      j.state = JobState.INVALID
      this.jobs.delete(j.id)
    }
    const journal = this.journal
    if (journal !== null) {
      if (journal.deleteMany !== undefined) journal.deleteMany(jobs)
      else for (const j of jobs) journal.delete(j)
    }
    for (const j of jobs) {
      if (j.ext !== null) {
        this.ext!.deleted(j)
        tagged = true
      }
      this.bodies.release(j.slab, j.bodyLen)
    }
    // Keys freed, groups completed: waiters may get jobs now.
    if (tagged) this.processQueue()
  }

  /** A step of body compaction, as a delete takes (once per flush slice rather than per job). */
  compactSome(): void {
    this.compactBodies()
  }

  /** Drops `t` if nothing references it any more (after a flush). */
  dropTubeIfUnused(t: Tube): void {
    this.dropIfUnused(t)
  }

  /** The next job id to be handed out (a flush leaves jobs put after it began). */
  get nextId(): number {
    return this.nextJobId
  }

  /** reprioritize: a ready or delayed job's priority, O(log n); false for any other state. */
  reprioritize(id: number, pri: number): boolean {
    const j = this.jobs.get(id)
    if (j === undefined) return false
    if (j.state === JobState.READY) {
      this.removeReady(j)
      j.pri = pri
      this.makeReady(j)
    } else if (j.state === JobState.DELAYED) {
      j.pri = pri // the delay heap is ordered by due time
    } else {
      return false
    }
    this.journal?.update(j)
    this.processQueue()
    return true
  }

  /** redelay: a ready or delayed job is delayed `secs` from now (0: ready now), O(log n). */
  redelay(id: number, secs: number): boolean {
    const j = this.jobs.get(id)
    if (j === undefined) return false
    if (j.state === JobState.READY) this.removeReady(j)
    else if (j.state === JobState.DELAYED) this.removeDelayed(j)
    else return false
    j.delayMs = secs * 1000
    if (secs > 0) this.makeDelayed(j, this.clock.now() + j.delayMs)
    else this.makeReady(j)
    this.journal?.update(j)
    this.processQueue()
    return true
  }

  /** Re-files a tube whose ready heap an extension changed. */
  refreshTube(t: Tube): void {
    this.refresh(t)
  }

  /** A held job's group completed: it becomes ready (the caller journals and pairs). */
  releaseHeld(j: Job): void {
    this.makeReady(j)
  }

  /**
   * One job for the session now, or undefined: no waiting and no
   * DEADLINE_SOON (reserve-batch takes what is there).
   */
  reserveReady(s: Session): Job | undefined {
    const best = s.weighted ? this.ext!.weightedPick(s) : this.readyIndex.bestFor(s.watching, (t) => s.watches(t))
    if (best === undefined) return undefined
    this.markWorker(s)
    best.tube.waitTake = 1 // a reserve served at once, as in reserveOrWait
    this.removeReady(best)
    this.reserve(s, best, this.clock.now())
    return best
  }

  // --- peeking -----------------------------------------------------------------

  /** peek <id> and stats-job: any state, and a put whose body is still arriving. */
  peek(id: number): Job | undefined {
    return this.jobs.get(id) ?? (this.arriving.size > 0 ? this.arriving.get(id) : undefined)
  }

  peekReady(s: Session): Job | undefined {
    return s.used.ready.peek()
  }

  peekDelayed(s: Session): Job | undefined {
    return s.used.delayed.peek()
  }

  peekBuried(s: Session): Job | undefined {
    return s.used.buried.head ?? undefined
  }
}

/** The restored job `j` is the one a record describes again (a compaction copies jobs whole). */
function sameJob(j: Job, f: RestoredFields, tube: string, src: Buffer, start: number, end: number): boolean {
  return (
    j.tube.name === tube &&
    j.ttrMs === f.ttrMs &&
    j.createdAt === f.createdAt &&
    j.bodyLen === end - start + 2 &&
    j.slab.buf.compare(src, start, end, j.bodyOff, j.bodyOff + j.bodyLen - 2) === 0
  )
}

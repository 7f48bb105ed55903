/**
 * Where job bodies live: packed one after another into large shared slabs
 * instead of one Buffer per job. A Buffer costs about 100 bytes of object on
 * top of its data; a slab costs nothing per job beyond the job's offset and
 * length (PERFORMANCE.md: "bodies packed into shared slabs", 1.55x -> 1.13x
 * the reference's memory per job).
 *
 * Slab bytes are never overwritten while something may still read them: a
 * view of a body handed to a socket write or a store stays valid for as long
 * as it is referenced, whatever happens to the job meanwhile. Space is only
 * ever appended; a slab whose bodies are all gone is dropped, or reused (from
 * its start) only if no view of it ever left the arena (`Slab.shared`) and
 * none is on its way out (`Slab.viewsPending`). Reuse matters in a steady
 * state with large bodies: a fresh slab costs a page fault per 4 KiB and
 * counts toward V8's next full collection (README, the 4 KiB rows), where the
 * reference's malloc reuses what free gave back. The stores borrow their
 * views (`Job.lendBody`, counted until their write returns: PostgreSQL's when
 * its commit does). Replies copy bodies under 2 KiB and count their views of larger
 * ones until the kernel took them (server/output.ts).
 *
 * Deleting jobs leaves holes. A slab with no live bytes is dropped at once;
 * when the holes add up to more than the live bytes (and at least
 * COMPACT_MIN), a compaction copies the survivors of mostly-empty slabs into
 * the current one, so one long-lived job cannot pin a whole slab forever.
 * It can run in steps (begin, relocate each holder, end), so a queue of
 * millions of jobs never stops for the whole walk.
 */
import { copyBytes } from '../util/bytes.js'

/** Slab size: large enough that per-slab overhead is nothing, small enough to free memory in steps. Bodies over 1/8 of it get a slab of their own (never compacted). */
const SLAB_SIZE = 1024 * 1024
/** Do not bother compacting until this many bytes are dead. */
const COMPACT_MIN = 32 * 1024 * 1024
/** A slab with fewer live bytes than this share of its size gets its survivors moved. */
const SPARSE = 0.5
/** Emptied slabs kept for the next ones: enough for a steady state, little memory when idle. */
const MAX_SPARES = 2

export class Slab {
  readonly buf: Buffer
  /** Bytes handed out (the next body starts here). */
  used = 0
  /** Bytes handed out and not yet released. */
  live = 0
  /** A view of these bytes may outlive their bodies (a store's record, a reply the socket kept): never reused. */
  shared = false
  /** Views not yet known to be done with: in a reply batch (server/output.ts), or lent to a store's write (`Job.lendBody`). */
  viewsPending = 0

  constructor(size: number) {
    this.buf = Buffer.allocUnsafeSlow(size)
  }

  /** Claims n bytes; returns their offset. The caller checked `room`. */
  take(n: number): number {
    const off = this.used
    this.used += n
    this.live += n
    return off
  }

  room(): number {
    return this.buf.length - this.used
  }
}

/**
 * Views counted in `viewsPending` (one entry per view) are done with: written,
 * or (`kept`) in a socket's queue for as long as it likes, when their slabs
 * are never reused.
 */
export function settleViews(slabs: readonly Slab[], kept: boolean): void {
  for (const slab of slabs) {
    slab.viewsPending--
    if (kept) slab.shared = true
  }
}

/** Something holding a body in the arena, for compaction to move. */
export interface BodyHolder {
  slab: Slab
  bodyOff: number
  readonly bodyLen: number
}

export interface ArenaSizes {
  readonly slabSize: number
  /** Dead bytes below which `needsCompaction` stays false. */
  readonly compactMin: number
}

export class BodyArena {
  private readonly slabSize: number
  private readonly ownSlabOver: number
  private readonly compactMin: number
  private current: Slab
  /** Every slab with live bytes (the current one always). */
  private readonly slabs = new Set<Slab>()
  /** Bytes of all kept slabs, and the live ones among them. */
  private allocated: number
  private liveBytes = 0
  /** Dead bytes needed before the next compaction. */
  private compactAt: number
  /** Compactions finished. */
  private compactions = 0
  /** During a compaction: the slabs being emptied. */
  private sparse: Set<Slab> | null = null
  /** Emptied full-size slabs nothing outside reads, for the next current slab. */
  private readonly spares: Slab[] = []

  constructor(sizes: ArenaSizes = { slabSize: SLAB_SIZE, compactMin: COMPACT_MIN }) {
    this.slabSize = sizes.slabSize
    this.ownSlabOver = sizes.slabSize / 8
    this.compactMin = sizes.compactMin
    this.current = new Slab(this.slabSize)
    this.slabs.add(this.current)
    this.allocated = this.slabSize
    this.compactAt = this.compactMin
  }

  /** The slab to take n bytes from: `arena.slabFor(n).take(n)`. */
  slabFor(n: number): Slab {
    this.liveBytes += n
    if (n > this.ownSlabOver) {
      const own = new Slab(n)
      this.slabs.add(own)
      this.allocated += n
      return own
    }
    if (this.current.room() < n) {
      this.current = this.spares.pop() ?? new Slab(this.slabSize)
      this.slabs.add(this.current)
      this.allocated += this.slabSize
    }
    return this.current
  }

  /** Copies a body in (replay and restore): the holder's fields are set by the caller from the return. */
  copyIn(body: Buffer): { slab: Slab; off: number } {
    const slab = this.slabFor(body.length)
    const off = slab.take(body.length)
    body.copy(slab.buf, off)
    return { slab, off }
  }

  /** n bytes at the slab are no longer needed. */
  release(slab: Slab, n: number): void {
    slab.live -= n
    this.liveBytes -= n
    if (slab.live !== 0) return
    const reusable = !slab.shared && slab.viewsPending === 0 && this.sparse === null
    if (slab === this.current) {
      // Nothing in it is read any more: fill it again from the start.
      if (reusable) slab.used = 0
      return
    }
    this.slabs.delete(slab)
    this.allocated -= slab.buf.length
    if (reusable && slab.buf.length === this.slabSize && this.spares.length < MAX_SPARES) {
      slab.used = 0
      this.spares.push(slab)
    }
  }

  /**
   * True when enough space is dead that a compaction is worth a walk over the
   * jobs: more dead than live bytes (beyond one slab: below that every slab
   * may be half full and there is nothing to move), and at least compactMin
   * more dead bytes than right after the last compaction, so each walk is
   * paid for by that many bytes of deletes. False while one is under way.
   */
  needsCompaction(): boolean {
    if (this.sparse !== null) return false
    const dead = this.allocated - this.liveBytes
    return dead > this.compactAt && dead > this.liveBytes + this.slabSize
  }

  /**
   * Starts a compaction: picks the slabs to empty (less than half live). The
   * caller then passes every live holder to `relocate`, over as many calls as
   * it likes (new bodies never go to those slabs), and calls `endCompaction`.
   * Returns false, and ends at once, when no slab qualifies.
   */
  beginCompaction(): boolean {
    const sparse = new Set<Slab>()
    for (const s of this.slabs) {
      if (s !== this.current && s.buf.length === this.slabSize && s.live < s.buf.length * SPARSE) sparse.add(s)
    }
    this.sparse = sparse
    if (sparse.size > 0) return true
    this.endCompaction()
    return false
  }

  /** Moves the holder's body to the current slab if it sits in a slab being emptied. */
  relocate(h: BodyHolder): void {
    const from = h.slab
    if (!this.sparse!.has(from)) return
    const to = this.slabFor(h.bodyLen)
    // A new current slab is never in `sparse`, so nothing moves twice.
    const off = to.take(h.bodyLen)
    copyBytes(from.buf, to.buf, off, h.bodyOff, h.bodyOff + h.bodyLen)
    h.slab = to
    h.bodyOff = off
    this.release(from, h.bodyLen)
  }

  endCompaction(): void {
    this.sparse = null
    this.compactions++
    this.compactAt = this.allocated - this.liveBytes + this.compactMin
  }

  /** A whole compaction in one call (tools and tests; the registry spreads it over deletes). */
  compact(holders: Iterable<BodyHolder>): void {
    if (!this.beginCompaction()) return
    for (const h of holders) this.relocate(h)
    this.endCompaction()
  }

  /** Lets go of the spare slabs (after a drain, when they would only hold memory). */
  dropSpares(): void {
    this.spares.length = 0
  }

  /** Bytes of bodies held now. */
  get live(): number {
    return this.liveBytes
  }

  /** `slabs` and `allocated` count the slabs holding bodies; `spares` the emptied ones kept for reuse. */
  stats(): { slabs: number; allocated: number; live: number; compactions: number; spares: number } {
    return { slabs: this.slabs.size, allocated: this.allocated, live: this.liveBytes, compactions: this.compactions, spares: this.spares.length }
  }
}

/**
 * Where job bodies live: packed one after another into large shared slabs
 * instead of one Buffer per job. A Buffer costs about 100 bytes of object on
 * top of its data; a slab costs nothing per job beyond the job's offset and
 * length (PERFORMANCE.md: "bodies packed into shared slabs", 1.55x -> 1.13x
 * the reference's memory per job).
 *
 * Slab bytes are written once and never overwritten: space is only ever
 * appended, and a slab whose jobs are gone is dropped, not reused. So a view
 * of a body handed to a socket write or a store stays valid for as long as it
 * is referenced, whatever happens to the job meanwhile.
 *
 * Deleting jobs leaves holes. A slab with no live bytes is dropped at once;
 * when the holes add up to more than the live bytes (and at least
 * COMPACT_MIN), `compact` copies the survivors of mostly-empty slabs into the
 * current one, so one long-lived job cannot pin a whole slab forever.
 */

/** Slab size: large enough that per-slab overhead is nothing, small enough to free memory in steps. Bodies over 1/8 of it get a slab of their own (never compacted). */
const SLAB_SIZE = 1024 * 1024
/** Do not bother compacting until this many bytes are dead. */
const COMPACT_MIN = 32 * 1024 * 1024
/** A slab with fewer live bytes than this share of its size gets its survivors moved. */
const SPARSE = 0.5

export class Slab {
  readonly buf: Buffer
  /** Bytes handed out (the next body starts here). */
  used = 0
  /** Bytes handed out and not yet released. */
  live = 0

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
      this.current = new Slab(this.slabSize)
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
    if (slab.live === 0 && slab !== this.current) {
      this.slabs.delete(slab)
      this.allocated -= slab.buf.length
    }
  }

  /**
   * True when enough space is dead that `compact` is worth a walk over the
   * jobs: more dead than live bytes (beyond one slab: below that every slab
   * may be half full and there is nothing to move), and at least compactMin
   * more dead bytes than right after the last compaction, so each walk is
   * paid for by that many bytes of deletes.
   */
  needsCompaction(): boolean {
    const dead = this.allocated - this.liveBytes
    return dead > this.compactAt && dead > this.liveBytes + this.slabSize
  }

  /**
   * Moves the bodies of the given holders that sit in sparse slabs into the
   * current slab. The caller passes every live holder; slabs left with no
   * live bytes are then dropped by `release`.
   */
  compact(holders: Iterable<BodyHolder>): void {
    const sparse = new Set<Slab>()
    for (const s of this.slabs) {
      if (s !== this.current && s.buf.length === this.slabSize && s.live < s.buf.length * SPARSE) sparse.add(s)
    }
    if (sparse.size > 0) this.move(holders, sparse)
    this.compactAt = this.allocated - this.liveBytes + this.compactMin
  }

  private move(holders: Iterable<BodyHolder>, sparse: Set<Slab>): void {
    for (const h of holders) {
      const from = h.slab
      if (!sparse.has(from)) continue
      const to = this.slabFor(h.bodyLen)
      // A new current slab is never in `sparse`, so nothing moves twice.
      const off = to.take(h.bodyLen)
      from.buf.copy(to.buf, off, h.bodyOff, h.bodyOff + h.bodyLen)
      h.slab = to
      h.bodyOff = off
      this.release(from, h.bodyLen)
    }
  }

  stats(): { slabs: number; allocated: number; live: number } {
    return { slabs: this.slabs.size, allocated: this.allocated, live: this.liveBytes }
  }
}

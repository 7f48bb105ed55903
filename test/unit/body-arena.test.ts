/**
 * The body arena against a model: bodies written through it always read
 * back intact, whatever deletes and compactions happened meanwhile, and the
 * memory it keeps follows the live bytes.
 */
import { describe, expect, it } from 'vitest'
import { BodyArena, type BodyHolder, type Slab } from '../../src/queue/body-arena.js'
import { Registry } from '../../src/queue/registry.js'
import { TimingWheel } from '../../src/queue/timing-wheel.js'
import { ManualClock } from '../../src/util/clock.js'
import { prng } from '../helpers/prng.js'
import { putBody } from '../helpers/put-body.js'

const SIZES = { slabSize: 4096, compactMin: 8192 }

/** Fills a shared slab with eight 500-byte bodies (over 512, slabSize / 8, a body gets a slab of its own) and returns it. */
function fillSlab(a: BodyArena): Slab {
  const s = a.slabFor(500)
  s.take(500)
  for (let i = 1; i < 8; i++) expect(a.slabFor(500).take(500)).toBe(i * 500)
  return s
}

class Holder implements BodyHolder {
  slab: Slab
  bodyOff: number
  readonly bodyLen: number
  readonly expected: Buffer
  constructor(slab: Slab, bodyOff: number, bodyLen: number, expected: Buffer) {
    this.slab = slab
    this.bodyOff = bodyOff
    this.bodyLen = bodyLen
    this.expected = expected
  }
  /** A view that may outlive the body, marked as Job.body marks it. */
  bytes(): Buffer {
    this.slab.shared = true
    return this.slab.buf.subarray(this.bodyOff, this.bodyOff + this.bodyLen)
  }
}

function bodyOf(seed: number, len: number): Buffer {
  const b = Buffer.allocUnsafe(len)
  for (let i = 0; i < len; i++) b[i] = (seed * 31 + i * 7) & 0xff
  return b
}

describe('BodyArena', () => {
  it('packs small bodies into shared slabs and gives large ones their own', () => {
    const a = new BodyArena(SIZES)
    const first = a.slabFor(100)
    const o1 = first.take(100)
    const o2 = a.slabFor(100).take(100)
    expect(o1).toBe(0)
    expect(o2).toBe(100)
    const big = a.slabFor(600) // over slabSize / 8
    expect(big.take(600)).toBe(0)
    expect(big).not.toBe(first)
    expect(big.buf.length).toBe(600)
    expect(a.stats()).toMatchObject({ slabs: 2, allocated: 4096 + 600, live: 800 })
    a.release(big, 600)
    expect(a.stats()).toMatchObject({ slabs: 1, allocated: 4096, live: 200 })
  })

  it('drops a full slab once its last body is released, and never the current one', () => {
    const a = new BodyArena(SIZES)
    const s1 = a.slabFor(4000)
    s1.take(4000)
    const s2 = a.slabFor(200) // does not fit: a new current slab
    s2.take(200)
    expect(s2).not.toBe(s1)
    a.release(s2, 200)
    expect(a.stats().slabs).toBe(2) // s2 is current: kept for the next body
    a.release(s1, 4000)
    expect(a.stats()).toMatchObject({ slabs: 1, allocated: 4096, live: 0 })
  })

  it('reuses an emptied slab that nothing outside reads, from its start, keeping at most two', () => {
    const a = new BodyArena(SIZES)
    const full = (): Slab => fillSlab(a)
    const slabs = [full(), full(), full(), full()]
    expect(new Set(slabs).size).toBe(4)
    for (const s of slabs.slice(0, 3)) a.release(s, 4000)
    expect(a.stats()).toMatchObject({ slabs: 1, allocated: 4096, live: 4000, spares: 2 })
    // The next slabs are the spares (last kept first), then new ones; the third emptied was dropped.
    const next = [full(), full(), full()]
    expect(next[0]).toBe(slabs[1])
    expect(next[1]).toBe(slabs[0])
    expect(slabs).not.toContain(next[2])
    expect(next[0]!.used).toBe(4000)
    expect(a.stats()).toMatchObject({ slabs: 4, spares: 0 })
    // Spares are let go when the reclaimer collects after a drain.
    a.release(next[0]!, 4000)
    expect(a.stats().spares).toBe(1)
    a.dropSpares()
    expect(a.stats().spares).toBe(0)
    // The current slab, once empty, is filled again from its start.
    a.release(next[2]!, 4000)
    expect(a.slabFor(100)).toBe(next[2])
    expect(next[2]!.take(100)).toBe(0)
  })

  it('never reuses a slab a view of which may still be read, nor one with a view on its way out', () => {
    const a = new BodyArena(SIZES)
    const first = a.slabFor(500)
    const h = new Holder(first, first.take(500), 500, bodyOf(1, 500))
    h.expected.copy(first.buf, h.bodyOff)
    const view = h.bytes() // as a store's record holds it
    for (let i = 1; i < 8; i++) a.slabFor(500).take(500)
    const pending = fillSlab(a)
    pending.viewsPending++ // as a reply batch not yet settled holds it
    fillSlab(a)
    a.release(first, 4000)
    a.release(pending, 4000)
    expect(a.stats().spares).toBe(0)
    for (let i = 0; i < 8; i++) {
      const s = fillSlab(a)
      expect(s).not.toBe(first)
      expect(s).not.toBe(pending)
      s.buf.fill(0xee)
    }
    expect(view.equals(h.expected)).toBe(true)
    // Nor the current one: a shared current slab emptied is not rewound.
    const cur = fillSlab(a)
    cur.shared = true
    a.release(cur, 4000)
    expect(cur.used).toBe(4000)
  })

  it('keeps nothing for reuse while a compaction is under way', () => {
    const a = new BodyArena(SIZES)
    const hs: Holder[] = []
    for (let i = 0; i < 120; i++) {
      const slab = a.slabFor(100)
      const off = slab.take(100)
      hs.push(new Holder(slab, off, 100, bodyOf(i, 100)))
    }
    for (const [i, h] of hs.entries()) if (i % 10 !== 0) a.release(h.slab, 100)
    const spares = a.stats().spares
    expect(a.beginCompaction()).toBe(true)
    for (const [i, h] of hs.entries()) if (i % 10 === 0) a.relocate(h)
    a.endCompaction()
    expect(a.stats().spares).toBe(spares)
  })

  it('keeps every body intact through random deletes and compactions', () => {
    for (const seed of [1, 2, 3, 4]) {
      const rnd = prng(seed)
      const a = new BodyArena(SIZES)
      const live: Holder[] = []
      let compactions = 0
      for (let step = 0; step < 20000; step++) {
        if (live.length === 0 || rnd.chance(0.52)) {
          const len = rnd.chance(0.02) ? 513 + rnd.int(2000) : 2 + rnd.int(300)
          const body = bodyOf(step, len)
          const slab = a.slabFor(len)
          const off = slab.take(len)
          body.copy(slab.buf, off)
          live.push(new Holder(slab, off, len, body))
        } else {
          const i = rnd.int(live.length)
          const h = live[i]!
          live[i] = live[live.length - 1]!
          live.pop()
          a.release(h.slab, h.bodyLen)
          if (a.needsCompaction()) {
            a.compact(live)
            compactions++
            expect(a.needsCompaction()).toBe(false)
          }
        }
      }
      for (const h of live) expect(h.bytes().equals(h.expected)).toBe(true)
      const { allocated, live: liveBytes } = a.stats()
      expect(liveBytes).toBe(live.reduce((n, h) => n + h.bodyLen, 0))
      expect(compactions).toBeGreaterThan(0)
      // Compaction bounds the dead space by the live bytes (plus the threshold).
      expect(allocated - liveBytes).toBeLessThanOrEqual(Math.max(liveBytes, SIZES.compactMin) + 2 * SIZES.slabSize)
    }
  })

  it('leaves a view handed out before a compaction unchanged', () => {
    const a = new BodyArena(SIZES)
    const holders: Holder[] = []
    for (let i = 0; i < 200; i++) {
      const body = bodyOf(i, 100)
      const slab = a.slabFor(100)
      const off = slab.take(100)
      body.copy(slab.buf, off)
      holders.push(new Holder(slab, off, 100, body))
    }
    const kept = holders[5]!
    const view = kept.bytes() // e.g. queued in a socket
    const survivors = holders.filter((_, i) => i % 20 === 5)
    for (const h of holders) if (!survivors.includes(h)) a.release(h.slab, 100)
    expect(a.needsCompaction()).toBe(true)
    a.compact(survivors)
    expect(kept.slab.buf.buffer).not.toBe(view.buffer) // it moved
    for (const h of survivors) expect(h.bytes().equals(h.expected)).toBe(true)
    // Fill the arena again: the old view's bytes are never overwritten.
    for (let i = 0; i < 200; i++) a.slabFor(100).buf.fill(0xee, 0)
    expect(view.equals(kept.expected)).toBe(true)
  })
})

describe('Registry bodies', () => {
  it('serves the right bodies after deletes have compacted the arena', () => {
    const clock = new ManualClock(0)
    const r = new Registry(clock, new TimingWheel(0), new BodyArena(SIZES))
    const s = r.openSession({ jobReserved() {}, waitEnded() {} })
    const bodies = new Map<number, Buffer>()
    for (let i = 0; i < 20000; i++) {
      const body = Buffer.concat([bodyOf(i, 10 + (i % 90)), Buffer.from('\r\n')])
      const j = putBody(r, s, 0, 0, 60, body)!
      bodies.set(j.id, body)
      // Delete all but every 10th earlier job: slabs become sparse.
      if (i % 10 !== 0) {
        expect(r.delete(s, j.id)).toBe(true)
        bodies.delete(j.id)
      }
    }
    const { allocated, live, compactions } = r.bodies.stats()
    // Compactions run in steps of a few job slots per delete, between puts.
    expect(compactions).toBeGreaterThan(1)
    expect(allocated - live).toBeLessThanOrEqual(Math.max(live, SIZES.compactMin) + 4 * SIZES.slabSize)
    for (const [id, body] of bodies) expect(r.peek(id)!.body.equals(body)).toBe(true)
  })

  it('leaves the bytes of a job read as a view (as a store reads it) after the job is gone', () => {
    const r = new Registry(new ManualClock(0), new TimingWheel(0), new BodyArena(SIZES))
    const s = r.openSession({ jobReserved() {}, waitEnded() {} })
    const body = Buffer.concat([bodyOf(7, 200), Buffer.from('\r\n')])
    const j = putBody(r, s, 0, 0, 60, body)!
    const view = j.body
    expect(r.delete(s, j.id)).toBe(true)
    // Without the mark the emptied current slab would be filled again from its start.
    for (let i = 0; i < 40; i++) putBody(r, s, 0, 0, 60, Buffer.alloc(202, 0x5a))
    expect(view.equals(body)).toBe(true)
  })
})

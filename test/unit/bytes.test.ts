/**
 * The allocation-free byte helpers (util/bytes.ts) against Buffer's own
 * copy and subarray: the same bytes land in the same places, overlapping
 * ranges of one buffer included, and a cached view always shows what its
 * buffer holds now.
 */
import { describe, expect, it } from 'vitest'
import { copyBytes, PrefixViews } from '../../src/util/bytes.js'
import { prng } from '../helpers/prng.js'

const filled = (n: number, seed: number): Buffer => {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff
  return b
}

describe('copyBytes', () => {
  it('copies what Buffer#copy copies, and says how many bytes', () => {
    const rand = prng(7)
    for (let i = 0; i < 500; i++) {
      const src = filled(1 + rand.int(300), i)
      const from = rand.int(src.length)
      const to = from + rand.int(src.length - from + 1)
      const at = rand.int(50)
      const ours = filled(to - from + at + 10, 99)
      const theirs = Buffer.from(ours)
      expect(copyBytes(src, ours, at, from, to)).toBe(src.copy(theirs, at, from, to))
      expect(ours.equals(theirs)).toBe(true)
    }
  })

  it('moves overlapping ranges of one buffer as a memmove does', () => {
    for (const [at, from, to] of [[2, 0, 10], [0, 2, 12], [5, 5, 9]] as const) {
      const ours = filled(16, 3)
      const theirs = Buffer.from(ours)
      copyBytes(ours, ours, at, from, to)
      theirs.copy(theirs, at, from, to)
      expect(ours).toEqual(theirs)
    }
  })
})

describe('PrefixViews', () => {
  it('hands out one view per length, showing the buffer as it is now', () => {
    const buf = filled(8192, 1)
    const views = new PrefixViews(buf)
    const v = views.get(100)
    expect(views.get(100)).toBe(v)
    expect(v.length).toBe(100)
    expect(v.buffer).toBe(buf.buffer)
    buf[42] = 0xab
    expect(views.get(100)[42]).toBe(0xab)
    expect(views.get(0).length).toBe(0)
  })

  it('makes a fresh view above the cached lengths', () => {
    const buf = filled(8192, 2)
    const views = new PrefixViews(buf)
    const big = views.get(8000)
    expect(big.length).toBe(8000)
    expect(big.equals(buf.subarray(0, 8000))).toBe(true)
    expect(views.get(8000)).not.toBe(big)
  })
})

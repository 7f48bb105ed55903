/** crc32Range gives zlib's CRC-32 on both of its paths (table loop and zlib), from any offset, continued from any value. */
import { crc32 } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { crc32Range } from '../../src/store/binlog/crc.js'
import { prng } from '../helpers/prng.js'

describe('crc32Range', () => {
  it('equals zlib.crc32 for every length up to 600 bytes, at odd offsets, continued', () => {
    const rnd = prng(32)
    const buf = Buffer.alloc(1024)
    for (let i = 0; i < buf.length; i++) buf[i] = rnd.int(256)
    for (let len = 0; len <= 600; len++) {
      const start = len % 7
      const seed = crc32(buf.subarray(900, 900 + (len % 5)))
      expect(crc32Range(buf, start, start + len, seed)).toBe(crc32(buf.subarray(start, start + len), seed))
      expect(crc32Range(buf, start, start + len)).toBe(crc32(buf.subarray(start, start + len)))
    }
  })
})

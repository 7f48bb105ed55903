/**
 * A full disk, injected under the real fs: puts are refused (the server's
 * OUT_OF_MEMORY), acknowledged records stay intact, deletes still go out,
 * nothing queued is dropped, and the binlog recovers by itself when space
 * returns. The reference's `binlog disk full` and `binlog disk full delete`.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { BinlogFullError } from '../../src/store/binlog/errors.js'
import { nodeFs, type BinlogFs } from '../../src/store/io.js'
import { Model, WARN, tmpDir } from './helpers.js'

const enospc = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })

/** Writes fail with ENOSPC while `full`; `partial` writes half of the bytes first, as a real short write does. */
class FullFs {
  full = false
  partial = false
  /** Fail only this many more writev calls (then behave). */
  failNext = 0
  /** Fail only the plain writes (the reserve), not record writes. */
  reserveOnly = false
  failCreate = false
  readonly io: BinlogFs = {
    ...nodeFs,
    writevSync: (fd, bufs, pos) => {
      if (this.failNext > 0) {
        this.failNext--
        throw enospc()
      }
      if (!this.full || this.reserveOnly) return nodeFs.writevSync(fd, bufs, pos)
      if (this.partial) {
        const all = Buffer.concat(bufs)
        nodeFs.writeSync(fd, all, 0, all.length >> 1, pos)
        this.partial = false
        return all.length >> 1 // the short count; the next call reports ENOSPC
      }
      throw enospc()
    },
    writeSync: (fd, buf, off, len, pos) => {
      if (this.full) throw enospc()
      return nodeFs.writeSync(fd, buf, off, len, pos)
    },
    openSync: (p, flags, mode) => {
      if (this.failCreate && flags === 'wx') throw enospc()
      return nodeFs.openSync(p, flags, mode)
    },
  }
}

const until = async (cond: () => boolean, ms = 2000): Promise<void> => {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe('disk full', () => {
  it('refuses puts, keeps acknowledged and queued records, lets deletes through, recovers by itself', async () => {
    const f = new FullFs()
    const m = new Model(tmpDir(), { fs: f.io, fsyncMs: 0, retryMs: 10 })
    await m.open()
    const a = m.put('acked a')!
    m.put('acked b')
    await m.commit()
    const file = path.join(m.dir, 'binlog.1')
    const good = fs.readFileSync(file)

    f.full = true
    f.partial = true
    const c = m.put('accepted before the disk filled')!
    expect(c).not.toBeNull()
    let cDurable = false
    m.bl.whenDurable(m.bl.flush(), () => (cDurable = true))
    expect(cDurable).toBe(false) // not written: its reply waits
    // The short write was cut back: what is left is the file as it was, less (in a preallocated file) zeros.
    const left = fs.readFileSync(file)
    expect(left.equals(good.subarray(0, left.length))).toBe(true)
    expect(good.subarray(left.length).every((b) => b === 0)).toBe(true)
    expect(fs.existsSync(path.join(m.dir, 'reserve'))).toBe(false) // released to make room
    expect(m.bl.canPut()).toBe(false)
    expect(m.put('refused')).toBeNull() // -> OUT_OF_MEMORY
    expect(m.bl.stats().noSpace).toBe(true)
    const logged = m.lines.find((l) => /disk full/.test(l.msg))
    expect(logged).toMatchObject({ err: { code: 'TSB_ERR_BINLOG_FULL' } })
    m.delete(a) // deletes are still accepted
    m.bl.flush()

    f.full = false
    await until(() => cDurable && m.bl.canPut())
    expect(m.lines.some((l) => /space available again/.test(l.msg))).toBe(true)
    expect(fs.existsSync(path.join(m.dir, 'reserve'))).toBe(true)
    m.put('after recovery')
    await m.commit()
    const rec = await m.restart()
    expect(rec.map((r) => r.body.toString().trim())).toEqual(['acked b', 'accepted before the disk filled', 'after recovery'])
    expect(m.lines.some((l) => l.level === WARN && /torn/.test(l.msg))).toBe(false)
    expect(m.replayedNextId).toBe(6) // the refused put's id 4 is not handed out again
  })

  it('the space reserve lets the batch that hit ENOSPC go out at once', async () => {
    const f = new FullFs()
    // The retry that brings the reserve back must not beat the check below on a loaded machine.
    const m = new Model(tmpDir(), { fs: f.io, fsyncMs: 0, retryMs: 500 })
    await m.open()
    f.failNext = 1
    m.put('lands on the reserve')
    await m.commit() // written after the reserve was released
    expect(m.bl.canPut()).toBe(false) // until the reserve is back
    await until(() => m.bl.canPut(), 5000)
    expect(await m.restart()).toHaveLength(1)
  })

  it('starts refusing puts when there is no room for the reserve, and accepts once there is', async () => {
    const f = new FullFs()
    f.full = true
    f.reserveOnly = true
    const m = new Model(tmpDir(), { fs: f.io, retryMs: 10 })
    await m.open()
    expect(m.put('no')).toBeNull()
    f.full = false
    await until(() => m.bl.canPut())
    expect(m.put('yes')).not.toBeNull()
  })

  it('no room for even the first file: open throws BinlogFullError and releases the lock', async () => {
    const f = new FullFs()
    f.full = true
    const dir = tmpDir()
    await expect(new Model(dir, { fs: f.io }).open()).rejects.toThrow(BinlogFullError)
    await new Model(dir).open()
  })

  it('no room for a new file: appends to the current one past -s', async () => {
    const f = new FullFs()
    const m = new Model(tmpDir(), { fs: f.io, fileSize: 512 })
    await m.open()
    f.failCreate = true
    for (let i = 0; i < 10; i++) {
      m.put(`job ${i} `.repeat(10))
      await m.commit()
    }
    expect(m.bl.stats().currentIndex).toBe(1)
    expect(fs.statSync(path.join(m.dir, 'binlog.1')).size).toBeGreaterThan(512)
    expect(m.lines.some((l) => /no space for a new file/.test(l.msg))).toBe(true)
    f.failCreate = false
    expect(await m.restart()).toHaveLength(10)
  })
})

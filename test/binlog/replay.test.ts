/**
 * Replay of every state and transition, against both engines (the binlog and
 * the SQLite store): make changes through the store as the registry would,
 * close, open again, and compare `recovered` with the model. Real files,
 * real fsync. The binlog's compaction and file bookkeeping are checked for
 * the binlog alone.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { prng } from '../helpers/prng.js'
import { ENGINES, binlogEngine } from '../store/engines.js'
import { JS, Model, WARN, binlogFiles, expectedAll, plain } from './helpers.js'

describe.each(ENGINES)('$name', (engine) => {
  describe('replay restores', () => {
    it('ready and delayed puts with every field, and converts times to the monotonic clock', async () => {
      const m = new Model(undefined, {}, engine)
      await m.open()
      m.put('ready job', { pri: 5, tube: 'alpha', ttrMs: 120_000 })
      m.clock.advance(1234)
      m.put('delayed job', { pri: 4294967295, tube: 'beta', delayMs: 3_600_000 })
      await m.commit()
      const want = expectedAll(m)
      m.clock.advance(10_000)
      const rec = await m.restart()
      expect(plain(rec)).toEqual(want)
      const delayed = rec[1]!
      expect(delayed.state).toBe('delayed')
      expect(delayed.deadline).toBe(m.clock.now() + (delayed.readyAtWall - m.now()))
      expect(m.clock.now() - rec[0]!.createdAt).toBe(11_234) // age survives
      expect(m.replayedNextId).toBe(3)
    })

    it('a delayed job keeps its wall-clock due time; once past it comes back ready', async () => {
      const m = new Model(undefined, {}, engine)
      await m.open()
      const j = m.put('x', { delayMs: 10_000 })!
      await m.commit()
      const due = m.expected(j).readyAtWall
      m.clock.advance(4_000)
      let rec = await m.restart()
      expect(rec[0]).toMatchObject({ state: 'delayed', readyAtWall: due })
      expect(rec[0]!.deadline - m.clock.now()).toBe(6_000)
      m.clock.advance(6_000)
      rec = await m.restart()
      expect(rec[0]).toMatchObject({ state: 'ready', readyAtWall: 0, delayMs: 10_000 })
    })

    it('release, release with delay, TTR timeout and reserved-comes-back-ready with their counters', async () => {
      const m = new Model(undefined, {}, engine)
      await m.open()
      const a = m.put('a')!
      const b = m.put('b')!
      const c = m.put('c')!
      const d = m.put('d')!
      m.reserve(a)
      m.release(a, 7) // release, new priority
      m.reserve(b)
      m.release(b, 9, 60_000) // release with delay
      m.reserve(c)
      m.timeout(c) // TTR ran out
      m.reserve(c)
      m.reserve(d) // still reserved at shutdown
      await m.commit()
      const want = expectedAll(m)
      const rec = await m.restart()
      expect(plain(rec)).toEqual(want)
      expect(rec.map((r) => [r.id, r.state, r.pri, r.reserves, r.releases, r.timeouts])).toEqual([
        [1, 'ready', 7, 1, 1, 0],
        [2, 'delayed', 9, 1, 1, 0],
        [3, 'ready', 100, 2, 0, 1],
        [4, 'ready', 100, 1, 0, 0],
      ])
    })

    it('bury order, kick from buried and from delayed, delete', async () => {
      const m = new Model(undefined, {}, engine)
      await m.open()
      const js = Array.from({ length: 6 }, (_, i) => m.put(`job ${i}`)!)
      for (const i of [4, 1, 3, 0]) {
        m.reserve(js[i]!)
        m.bury(js[i]!, 50 + i)
      }
      m.kick(js[1]!) // buried -> ready
      const late = m.put('late', { delayMs: 99_000 })!
      m.kick(late) // delayed -> ready
      m.delete(js[5]!)
      m.reserve(js[3]!) // reserve-job of a buried job, then bury again: goes to the back
      m.bury(js[3]!)
      await m.commit()
      expect(m.buried).toEqual([5, 1, 4])
      const want = expectedAll(m)
      const rec = await m.restart()
      expect(plain(rec)).toEqual(want)
      expect(rec.filter((r) => r.state === 'buried').map((r) => r.id)).toEqual([5, 1, 4])
      expect(rec.find((r) => r.id === 2)).toMatchObject({ state: 'ready', kicks: 1, buries: 1 })
      expect(rec.find((r) => r.id === late.id)).toMatchObject({ state: 'ready', kicks: 1 })
      expect(rec.some((r) => r.id === 6)).toBe(false)
    })

    it.each([2, 65534, 65535, 65536, 1 << 20])('a %i-byte body (CRLF included)', async (n) => {
      const m = new Model(undefined, {}, engine)
      await m.open()
      const raw = Buffer.alloc(n - 2)
      for (let i = 0; i < raw.length; i++) raw[i] = (i * 7 + 3) & 0xff
      const before = m.put('before')!
      const j = m.put(raw)!
      const after = m.put('after')!
      await m.commit()
      const rec = await m.restart()
      expect(rec.map((r) => r.id)).toEqual([before.id, j.id, after.id])
      expect(rec[1]!.body.length).toBe(n)
      expect(rec[1]!.body.equals(j.body)).toBe(true)
    })

    it('bodies larger than the current -z still replay, with a warning', async () => {
      const m = new Model(undefined, { maxJobSize: 100 }, engine)
      await m.open()
      m.put('y'.repeat(500))
      await m.commit()
      expect((await m.restart())[0]!.body.length).toBe(502)
      expect(m.lines.some((l) => l.level === WARN && /larger than the current -z/.test(l.msg))).toBe(true)
    })
  })

  describe('ids', () => {
    it('are never reused, even after every job is deleted and every old file removed', async () => {
      const m = new Model(undefined, { fileSize: 2048 }, engine)
      await m.open()
      for (let i = 0; i < 20; i++) m.put(`job ${i}`)
      await m.commit()
      for (const j of [...m.jobs.values()]) m.delete(j)
      await m.commit()
      await m.restart()
      expect(m.recovered).toEqual([])
      expect(m.replayedNextId).toBe(21)
      if (engine === binlogEngine) {
        // Whatever old files remain, the newest file's header alone keeps the mark.
        m.bl.close()
        const files = binlogFiles(m.dir)
        for (const f of files.slice(0, -1)) fs.rmSync(path.join(m.dir, f))
        await m.open()
        expect(m.replayedNextId).toBe(21)
      }
      expect(m.put('next')!.id).toBe(21)
    })

    it('count ids refused by a put (disk full) and ids only seen in DELETE records', async () => {
      const m = new Model(undefined, {}, engine)
      await m.open()
      const j = m.put('a')!
      await m.commit()
      m.delete(j)
      m.nextId = 50
      m.put('b')
      await m.commit()
      expect(await m.restart()).toHaveLength(1)
      expect(m.replayedNextId).toBe(51)
    })
  })

  describe('replay with compaction (binlog) or many transactions (sqlite)', () => {
    it('a random workload with small files and restarts replays exactly', async () => {
      const rnd = prng(0xb1_0c)
      const m = new Model(undefined, { fileSize: 4096 }, engine)
      await m.open()
      for (let step = 0; step < 3000; step++) {
        const live = [...m.jobs.values()]
        const r = rnd.next()
        if (r < 0.3 || live.length < 5) {
          m.put(`body ${step} `.repeat(rnd.int(20)), { pri: rnd.int(2000), delayMs: rnd.chance(0.3) ? rnd.int(1e7) + 1 : 0, tube: rnd.pick(['default', 'a', 'b']) })
        } else {
          const j = rnd.pick(live)
          if (r < 0.55) m.delete(j)
          else if (j.state === JS.READY && r < 0.7) m.reserve(j)
          else if (j.state === JS.RESERVED) rnd.pick([() => m.release(j, rnd.int(10), rnd.chance(0.5) ? 5_000 : 0), () => m.bury(j), () => m.timeout(j)])()
          else if (j.state === JS.BURIED || j.state === JS.DELAYED) m.kick(j)
        }
        if (rnd.chance(0.2)) await m.commit()
        if (rnd.chance(0.003)) {
          await m.commit()
          const want = expectedAll(m)
          expect(plain(await m.restart())).toEqual(want)
        }
        m.clock.advance(rnd.int(50))
      }
      await m.commit()
      const want = expectedAll(m)
      if (engine === binlogEngine) {
        const before = m.bl.stats()
        expect(before.recordsMigrated).toBeGreaterThan(0)
        expect(before.oldestIndex).toBeGreaterThan(1)
      }
      expect(plain(await m.restart())).toEqual(want)
    })
  })
})

describe('binlog only', () => {
  it('fileOf names the file with the job\'s latest full record', async () => {
    const m = new Model(undefined, { fileSize: 1024 })
    await m.open()
    const j = m.put('x')!
    expect(m.bl.fileOf(j.id)).toBe(m.bl.stats().currentIndex)
    await m.commit()
    const first = m.bl.fileOf(j.id)
    for (let i = 0; i < 200; i++) {
      m.delete(m.put('churn '.repeat(20))!)
      await m.commit()
    }
    expect(m.bl.fileOf(j.id)).toBeGreaterThan(first) // migrated forward
    expect(m.bl.fileOf(9999)).toBe(0)
    const s = m.bl.stats()
    expect(s.oldestIndex).toBeLessThanOrEqual(m.bl.fileOf(j.id))
    expect(s.currentIndex).toBeGreaterThanOrEqual(m.bl.fileOf(j.id))
  })
})

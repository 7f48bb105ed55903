/**
 * The extension tags across a restart of the real server (`-b --extensions`),
 * for each engine: idempotency keys and cooldowns, held after-jobs and their
 * groups, concurrency keys, a satisfied after-job that a refilled group does
 * not hold again; with the binlog, a cooldown that compaction moves out of
 * old files survives them being removed; and a tagged store refuses to start
 * without --extensions, and to be converted (exit 5), so no tag is lost.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { cliFixture } from '../helpers/cli-fixture.js'
import { RawClient } from '../helpers/client.js'
import { spawnCli } from '../helpers/process.js'
import { ENGINES } from '../store/engines.js'

const fx = cliFixture('tsb-ext-restart-')
const tmpDir = (): string => fs.mkdtempSync(path.join(fx.tmp(), 'dir-'))

async function start(args: string[]): Promise<{ c: RawClient; stop: () => Promise<void> }> {
  const proc = spawnCli(args)
  const port = (await proc.listening(10_000)).port!
  const c = await RawClient.connect(port)
  return {
    c,
    stop: async () => {
      c.close()
      proc.signal('SIGTERM')
      await proc.exited(10_000)
    },
  }
}

describe.each(ENGINES)('$name', (engine) => {
  it('keeps keys, cooldowns, holds and concurrency keys across a restart', { timeout: 60_000 }, async () => {
    const dir = tmpDir()
    const args = ['-b', dir, ...engine.flags, '-p0', '-l127.0.0.1', '--extensions']
    let s = await start(args)
    const put = (tags: string, body = 'x'): Promise<string> => s.c.call(`put 0 0 60 ${body.length} ${tags}\r\n${body}\r\n`)
    expect(await put('idp:live')).toBe('INSERTED 1\r\n')
    expect(await put('idp:gone:3600')).toBe('INSERTED 2\r\n')
    expect(await s.c.call('delete 2\r\n')).toBe('DELETED\r\n')
    expect(await put('grp:g')).toBe('INSERTED 3\r\n')
    expect(await put('aft:g')).toBe('INSERTED 4\r\n') // held
    expect(await put('grp:h')).toBe('INSERTED 5\r\n')
    expect(await put('aft:h')).toBe('INSERTED 6\r\n')
    expect(await s.c.call('delete 5\r\n')).toBe('DELETED\r\n') // 6 is released
    expect(await put('con:k')).toBe('INSERTED 7\r\n')
    expect(await put('con:k')).toBe('INSERTED 8\r\n')
    await s.stop()

    s = await start(args)
    expect(await put('idp:live')).toBe('INSERTED 1 READY\r\n')
    expect(await put('idp:gone')).toBe('INSERTED 2 DELETED\r\n')
    expect(await s.c.yaml('stats-group g\r\n')).toBe('---\nname: "g"\npending: 1\nburied: 0\ncomplete: false\nwaiting-jobs: 1\n')
    expect((await s.c.stats('stats-job 4\r\n'))['state']).toBe('delayed')
    // h fills up again: 6 was released before, so it is not held again, now or after the next restart.
    expect(await put('grp:h')).toBe('INSERTED 11\r\n')
    await s.stop()

    s = await start(args)
    expect((await s.c.stats('stats-job 6\r\n'))['state']).toBe('ready')
    expect((await s.c.stats('stats-job 4\r\n'))['state']).toBe('delayed')
    // One of the two con:k jobs at a time; 4 stays held; 1, 3, 6, 11 are there.
    const batch = await s.c.call('reserve-batch 10\r\n')
    expect(batch).toBe('RESERVED_BATCH 5\r\n')
    const got: number[] = []
    for (let i = 0; i < 5; i++) {
      got.push(Number(/^RESERVED (\d+) 1\r\n$/.exec(await s.c.line())![1]))
      await s.c.read(3)
    }
    expect(got).toEqual([1, 3, 6, 7, 11])
    expect(await s.c.call('delete 3\r\n')).toBe('DELETED\r\n')
    expect((await s.c.stats('stats-job 4\r\n'))['state']).toBe('ready')
    await s.stop()

    // Without --extensions the store does not start: its keys and holds would be lost.
    const plain = spawnCli(['-b', dir, ...engine.flags, '-p0', '-l127.0.0.1'])
    expect((await plain.exited(10_000)).code).toBe(5)
    expect(plain.stderr).toContain('start with --extensions')
    // Nor does convert take it (it would drop the tags): nothing in DIR changes.
    const before = fs.readdirSync(dir).sort()
    const other = engine.name === 'binlog' ? 'sqlite' : 'binlog'
    const conv = spawnCli(['convert', '--from', engine.name, '--to', other, dir])
    expect((await conv.exited(10_000)).code).toBe(5)
    expect(conv.stderr).toContain('extension tags')
    expect(fs.readdirSync(dir).sort()).toEqual(before)
  })
})

describe('binlog compaction', () => {
  it('moves a cooldown out of old files, which are then removed, and drops it once it has run out', { timeout: 60_000 }, async () => {
    const dir = tmpDir()
    const args = ['-b', dir, '-s', '8192', '-p0', '-l127.0.0.1', '--extensions']
    let s = await start(args)
    expect(await s.c.call('put 0 0 60 1 idp:long:3600\r\nx\r\n')).toBe('INSERTED 1\r\n')
    expect(await s.c.call('put 0 0 60 1 idp:short:2\r\nx\r\n')).toBe('INSERTED 2\r\n')
    expect(await s.c.call('delete 1\r\ndelete 2\r\n')).toBe('DELETED\r\n')
    await s.c.line()
    // Enough churn for many 8 KiB files: compaction must move the cooldown records to keep removing old files.
    const body = 'y'.repeat(200)
    for (let i = 0; i < 600; i++) {
      const id = Number(/^INSERTED (\d+)\r\n$/.exec(await s.c.call(`put 0 0 60 ${body.length}\r\n${body}\r\n`))![1])
      expect(await s.c.call(`delete ${id}\r\n`)).toBe('DELETED\r\n')
    }
    const files = fs.readdirSync(dir).filter((f) => /^binlog\.\d+$/.test(f))
    expect(files.length).toBeLessThan(10)
    expect(files).not.toContain('binlog.1')
    await s.stop()

    s = await start(args)
    expect(await s.c.call('put 0 0 60 1 idp:long\r\nz\r\n')).toBe('INSERTED 1 DELETED\r\n')
    await s.stop()
    // `short` has run out by now (2 s): its key is free after a restart.
    await new Promise((r) => setTimeout(r, 2100))
    s = await start(args)
    expect(await s.c.call('put 0 0 60 1 idp:short\r\nz\r\n')).toMatch(/^INSERTED \d+\r\n$/)
    await s.stop()
  })
})

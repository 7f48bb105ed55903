/**
 * One server per directory: a second open fails with TSB_ERR_BINLOG_LOCKED,
 * whether the holder is this process or another; the lock dies with its
 * holder (kill -9 included), and a stale lock file blocks nothing.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BinlogLockedError } from '../../src/store/binlog/errors.js'
import { ChildBuild } from './child.js'
import { Model, openError, tmpDir } from './helpers.js'

let build: ChildBuild
beforeAll(() => {
  build = new ChildBuild()
})
afterAll(async () => {
  await build.dispose()
})

describe('directory lock', () => {
  it('a second open in the same process fails until the first closes', async () => {
    const dir = tmpDir()
    const a = new Model(dir)
    await a.open()
    const err = await openError(new Model(dir))
    expect(err).toBeInstanceOf(BinlogLockedError)
    expect(err).toMatchObject({ code: 'TSB_ERR_BINLOG_LOCKED', dir, holderPid: process.pid })
    a.bl.close()
    await new Model(dir).open()
  })

  it('another path to the same directory is the same lock', async () => {
    const dir = tmpDir()
    const link = path.join(tmpDir(), 'link')
    fs.symlinkSync(dir, link)
    await new Model(dir).open()
    expect(await openError(new Model(link))).toMatchObject({ code: 'TSB_ERR_BINLOG_LOCKED' })
  })

  it('another process holds it; killed with SIGKILL it leaves nothing stale', async () => {
    const dir = tmpDir()
    const child = build.start('hold-lock', [dir])
    await child.waitFor('locked\n')
    const err = await openError(new Model(dir))
    expect(err).toMatchObject({ code: 'TSB_ERR_BINLOG_LOCKED', holderPid: child.proc.pid })
    expect((err as Error).message).toContain(`process ${child.proc.pid}`)
    await child.kill()
    const m = new Model(dir)
    await m.open()
    expect(m.replayedNextId).toBe(1)
  })

  it('a lock file left by a dead process (an older version wrote DIR/lock itself) blocks nothing', async () => {
    const dir = tmpDir()
    fs.writeFileSync(path.join(dir, 'lock'), '999999999\nsomehost\n')
    await new Model(dir).open()
    expect(fs.statSync(path.join(dir, 'lock')).isDirectory()).toBe(true)
    expect(fs.readFileSync(path.join(dir, 'lock', 'holder'), 'utf8')).toMatch(new RegExp(`^${process.pid}\n`))
  })

  it('a holder file left inside DIR/lock by a dead process blocks nothing', async () => {
    const dir = tmpDir()
    fs.mkdirSync(path.join(dir, 'lock'))
    fs.writeFileSync(path.join(dir, 'lock', 'holder'), '999999999\nsomehost\n')
    await new Model(dir).open()
    expect(fs.readFileSync(path.join(dir, 'lock', 'holder'), 'utf8')).toMatch(new RegExp(`^${process.pid}\n`))
  })
})

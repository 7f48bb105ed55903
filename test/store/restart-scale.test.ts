/**
 * A restart at scale, for each engine, through the real command line: a
 * queue of 200,000 jobs, killed with SIGKILL, comes back whole in about the
 * memory it used live (the old replay took 2-3x at this size: every job was
 * copied through several objects and all of them held until the end), and
 * clients that connect during the replay wait and are then served.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { memoryOf, pipelined } from '../helpers/bulk.js'
import { ensureBuilt, killAll, spawnCli } from '../helpers/process.js'
import { tmpDir } from '../binlog/helpers.js'
import { ENGINES } from './engines.js'

const JOBS = 200_000
const BODY = 'x'.repeat(100)
const PUT = `put 0 0 60 ${BODY.length}\r\n${BODY}\r\n`

beforeAll(() => ensureBuilt())
afterEach(async () => {
  await killAll()
})

describe.each(ENGINES)('$name', (engine) => {
  it('replays 200,000 jobs in the memory the live queue used; a client that connected meanwhile is answered after', { timeout: 180_000 }, async () => {
    const dir = tmpDir()
    const args = ['-b', dir, ...engine.flags, '-F', '-p0', '-l127.0.0.1']
    const live = spawnCli(args)
    const { port } = await live.listening(10_000)
    await pipelined(port!, JOBS, () => PUT, /^INSERTED \d+$/, 120_000)
    const liveRss = memoryOf(live.pid).rss
    live.signal('SIGKILL')
    await live.exited()

    const again = spawnCli(args)
    // 'bound' comes before the replay, 'listening' once it is over.
    await again.until(() => again.logLines.some((l) => l['msg'] === 'bound; connections wait until the store has replayed'), 'the bound line', 10_000)
    const bound = again.logLines.find((l) => l['msg']?.toString().startsWith('bound'))!
    const early = await RawClient.connect(bound['port'] as number)
    early.send('stats\r\n')
    await again.listening(120_000)
    expect(await early.line(10_000)).toMatch(/^OK \d+\r\n/)
    early.close()
    const c = await RawClient.connect(bound['port'] as number)
    const st = await c.stats('stats\r\n')
    expect(Number(st['current-jobs-ready'])).toBe(JOBS)
    expect(await c.call('reserve-with-timeout 0\r\n')).toBe(`RESERVED 1 ${BODY.length}\r\n`)
    expect(await c.read(BODY.length + 2)).toBe(`${BODY}\r\n`)
    const m = memoryOf(again.pid)
    c.close()
    // Replayed: about what the queue used live. Peak: the replay's working set on top is small.
    expect(m.rss, `replayed ${m.rss.toFixed(0)} MiB, live ${liveRss.toFixed(0)} MiB`).toBeLessThan(1.25 * liveRss)
    expect(m.hwm, `peak ${m.hwm.toFixed(0)} MiB, live ${liveRss.toFixed(0)} MiB`).toBeLessThan(1.5 * liveRss)
  })
})

/**
 * The warm-up before listening (--warm-up, src/server/warm-up.ts) runs a throw-away
 * server through put, reserve, release and delete: none of it may show. A
 * freshly started tsbeanstalkd answers stats, stats-tube and list-tubes as
 * a fresh reference does, and its first job gets id 1.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { ensureBuilt, killAll, spawnCli, startReference, waitConnectable } from '../helpers/process.js'

let clients: RawClient[] = []

beforeAll(() => ensureBuilt(), 120_000)

afterEach(async () => {
  for (const c of clients) c.close()
  clients = []
  await killAll()
})

async function connect(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port)
  clients.push(c)
  return c
}

/** Figures that differ between any two servers (process, host, time, version). */
const VOLATILE = new Set(['pid', 'version', 'rusage-utime', 'rusage-stime', 'uptime', 'id', 'hostname', 'os', 'platform', 'binlog-max-size'])

async function freshFigures(c: RawClient): Promise<{ stats: Record<string, string>; tube: string; tubes: string }> {
  const stats = await c.stats('stats\r\n')
  for (const k of VOLATILE) delete stats[k]
  const tube = await c.yaml('stats-tube default\r\n')
  const tubes = await c.yaml('list-tubes\r\n')
  return { stats, tube, tubes }
}

describe('warm-up', () => {
  it('leaves no trace: a fresh server answers stats, stats-tube and list-tubes as the fresh reference, and the first put is id 1', async () => {
    const proc = spawnCli(['-l', '127.0.0.1', '-p', '0', '--warm-up'])
    const { port } = await proc.listening()
    // The reference was probed by one connection before (startReference): so is ours.
    await waitConnectable(port!)
    const ours = await connect(port!)
    const ref = await startReference()
    const theirs = await connect(ref.port)
    const a = await freshFigures(ours)
    const b = await freshFigures(theirs)
    expect(a.stats).toEqual(b.stats)
    expect(a.tube).toBe(b.tube)
    expect(a.tubes).toBe(b.tubes)
    expect(await ours.call('put 0 0 10 1\r\nx\r\n')).toBe('INSERTED 1\r\n')
  })

  it('without --warm-up the server starts cold, with the same fresh state', async () => {
    const proc = spawnCli(['-l', '127.0.0.1', '-p', '0'])
    const { port } = await proc.listening()
    const c = await connect(port!)
    expect((await c.stats('stats\r\n'))['total-jobs']).toBe('0')
    expect(await c.call('put 0 0 10 1\r\nx\r\n')).toBe('INSERTED 1\r\n')
  })
})

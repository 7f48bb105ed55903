/**
 * The whole server with `-b -f 0 --extensions` and a max-retries policy
 * with a dead-letter tube (from the config file), under load: producers put
 * into `work`, workers reserve and release there (each second release moves
 * the job to `dlq`), a reprioritizer changes ready jobs; killed with SIGKILL
 * at random moments and restarted on the same directory, 8 times, for each
 * engine. After every restart:
 * - every acknowledged put is there, in `work` or in `dlq` (a crash between
 *   the copy's record and the original's delete may leave both: never
 *   neither): no dead-letter move is lost;
 * - no job in `work` has used up its retries (a move is never half-undone
 *   into an original that should have gone), every job in `dlq` has;
 * - no half fan-out: a second source, `ev`, fans out to `ga` and `gb`
 *   (nobody consumes them); each body is in both or in neither, and every
 *   acknowledged one is in both;
 * - the policies are in force again (stats-tube-policy).
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { cliFixture } from '../helpers/cli-fixture.js'
import { RawClient } from '../helpers/client.js'
import { killNineRounds } from '../helpers/process.js'
import { prng } from '../helpers/prng.js'
import { ENGINES } from '../store/engines.js'

const fx = cliFixture('tsb-policy-crash-')
const RETRIES = 2

/** What the clients were told. */
class Truth {
  /** Bodies of acknowledged puts. */
  readonly acked = new Set<string>()
  /** Bodies of acknowledged fan-out puts. */
  readonly fanned = new Set<string>()
  moved = 0
  copies = 0
  checks = 0
}

async function producer(t: Truth, port: number, seed: number): Promise<void> {
  const rnd = prng(seed)
  const c = await RawClient.connect(port).catch(() => null)
  if (c === null) return
  try {
    expect(await c.call('use work\r\n', 5000)).toBe('USING work\r\n')
    for (;;) {
      if (rnd.chance(0.2)) {
        const body = `f-${seed}-${rnd.int(1e9)}`
        expect(await c.call('use ev\r\n', 5000)).toBe('USING ev\r\n')
        expect(await c.call(`put 0 0 100 ${body.length}\r\n${body}\r\n`, 5000)).toMatch(/^INSERTED \d+ 2\r\n$/)
        t.fanned.add(body)
        expect(await c.call('use work\r\n', 5000)).toBe('USING work\r\n')
        continue
      }
      const body = `b-${seed}-${rnd.int(1e9)}`
      const reply = await c.call(`put ${rnd.int(10)} 0 100 ${body.length}\r\n${body}\r\n`, 5000)
      expect(reply).toMatch(/^INSERTED \d+\r\n$/)
      t.acked.add(body)
      if (rnd.chance(0.3)) {
        const id = Number(/\d+/.exec(reply)![0])
        expect(await c.call(`reprioritize ${id} ${rnd.int(10)}\r\n`, 5000)).toMatch(/^(REPRIORITIZED|NOT_FOUND)\r\n$/)
      }
    }
  } catch {
    // The server died: this client is done.
  } finally {
    c.close()
  }
}

async function worker(port: number): Promise<void> {
  const c = await RawClient.connect(port).catch(() => null)
  if (c === null) return
  try {
    expect(await c.call('watch work\r\n', 5000)).toBe('WATCHING 2\r\n')
    expect(await c.call('ignore default\r\n', 5000)).toBe('WATCHING 1\r\n')
    for (;;) {
      const head = await c.call('reserve-with-timeout 1\r\n', 5000)
      const m = /^RESERVED (\d+) (\d+)\r\n$/.exec(head)
      if (m === null) continue
      await c.read(Number(m[2]) + 2, 5000)
      expect(await c.call(`release ${m[1]} 0 0\r\n`, 5000)).toBe('RELEASED\r\n')
    }
  } catch {
    // The server died.
  } finally {
    c.close()
  }
}

/** Every job of `tube` in every state, as [id, body, timeouts + releases]. */
async function jobsOf(c: RawClient, tube: string): Promise<[number, string, number][]> {
  const out: [number, string, number][] = []
  for (const state of ['ready', 'delayed', 'buried', 'reserved']) {
    let after = 0
    for (;;) {
      const reply = await c.call(`list-jobs ${tube} ${state} ${after} 1000\r\n`)
      if (reply === 'NOT_FOUND\r\n') break
      const m = /^OK (\d+)\r\n$/.exec(reply)!
      const ids = (await c.read(Number(m[1]) + 2)).split('\n').filter((l) => l.startsWith('- ')).map((l) => Number(l.slice(2)))
      if (ids.length === 0) break
      for (const id of ids) {
        const st = await c.stats(`stats-job ${id}\r\n`)
        const head = await c.call(`peek ${id}\r\n`)
        const bytes = Number(/^FOUND \d+ (\d+)\r\n$/.exec(head)![1])
        out.push([id, (await c.read(bytes + 2)).slice(0, -2), Number(st['timeouts']) + Number(st['releases'])])
      }
      after = ids[ids.length - 1]!
    }
  }
  return out
}

async function verify(t: Truth, port: number): Promise<void> {
  const c = await RawClient.connect(port)
  try {
    expect(await c.stats('stats-tube-policy work\r\n')).toMatchObject({ 'max-retries': String(RETRIES), 'dead-letter': 'dlq' })
    const work = await jobsOf(c, 'work')
    const dlq = await jobsOf(c, 'dlq')
    const present = new Set([...work, ...dlq].map(([, body]) => body))
    for (const body of t.acked) expect(present.has(body), `acknowledged ${body} is gone`).toBe(true)
    for (const [id, , used] of work) expect(used, `job ${id} in work used its retries`).toBeLessThan(RETRIES)
    for (const [id, , used] of dlq) expect(used, `job ${id} in dlq`).toBeGreaterThanOrEqual(RETRIES)
    t.moved = dlq.length
    expect(await c.stats('stats-tube-policy ev\r\n')).toMatchObject({ 'fan-out': 'ga,gb' })
    const ga = (await jobsOf(c, 'ga')).map(([, body]) => body).sort()
    const gb = (await jobsOf(c, 'gb')).map(([, body]) => body).sort()
    expect(ga, 'half a fan-out').toEqual(gb)
    const inGa = new Set(ga)
    for (const body of t.fanned) expect(inGa.has(body), `acknowledged fan-out ${body} is gone`).toBe(true)
    t.copies = ga.length
    t.checks++
  } finally {
    c.close()
  }
}

describe.each(ENGINES)('$name with a dead-letter policy and a fan-out', (engine) => {
  it('survives 8 kill -9 under load with -f 0: no acknowledged job, no dead-letter move lost, no half fan-out', { timeout: 120_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(fx.tmp(), `${engine.name}-`))
    const conf = `${dir}.toml`
    fs.writeFileSync(
      conf,
      `extensions = true\n[[tube_policy]]\ntube = "work"\nmax_retries = ${RETRIES}\ndead_letter = "dlq"\n[[tube_policy]]\ntube = "ev"\nfan_out = ["ga", "gb"]\n`,
    )
    const args = ['-b', dir, ...engine.flags, '-f', '0', '-s', '65536', '-p0', '-l127.0.0.1', '--config', conf]
    const t = new Truth()
    const rnd = prng(20261216)
    await killNineRounds(
      args,
      8,
      (n) => rnd.int(n),
      (port) => verify(t, port),
      (port, round) => [producer(t, port, round * 10), producer(t, port, round * 10 + 1), worker(port), worker(port)],
    )
    expect(t.checks).toBe(9)
    expect(t.acked.size).toBeGreaterThan(50)
    expect(t.moved).toBeGreaterThan(10)
    expect(t.copies).toBeGreaterThan(10)
  })
})

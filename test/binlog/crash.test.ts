/**
 * kill -9 at random moments under -f 0, for each engine (the binlog with
 * small files, so rotation and compaction run; the SQLite store), then replay: every job whose put was acknowledged and
 * whose delete was not is back with its body, priority and state class; no
 * acknowledged delete comes back; only unacknowledged batches may or may not
 * have landed; new ids are above every acknowledged one.
 *
 * The child logs its intents and acknowledgements to a file (see
 * fixtures/crash-writer.ts for why not to stdout), read after the kill.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { prng } from '../helpers/prng.js'
import { ENGINES, binlogEngine, type EngineFactory } from '../store/engines.js'
import { ChildBuild, type Child } from './child.js'
import { Model, binlogFiles, tmpDir } from './helpers.js'

let build: ChildBuild
beforeAll(() => {
  build = new ChildBuild()
})
afterAll(async () => {
  await build.dispose()
})

const bodyOf = (id: number): string => `job-${id}-`.repeat(id % 97 === 0 ? 400 : 1 + (id % 13)) + '\r\n'

interface State {
  pri: number
  cls: string
}

/** What the rounds so far established: the jobs replay showed last time (the truth the next child starts from). */
interface Truth {
  known: Map<number, State>
  maxAckedId: number
}

function startChild(dir: string, logFile: string, seed: number, engine: EngineFactory): Child {
  return build.start('crash-writer', [dir, String(seed), engine.name, logFile])
}

/**
 * Checks one kill against the child's log: replays `dir` (which may cut a
 * torn tail and remove files, as a server's start does) and compares every
 * job with what the acknowledged and unacknowledged batches allow.
 */
async function checkRound(engine: EngineFactory, dir: string, logFile: string, round: number, truth: Truth): Promise<void> {
  const text = fs.readFileSync(logFile, 'latin1')
  // Only whole lines: a kill can stop the child between two writes, never inside a short one, but be strict anyway.
  const lines = text.slice(0, text.lastIndexOf('\n') + 1).split('\n')
  const batches = new Map<number, string[]>()
  let acked = 0
  for (const line of lines) {
    const p = /^([IA]) (\d+)(?: (.*))?$/.exec(line)
    if (p === null) continue
    const [, tag, n, ops] = p
    if (tag === 'I') batches.set(Number(n), ops === undefined ? [] : ops.split(','))
    else {
      expect(Number(n)).toBe(acked + 1) // acknowledged in order
      acked = Number(n)
    }
  }
  // Candidate states per job: after the acknowledged batches, then after each later op.
  const sure = new Map(truth.known)
  const maybe = new Map<number, (State | 'gone')[]>()
  for (const [n, ops] of [...batches].sort((x, y) => x[0] - y[0])) {
    for (const op of ops) {
      const [kind, idS, priS, cls] = op.split(' ') as [string, string, string, string]
      const id = Number(idS)
      const st: State | 'gone' = cls === 'gone' ? 'gone' : { pri: Number(priS), cls }
      if (n <= acked) {
        if (st === 'gone') sure.delete(id)
        else sure.set(id, st)
        if (kind === 'put') truth.maxAckedId = Math.max(truth.maxAckedId, id)
      } else {
        if (!maybe.has(id)) maybe.set(id, [sure.get(id) ?? 'gone'])
        maybe.get(id)!.push(st)
      }
    }
  }

  const m = new Model(dir, {}, engine)
  await m.open()
  const got = new Map(m.recovered.map((r) => [r.id, r]))
  for (const [id, r] of got) expect(r.body.toString('latin1')).toBe(bodyOf(id))
  const ids = new Set([...sure.keys(), ...maybe.keys(), ...got.keys()])
  const where = `in round ${round} (${batches.size} batches logged, ${acked} acknowledged)`
  for (const id of ids) {
    const r = got.get(id)
    const actual: State | 'gone' = r === undefined ? 'gone' : { pri: r.pri, cls: r.state }
    const allowed = maybe.get(id) ?? [sure.get(id) ?? 'gone']
    expect(allowed, `job ${id} ${where}`).toContainEqual(actual)
  }
  expect(m.replayedNextId, `next id ${where}`).toBeGreaterThan(truth.maxAckedId)
  truth.known = new Map([...got].map(([id, r]) => [id, { pri: r.pri, cls: r.state }]))
  m.bl.close()
}

describe.each(ENGINES)('crash: $name', (engine) => {
  it('survives 20 kill -9s at random moments with nothing acknowledged lost', { timeout: 60_000 }, async () => {
    const rnd = prng(9)
    const dir = tmpDir()
    const logs = tmpDir()
    const truth: Truth = { known: new Map(), maxAckedId: 0 }
    for (let round = 0; round < 20; round++) {
      const logFile = path.join(logs, `round-${round}.log`)
      const child = startChild(dir, logFile, 1000 + round, engine)
      await child.waitFor('ready\n')
      await new Promise((r) => setTimeout(r, 20 + rnd.int(150)))
      await child.kill()
      expect(child.err).toBe('')
      await checkRound(engine, dir, logFile, round, truth)
    }
    expect(truth.known.size).toBeGreaterThan(10) // the rounds did acknowledge work
    expect(truth.maxAckedId).toBeGreaterThan(100)
  })
})

describe('crash: the child log', () => {
  // A loaded parent may not read the child's output for a while. What the
  // child logged before the kill must still all be there: with the log on
  // stdout, Node queued the lines past the socket's buffer in the child and
  // the kill lost them, so batches that reached the store had no intent and
  // their puts and deletes looked like losses and resurrections.
  it('holds every batch that reached the store although the parent did not read while the child ran', { timeout: 60_000 }, async () => {
    const dir = tmpDir()
    const logFile = path.join(tmpDir(), 'round-0.log')
    const child = startChild(dir, logFile, 77, binlogEngine)
    await child.waitFor('ready\n')
    // Block this event loop (it reads the child's stdout) until the child has
    // written 12 files of 8 KiB (some hundreds of batches, more lines than a
    // socket buffer holds); bounded, in case the child is starved.
    const first = Number(binlogFiles(dir)[0]?.slice(7) ?? 0)
    const until = Date.now() + 20_000
    let newest = first
    while (newest < first + 12 && Date.now() < until) newest = Number(binlogFiles(dir).at(-1)?.slice(7) ?? 0)
    await child.kill()
    expect(child.err).toBe('')
    expect(newest, 'the child wrote 12 files').toBeGreaterThanOrEqual(first + 12)
    await checkRound(binlogEngine, dir, logFile, 0, { known: new Map(), maxAckedId: 0 })
  })
})

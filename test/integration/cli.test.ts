/**
 * The installed command, spawned as users run it (`node bin/tsbeanstalkd.js`):
 * flags in the reference's forms, exit codes, the startup log line, Unix
 * sockets, drain mode and shutdown signals. Servers listen on 127.0.0.1 with
 * `-p 0`; the port comes from the JSON "listening" line on stderr.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { connectSocket, ensureBuilt, killAll, spawnCli, withTimeout, type Listening, type Proc } from '../helpers/process.js'

const ONE_GIB = 1073741824

let clients: RawClient[] = []
let tmp: string

beforeAll(() => {
  ensureBuilt()
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-cli-'))
}, 120_000)

afterEach(async () => {
  for (const c of clients) c.close()
  clients = []
  await killAll()
})

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true })
})

/** Starts the CLI and waits for its "listening" line. */
async function serve(args: readonly string[]): Promise<{ proc: Proc; line: Listening }> {
  const proc = spawnCli(args)
  return { proc, line: await proc.listening() }
}

async function connect(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port)
  clients.push(c)
  return c
}

async function connectPath(p: string): Promise<RawClient> {
  const c = await RawClient.connectPath(p)
  clients.push(c)
  return c
}

describe('flags', () => {
  it('takes attached values (-p0 -l127.0.0.1) and logs one JSON startup line', async () => {
    const { proc, line } = await serve(['-p0', '-l127.0.0.1'])
    expect(line).toMatchObject({ msg: 'listening', address: '127.0.0.1', maxJobSize: 65535 })
    expect(line.port).toEqual(expect.any(Number))
    expect(line.port).toBeGreaterThan(0)
    // Every stderr line so far is JSON (pino), and exactly one says "listening".
    const lines = proc.stderr.trim().split('\n')
    expect(proc.logLines).toHaveLength(lines.length)
    expect(proc.logLines.filter((l) => l['msg'] === 'listening')).toHaveLength(1)
    const c = await connect(line.port!)
    expect(await c.call('list-tube-used\r\n')).toBe('USING default\r\n')
    // Which server answers is told here (and by -v); stats' version reads as the reference's, which clients parse.
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    expect(line).toMatchObject({ name: 'tsbeanstalkd', version: pkg.version })
    expect((await c.stats('stats\r\n'))['version']).toBe('"1.12"')
  })

  it('takes separate values (-l 127.0.0.1 -p 0)', async () => {
    const { line } = await serve(['-l', '127.0.0.1', '-p', '0'])
    const c = await connect(line.port!)
    expect(await c.call('put 0 0 10 2\r\nhi\r\n')).toBe('INSERTED 1\r\n')
  })

  it('takes bundled flags: -VV, and -VVz10 with an attached value', async () => {
    const vv = await serve(['-VV', '-p0', '-l127.0.0.1'])
    expect(vv.line.maxJobSize).toBe(65535)
    // -VV turns on debug logging: a connection reset by its peer is logged.
    const reset = await connectSocket({ port: vv.line.port!, host: '127.0.0.1' })
    reset.resetAndDestroy()
    await vv.proc.until(() => vv.proc.logLines.some((l) => l['level'] === 20), 'a debug log line')
    const bundled = await serve(['-VVz10', '-p0', '-l127.0.0.1'])
    expect(bundled.line.maxJobSize).toBe(10)
    const c = await connect(bundled.line.port!)
    expect(await c.call('put 0 0 10 11\r\nhello world\r\n')).toBe('JOB_TOO_BIG\r\n')
  })

  it('-z 10 rejects an 11-byte job (swallowing it) and accepts a 10-byte one', async () => {
    const { line } = await serve(['-z', '10', '-p', '0', '-l', '127.0.0.1'])
    expect(line.maxJobSize).toBe(10)
    const c = await connect(line.port!)
    // The 13 swallowed bytes are a whole command, which must not run (test `too_big`).
    expect(await c.call('put 0 0 10 11\r\ndelete 9999\r\n')).toBe('JOB_TOO_BIG\r\n')
    expect(await c.call('put 0 0 10 10\r\n0123456789\r\n')).toBe('INSERTED 1\r\n')
    expect((await c.stats('stats\r\n'))['max-job-size']).toBe('10')
  })

  it('-z above 1 GiB is clamped to 1 GiB with a warning', async () => {
    const { proc, line } = await serve(['-z', '2000000000', '-p0', '-l127.0.0.1'])
    expect(line.maxJobSize).toBe(ONE_GIB)
    const warning = proc.logLines.find((l) => l['level'] === 40)
    expect(warning?.['msg']).toMatch(/2000000000.*1073741824/)
    const c = await connect(line.port!)
    expect((await c.stats('stats\r\n'))['max-job-size']).toBe(String(ONE_GIB))
  })

  it('-v prints the version and exits 0', async () => {
    const proc = spawnCli(['-v'])
    expect(await proc.exited()).toEqual({ code: 0, signal: null })
    expect(proc.output).toMatch(/^tsbeanstalkd \d+\.\d+\.\d+/)
  })

  it('-h exits 0 with the flag list', async () => {
    const proc = spawnCli(['-h'])
    expect(await proc.exited()).toEqual({ code: 0, signal: null })
    for (const flag of ['-b', '-f', '-F', '-l', '-p', '-u', '-z', '-s', '-v', '-V', '-h']) {
      expect(proc.output).toMatch(new RegExp(`(^|\\s)${flag}[\\s,]`))
    }
  })

  it.each([
    ['an unknown flag', ['-Q']],
    ['a flag missing its value', ['-p']],
    ['a stray argument', ['extra']],
  ])('%s exits 5 (usage), as the reference does', async (_name, args) => {
    const proc = spawnCli(args)
    expect(await proc.exited()).toEqual({ code: 5, signal: null })
    expect(proc.stderr).not.toBe('')
  })

  it('-b DIR keeps jobs across a restart, and a second server on the same DIR exits 10', async () => {
    const dir = path.join(tmp, 'wal')
    const first = await serve(['-b', dir, '-p0', '-l127.0.0.1'])
    const c = await connect(first.line.port!)
    expect(await c.call('put 3 0 60 4\r\nkeep\r\n')).toBe('INSERTED 1\r\n')
    const second = spawnCli(['-b', dir, '-p0', '-l127.0.0.1'])
    expect(await second.exited()).toEqual({ code: 10, signal: null })
    expect(second.stderr).toMatch(/binlog|lock/i)
    c.close()
    first.proc.signal('SIGTERM')
    expect(await first.proc.exited()).toEqual({ code: 0, signal: null })
    const again = await serve(['-b', dir, '-p0', '-l127.0.0.1'])
    const d = await connect(again.line.port!)
    d.send('peek 1\r\n')
    expect(await d.read('FOUND 1 4\r\nkeep\r\n'.length)).toBe('FOUND 1 4\r\nkeep\r\n')
    expect(await d.call('put 0 0 60 1\r\nx\r\n')).toBe('INSERTED 2\r\n')
    d.close()
  })
})

describe('unix sockets', () => {
  it('-l unix:PATH serves over a Unix socket', async () => {
    const sock = path.join(tmp, 'serve.sock')
    const { line } = await serve(['-l', `unix:${sock}`])
    expect(line.address).toBe(sock)
    expect(fs.lstatSync(sock).isSocket()).toBe(true)
    const c = await connectPath(sock)
    expect(await c.call('put 0 0 10 1\r\na\r\n')).toBe('INSERTED 1\r\n')
    expect(await c.call('peek 1\r\n')).toBe('FOUND 1 1\r\n')
    expect(await c.read(3)).toBe('a\r\n')
  })

  it('replaces a stale socket file left by a previous run', async () => {
    const sock = path.join(tmp, 'stale.sock')
    // A process that exits while listening leaves its socket file behind.
    const leftover = spawnSync(
      process.execPath,
      ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.exit(0))`],
      { timeout: 5000 },
    )
    expect(leftover.status).toBe(0)
    expect(fs.lstatSync(sock).isSocket()).toBe(true)

    const { line } = await serve(['-l', `unix:${sock}`])
    expect(line.address).toBe(sock)
    const c = await connectPath(sock)
    expect(await c.call('list-tube-used\r\n')).toBe('USING default\r\n')
  })

  it('refuses a regular file at the path and leaves it alone', async () => {
    const file = path.join(tmp, 'not-a-socket')
    fs.writeFileSync(file, 'precious')
    const proc = spawnCli(['-l', `unix:${file}`])
    const exit = await proc.exited()
    expect(exit.code).not.toBe(0)
    expect(exit.code).not.toBeNull()
    expect(proc.stderr).toContain(file)
    expect(fs.readFileSync(file, 'utf8')).toBe('precious')
  })
})

describe('signals', () => {
  it('SIGUSR1 enters drain mode: puts answer DRAINING, everything else works', async () => {
    const { proc, line } = await serve(['-p0', '-l127.0.0.1'])
    const c = await connect(line.port!)
    expect(await c.call('put 0 0 10 5\r\nfirst\r\n')).toBe('INSERTED 1\r\n')
    expect((await c.stats('stats\r\n'))['draining']).toBe('false')

    proc.signal('SIGUSR1')
    await proc.until(() => proc.stderr.includes('SIGUSR1'), 'the drain log line')
    expect(await c.call('put 0 0 10 6\r\nsecond\r\n')).toBe('DRAINING\r\n')
    expect((await c.stats('stats\r\n'))['draining']).toBe('true')
    expect(await c.call('reserve-with-timeout 0\r\n')).toBe('RESERVED 1 5\r\n')
    expect(await c.read(7)).toBe('first\r\n')
    expect(await c.call('delete 1\r\n')).toBe('DELETED\r\n')
    expect((await c.stats('stats\r\n'))['total-jobs']).toBe('1')
  })

  it.each(['SIGTERM', 'SIGINT'] as const)('%s exits 0 promptly with clients connected', async (sig) => {
    const { proc, line } = await serve(['-p0', '-l127.0.0.1'])
    const port = line.port!
    const idle = await connect(port)
    const waiting = await connect(port)
    const midPut = await connect(port)
    expect(await idle.call('list-tube-used\r\n')).toBe('USING default\r\n')
    waiting.send('reserve\r\n')
    midPut.send('put 0 0 10 100\r\nonly part of the body')
    expect(await waiting.quiet(50)).toBe('')

    const t0 = performance.now()
    proc.signal(sig)
    expect(await proc.exited(3000)).toEqual({ code: 0, signal: null })
    expect(performance.now() - t0).toBeLessThan(2500)
    expect(await idle.closedByServer(1000)).toBe(true)
  })

  // Supervisors (and these tests) take the "listening" line as readiness, so
  // a signal sent the moment it appears must already be handled.
  it.each([
    ['SIGUSR1', 'keeps running, draining'],
    ['SIGTERM', 'exits 0'],
  ] as const)('%s sent as soon as "listening" is logged %s', async (sig, _outcome) => {
    const proc = spawnCli(['-p0', '-l127.0.0.1'])
    const line = await proc.listening()
    proc.signal(sig)
    if (sig === 'SIGTERM') {
      expect(await proc.exited()).toEqual({ code: 0, signal: null })
      return
    }
    // A signal is handled on a later turn of the server's event loop than it
    // arrives, so a command sent right away may be answered first: wait for the log line.
    await proc.until(() => proc.stderr.includes('SIGUSR1'), 'the drain log line')
    const c = await connect(line.port!)
    const draining = (await c.stats('stats\r\n'))['draining']
    // Unhandled, Node takes SIGUSR1 as "open the inspector" (on 127.0.0.1:9229).
    expect(proc.stderr).not.toContain('Debugger listening')
    expect(draining).toBe('true')
  })

  it('SIGTERM exits 0 even when a client never closes its side', async () => {
    const { proc, line } = await serve(['-p0', '-l127.0.0.1'])
    // A half-open-tolerant client that ignores the server's FIN.
    const stubborn = await connectSocket({ port: line.port!, host: '127.0.0.1', allowHalfOpen: true })
    // One round trip, so the signal cannot race the server's startup.
    const reply = new Promise<string>((resolve) => stubborn.once('data', (d: Buffer) => resolve(d.toString('latin1'))))
    stubborn.write('list-tube-used\r\n')
    expect(await withTimeout(reply, 2000, 'the reply to list-tube-used')).toBe('USING default\r\n')
    try {
      proc.signal('SIGTERM')
      expect(await proc.exited(4000)).toEqual({ code: 0, signal: null })
    } finally {
      stubborn.destroy()
    }
  })
})

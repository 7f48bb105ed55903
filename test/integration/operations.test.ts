/**
 * Running it as an operator does, through the real command line: a --config
 * file and --check-config, --http on a spawned server (ready, draining),
 * systemd socket activation (a listening socket passed as fd 3, TCP and
 * Unix), readiness notification through the real systemd-notify to a Unix
 * datagram socket, the log formats, and the connection budget under a low
 * open-files limit.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { pipelined } from '../helpers/bulk.js'
import { get, haveTool } from '../helpers/http.js'
import { cliFixture } from '../helpers/cli-fixture.js'
import { BIN, ROOT, Proc, freePort, spawnCli, type Listening } from '../helpers/process.js'

const fx = cliFixture('tsb-ops-')
/** The queue the replay tests restart with. */
const JOBS = 200_000
const PUT = `put 0 0 60 100\r\n${'x'.repeat(100)}\r\n`
const connect = fx.connect

function writeConfig(name: string, text: string): string {
  const file = path.join(fx.tmp(), name)
  fs.writeFileSync(file, text)
  return file
}

/** The http address from the "http: serving" log line. */
async function httpUrl(proc: Proc): Promise<string> {
  const find = (): string | undefined => proc.logLines.find((l) => typeof l['http'] === 'string' && String(l['msg']).startsWith('http:'))?.['http'] as string | undefined
  await proc.until(() => find() !== undefined, 'the http log line')
  return `http://${find()}`
}

describe('--config FILE', () => {
  it('an unknown key is an error naming file:line (exit 5); so are wrong types and bad values', async () => {
    const cases: [string, RegExp][] = [
      ['max_job_size = 100\n\n[store]\ndir = "/x"\nfsynk_ms = 5\n', /bad\.toml:5: unknown setting store\.fsynk_ms/],
      ['[tls]\ncert = "a.pem"\npassword = "x"\n', /bad\.toml:3: unknown setting tls\.password/],
      ['[dashboard]\nport = 1\n', /bad\.toml:1: unknown setting dashboard/],
      ['user = 5\n', /bad\.toml:1: user must be a string/],
      ['[[listen]]\nhost = "127.0.0.1"\nport = 11300\n[[listen]]\nport = 70000\n', /bad\.toml:5: listen\.port must be an integer 0-65535/],
      ['# comment\n[http]\nlisten = "nowhere"\n', /bad\.toml:3: invalid --http: nowhere/],
      ['\n[store]\nengine = "mysql"\n', /bad\.toml:3: invalid --store: mysql/],
      ['[log]\nlevel = "loud"\n', /bad\.toml:2: log\.level must be one of info, debug, trace/],
      ['max_job_size = \n', /bad\.toml:1: /],
    ]
    for (const [text, want] of cases) {
      const file = writeConfig('bad.toml', text)
      const proc = spawnCli(['--config', file, '--check-config'])
      expect(await proc.exited(), text).toEqual({ code: 5, signal: null })
      expect(proc.stderr, text).toMatch(want)
    }
    const missing = spawnCli(['--config', path.join(fx.tmp(), 'none.toml')])
    expect((await missing.exited()).code).toBe(5)
    expect(missing.stderr).toMatch(/cannot read the config file .*none\.toml/)
  })

  it('--check-config prints the settings, flags over the file, and exits 0', async () => {
    const file = writeConfig(
      'good.toml',
      [
        'max_job_size = 100',
        '[[listen]]',
        'host = "127.0.0.1"',
        'port = 11400',
        '[[listen]]',
        'path = "/run/tsb.sock"',
        '[store]',
        'dir = "/var/lib/tsb"',
        'engine = "sqlite"',
        'fsync_ms = 0',
        '[http]',
        'listen = "127.0.0.1:9100"',
        'metrics_max_tubes = 50',
        '[log]',
        'format = "json"',
        'level = "debug"',
        '',
      ].join('\n'),
    )
    const plain = spawnCli(['--config', file, '--check-config'])
    expect(await plain.exited()).toEqual({ code: 0, signal: null })
    expect(plain.stdout).toBe(
      [
        `config file: ${file}`,
        'listen: 127.0.0.1:11400, unix:/run/tsb.sock (sockets passed by systemd take the place of these)',
        'max job size: 100',
        'store: sqlite in /var/lib/tsb, fsync before every reply',
        'http: 127.0.0.1:9100, per-tube metrics for at most 50 tubes; POST /drain off (no --http-token-file)',
        'tls: off',
        'auth: off',
        'log: json, level debug',
        'user: unchanged',
        "extensions: off (the reference's commands only)",
        '',
      ].join('\n'),
    )
    const over = spawnCli(['--config', file, '--check-config', '-z', '10', '-p', '11500', '-F', '--http', '[::1]:9200', '--log-format', 'pretty'])
    expect(await over.exited()).toEqual({ code: 0, signal: null })
    expect(over.stdout).toContain('listen: [::]:11500 ')
    expect(over.stdout).toContain('max job size: 10\n')
    expect(over.stdout).toContain('store: sqlite in /var/lib/tsb, never fsync\n')
    expect(over.stdout).toContain('http: [::1]:9200, per-tube metrics for at most 50 tubes; POST /drain off (no --http-token-file)\n')
    expect(over.stdout).toContain('log: pretty, level debug\n')
  })

  it('serves the listeners of the file (TCP and a Unix socket), with its settings', async () => {
    const sock = path.join(fx.tmp(), 'cfg.sock')
    const file = writeConfig('serve.toml', `max_job_size = 5\n[[listen]]\nhost = "127.0.0.1"\nport = 0\n[[listen]]\npath = ${JSON.stringify(sock)}\n`)
    const proc = spawnCli(['--config', file])
    const line = await proc.listening()
    expect(line['listeners']).toEqual([`127.0.0.1:${line.port}`, `unix:${sock}`])
    expect(line.maxJobSize).toBe(5)
    const tcp = await connect(line.port!)
    expect(await tcp.call('put 0 0 10 6\r\nsixsix\r\n')).toBe('JOB_TOO_BIG\r\n')
    const unix = await fx.connectPath(sock)
    expect(await unix.call('put 0 0 10 5\r\nfive!\r\n')).toBe('INSERTED 1\r\n')
  })
})

describe('--http on a running server', () => {
  it('/readyz is 200 once serving and 503 after SIGUSR1 (draining); /metrics counts what clients did', async () => {
    const proc = spawnCli(['-l', '127.0.0.1', '-p', '0', '--http', '127.0.0.1:0'])
    const line = await proc.listening()
    const url = await httpUrl(proc)
    expect(line['http']).toBe(url.slice('http://'.length))
    const c = await connect(line.port!)
    expect(await c.call('put 0 0 10 2\r\nhi\r\n')).toBe('INSERTED 1\r\n')
    expect((await get(`${url}/readyz`)).status).toBe(200)
    expect((await get(`${url}/metrics`)).body).toContain('tsbeanstalkd_commands_total{command="put"} 1\n')
    proc.signal('SIGUSR1')
    await proc.until(() => proc.stderr.includes('SIGUSR1'), 'the drain log line')
    const drained = await get(`${url}/readyz`)
    expect(drained.status).toBe(503)
    expect(JSON.parse(drained.body)).toEqual({ status: 'not ready', state: 'draining' })
    expect((await get(`${url}/healthz`)).status).toBe(200)
    expect((await get(`${url}/metrics`)).body).toContain('tsbeanstalkd_draining 1\n')
  })

  // Both engines replay asynchronously, yielding to the event loop about every 50 ms: the replay of
  // 200,000 jobs takes more than half a second even on an idle machine (longer under load, with the
  // same yields), and /readyz is asked back to back from before it starts until it is over.
  it.each([
    ['binlog', []],
    ['sqlite', ['--store', 'sqlite']],
  ] as const)('--store %s: /readyz answers 503 replaying, with progress, throughout the replay; 200 only once the beanstalk port serves', async (engine, flags) => {
    const dir = path.join(fx.tmp(), `replay-${engine}`)
    const fill = spawnCli(['-l', '127.0.0.1', '-p', '0', '-b', dir, '-F', '--http', '127.0.0.1:0', ...flags])
    await pipelined((await fill.listening()).port!, JOBS, () => PUT, /^INSERTED \d+$/, 60_000)
    // This process's first fetch sets up its HTTP client: not while the replay below runs.
    expect((await get(`${await httpUrl(fill)}/readyz`)).status).toBe(200)
    fill.signal('SIGTERM')
    expect((await fill.exited()).code).toBe(0)

    const port = await freePort()
    const proc = spawnCli(['-l', '127.0.0.1', '-p', String(port), '-b', dir, '--http', '127.0.0.1:0', ...flags])
    const url = await httpUrl(proc)
    // Asked back to back from the moment HTTP listens until it says ready.
    const seen: { status: number; state: string; replay?: { records: number; jobs: number; filesTotal: number } }[] = []
    let metricsDuringReplay: string | null = null
    let early: RawClient | null = null
    const deadline = Date.now() + 60_000
    for (;;) {
      const r = await get(`${url}/readyz`)
      const b = JSON.parse(r.body) as (typeof seen)[number]
      seen.push({ ...b, status: r.status })
      if (r.status === 200) break
      if (b.state === 'replaying' && early === null) {
        // The beanstalk port is bound before the replay: a client connects and its command waits.
        early = await connect(port)
        early.send('list-tube-used\r\n')
      }
      if (b.state === 'replaying' && metricsDuringReplay === null) {
        const m = (await get(`${url}/metrics`)).body
        if (m.includes('tsbeanstalkd_state{state="replaying"} 1\n')) metricsDuringReplay = m
      }
      if (Date.now() > deadline) throw new Error(`not ready after 60 s: ${JSON.stringify(seen.slice(-3))}`)
    }
    const replaying = seen.filter((x) => x.state === 'replaying')
    expect(replaying.length, JSON.stringify(seen.map((x) => x.state))).toBeGreaterThan(0)
    // Everything before the 200 was 503: starting (HTTP up, listeners not yet), then replaying.
    expect(seen.slice(0, -1).every((x) => x.status === 503 && (x.state === 'starting' || x.state === 'replaying'))).toBe(true)
    expect(seen.at(-1)).toMatchObject({ status: 200, state: 'serving' })
    // Progress moves (each answer comes at a later pause of the replay) and never goes past the store.
    const progress = replaying.map((x) => x.replay!)
    expect(progress.every((p) => p.jobs <= JOBS && p.filesTotal >= 1)).toBe(true)
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.records).toBeGreaterThanOrEqual(progress[i - 1]!.records)
    if (progress.length > 1) expect(progress.at(-1)!.records).toBeGreaterThan(progress[0]!.records)
    // During the replay /metrics has the process only: no queue or store figures from a half-built queue.
    expect(metricsDuringReplay).toContain('tsbeanstalkd_ready 0\n')
    expect(metricsDuringReplay).not.toMatch(/^tsbeanstalkd_jobs\{/m)
    expect(metricsDuringReplay).not.toMatch(/^tsbeanstalkd_store_/m)
    // The client that waited is answered; the order of the log lines is the start's.
    expect(await early!.line(10_000)).toBe('USING default\r\n')
    await proc.listening(20_000)
    const order = proc.logLines.map((l) => String(l['msg']))
    const at = (msg: string): number => order.findIndex((m) => m.startsWith(msg))
    const replayed = engine === 'binlog' ? 'binlog: replayed' : 'sqlite store: opened'
    expect(at('http: serving')).toBeGreaterThanOrEqual(0)
    expect(at('http: serving')).toBeLessThan(at('bound'))
    expect(at('bound')).toBeLessThan(at(replayed))
    expect(at(replayed)).toBeLessThan(at('listening'))
    // Once serving, the queue and store figures are the replayed store's, and agree with stats.
    const metrics = (await get(`${url}/metrics`)).body
    const st = await (await connect(port)).stats('stats\r\n')
    expect(st['current-jobs-ready']).toBe(String(JOBS))
    expect(metrics).toContain(`tsbeanstalkd_jobs{state="ready"} ${JOBS}\n`)
    expect(metrics).toContain(`tsbeanstalkd_store_jobs{engine="${engine}"} ${JOBS}\n`)
    expect(metrics).toContain('tsbeanstalkd_ready 1\n')
    if (engine === 'binlog') {
      expect(metrics).toContain(`tsbeanstalkd_binlog_current_index{engine="binlog"} ${st['binlog-current-index']}\n`)
      expect(metrics).toContain(`tsbeanstalkd_binlog_oldest_index{engine="binlog"} ${st['binlog-oldest-index']}\n`)
    }
  }, 90_000)
})

/** Spawns the CLI with a listening socket at fd 3 and LISTEN_PID set to the child's own pid (as systemd does). */
function spawnActivated(listener: net.Server, args: readonly string[], env: Record<string, string>): Proc {
  const fd = (listener as unknown as { _handle: { fd: number } })._handle.fd
  // `exec` keeps the shell's pid, so $$ is the server's pid.
  const child = spawn('/bin/sh', ['-c', `LISTEN_PID=$$ exec "$0" "$@"`, process.execPath, BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, LISTEN_FDS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe', fd],
  })
  return new Proc(child)
}

function listenOn(opts: net.ListenOptions): Promise<net.Server> {
  const srv = net.createServer()
  return new Promise((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(opts, () => resolve(srv))
  })
}

describe('systemd socket activation', () => {
  it('serves a client on an inherited TCP socket (fd 3), and -l/-p are not used', async () => {
    const listener = await listenOn({ host: '127.0.0.1', port: 0 })
    const port = (listener.address() as net.AddressInfo).port
    const unused = await freePort()
    const proc = spawnActivated(listener, ['-l', '127.0.0.1', '-p', String(unused)], { LISTEN_FDNAMES: 'beanstalk' })
    const line = await proc.listening()
    // Our copy goes: only the server holds the socket now.
    await new Promise<void>((resolve) => listener.close(() => resolve()))
    expect(line['listeners']).toEqual([`127.0.0.1:${port}`])
    expect(proc.logLines.some((l) => String(l['msg']).startsWith('socket activation'))).toBe(true)
    const c = await connect(port)
    expect(await c.call('put 0 0 10 2\r\nhi\r\n')).toBe('INSERTED 1\r\n')
    await expect(RawClient.connect(unused)).rejects.toThrow(/ECONNREFUSED/)
  })

  it('serves a client on an inherited Unix socket', async () => {
    const sock = path.join(fx.tmp(), 'activated.sock')
    const listener = await listenOn({ path: sock })
    const proc = spawnActivated(listener, [], {})
    const line = await proc.listening()
    expect(line['listeners']).toEqual([`unix:${sock}`])
    // Our copy goes (libuv unlinks the path on close, systemd would not: step the file aside meanwhile).
    fs.renameSync(sock, `${sock}.aside`)
    await new Promise<void>((resolve) => listener.close(() => resolve()))
    fs.renameSync(`${sock}.aside`, sock)
    const c = await fx.connectPath(sock)
    expect(await c.call('list-tube-used\r\n')).toBe('USING default\r\n')
  })

  it('ignores LISTEN_FDS meant for another process (LISTEN_PID not ours)', async () => {
    const listener = await listenOn({ host: '127.0.0.1', port: 0 })
    const fd = (listener as unknown as { _handle: { fd: number } })._handle.fd
    const child = spawn(process.execPath, [BIN, '-l', '127.0.0.1', '-p', '0'], {
      cwd: ROOT,
      env: { ...process.env, LISTEN_FDS: '1', LISTEN_PID: '1' },
      stdio: ['ignore', 'pipe', 'pipe', fd],
    })
    const proc = new Proc(child)
    const line = await proc.listening()
    expect(line.port).not.toBe((listener.address() as net.AddressInfo).port)
    await new Promise<void>((resolve) => listener.close(() => resolve()))
  })
})

describe('readiness notification (NOTIFY_SOCKET)', () => {
  it('sends READY=1 with MAINPID once serving, STATUS on drain, STOPPING=1 on SIGTERM, through systemd-notify', async (ctx) => {
    if (!haveTool('systemd-notify') || !haveTool('python3')) return ctx.skip()
    const sock = path.join(fx.tmp(), 'notify.sock')
    // Node cannot open a Unix datagram socket; a few lines of Python stand in for systemd's end.
    const recv = new Proc(
      spawn('python3', ['-c', RECEIVER, sock], { stdio: ['ignore', 'pipe', 'pipe'] }),
    )
    await recv.until(() => recv.stdout.includes('bound'), 'the receiver')
    const proc = new Proc(
      spawn(process.execPath, [BIN, '-l', '127.0.0.1', '-p', '0'], { cwd: ROOT, env: { ...process.env, NOTIFY_SOCKET: sock }, stdio: ['ignore', 'pipe', 'pipe'] }),
    )
    const line = await proc.listening()
    await recv.until(() => recv.stdout.includes('READY=1'), 'READY=1')
    const ready = recv.stdout.split('\n').find((l) => l.includes('READY=1'))!
    expect(ready).toContain(`MAINPID=${proc.pid}`)
    expect(ready).toContain(`STATUS=serving on 127.0.0.1:${line.port}`)
    proc.signal('SIGUSR1')
    await recv.until(() => recv.stdout.includes('STATUS=draining'), 'the draining status')
    proc.signal('SIGTERM')
    await recv.until(() => recv.stdout.includes('STOPPING=1'), 'STOPPING=1')
    expect((await proc.exited()).code).toBe(0)
  })
})

/** Prints each datagram on a line (BARRIER=1 from systemd-notify included), for 30 s at most. */
const RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
s.settimeout(30)
while True:
    print(s.recv(4096).decode().replace("\\n", " "), flush=True)
`

describe('logs', () => {
  it('--log-format pretty writes readable lines, not JSON', async () => {
    const proc = spawnCli(['-l', '127.0.0.1', '-p', '0', '--log-format', 'pretty'])
    await proc.until(() => /INFO: listening/.test(proc.stderr), 'a pretty "listening" line')
    const line = proc.stderr.split('\n').find((l) => l.includes('listening'))!
    expect(line).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO: listening \{"address":"127\.0\.0\.1","port":\d+/)
    expect(proc.logLines).toEqual([])
  })

  it('on a terminal the default is pretty; elsewhere JSON', async (ctx) => {
    if (!haveTool('script', ['--version'])) return ctx.skip()
    // script(1) gives the server a pseudo-terminal for stdout and stderr.
    const cmd = `"${process.execPath}" "${BIN}" -l 127.0.0.1 -p 0`
    const proc = new Proc(spawn('script', ['-q', '-e', '-c', cmd, '/dev/null'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] }))
    await proc.until(() => /INFO.*listening/.test(proc.stdout), 'a pretty line on the terminal')
    expect(proc.stdout).not.toContain('"level":30')
    const json = spawnCli(['-l', '127.0.0.1', '-p', '0'])
    expect((await json.listening()).msg).toBe('listening')
  })
})

describe('out of file descriptors', () => {
  it('refuses connections past the budget with one warning, and keeps serving the others', async (ctx) => {
    if (!haveTool('prlimit')) return ctx.skip()
    const proc = new Proc(
      spawn('prlimit', ['--nofile=64:64', process.execPath, BIN, '-l', '127.0.0.1', '-p', '0', '-b', path.join(fx.tmp(), 'fd'), '-s', '4096'], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    )
    const line: Listening = await proc.listening()
    const budget = line['maxConnections'] as number
    expect(budget).toBeGreaterThan(2)
    expect(budget).toBeLessThan(64)
    const open: RawClient[] = []
    for (let i = 0; i < budget; i++) open.push(await connect(line.port!))
    // The ones past the budget are closed at once; the server does not run out.
    const extra = await Promise.all(Array.from({ length: 40 }, () => connect(line.port!)))
    for (const c of extra) expect(await c.closedByServer()).toBe(true)
    await proc.until(() => proc.logLines.some((l) => String(l['msg']).startsWith('refused')), 'the refusal warning')
    const warnings = proc.logLines.filter((l) => String(l['msg']).startsWith('refused'))
    expect(warnings).toHaveLength(1) // at most one per 10 s
    expect(warnings[0]).toMatchObject({ level: 40, refused: 1, maxConnections: budget })
    // Everyone within the budget is served, and the binlog still rotates (needs new fds).
    const body = 'y'.repeat(1000)
    for (const c of open) expect(await c.call(`put 0 0 60 ${body.length}\r\n${body}\r\n`)).toMatch(/^INSERTED \d+\r\n$/)
    // A freed slot is served again.
    open.pop()!.close()
    const deadline = Date.now() + 5000
    let again: RawClient | null = null
    while (again === null && Date.now() < deadline) {
      const c = await connect(line.port!)
      c.send('list-tube-used\r\n')
      try {
        if ((await c.line(500)) === 'USING default\r\n') again = c
      } catch {
        // refused: the close has not been seen yet
      }
    }
    expect(again).not.toBeNull()
  })
})

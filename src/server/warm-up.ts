/**
 * Compiles the command path before the first client comes.
 *
 * A fresh Node server runs its first few thousand commands in the
 * interpreter, and TurboFan then compiles the hot functions while clients
 * wait: measured, the worst `mixed` put -> reserve outliers of a freshly
 * started server were the blocking-reserve path being compiled in its first
 * 0.3 s. So before the real listeners open, a throw-away server (its own
 * registry, tubes, ids, counters and reply buffers) is driven over loopback
 * sockets through the paths clients take most: put, reserve that waits and
 * is woken by a put, reserve-with-timeout that finds a job or times out at
 * once, release, delete. Then it is closed, and the real server, made after
 * it, starts from nothing: what the warm-up leaves is compiled code (and
 * spare parsers, connection.ts), never a job, an id or a counter.
 */
import net from 'node:net'
import { pino } from 'pino'
import { BeanstalkServer } from './server.js'

/** Producer/worker pairs driven at once (the server batches their reads as it would real clients'). */
const PAIRS = 4
/** Rounds per pair: enough calls for TurboFan to pick the hot functions (measured: see README "Performance"). */
export const WARM_UP_ROUNDS = 60
/** A warm-up not finished by then (a loaded machine) is cut short: the start is delayed by at most this. */
const LIMIT_MS = 600

const BODY = 'w'.repeat(100)

export interface WarmUpOptions {
  readonly maxJobSize: number
  readonly extensions: boolean
  readonly rounds?: number
}

/** Runs the warm-up; resolves when it is over (never rejects: a failed warm-up only costs speed). */
export async function warmUp(opts: WarmUpOptions): Promise<void> {
  const server = new BeanstalkServer({
    maxJobSize: opts.maxJobSize,
    binlogMaxSize: 10 << 20,
    log: pino({ level: 'silent' }),
    extensions: opts.extensions,
  })
  const clients: net.Socket[] = []
  let timer: NodeJS.Timeout | undefined
  try {
    const addr = await server.listen({ host: '127.0.0.1', port: 0 })
    if (typeof addr === 'string') return
    const rounds = opts.rounds ?? WARM_UP_ROUNDS
    const pairs = Array.from({ length: PAIRS }, (_, i) => runPair(addr.port, `warm-${i}`, rounds, clients))
    const abandoned = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, LIMIT_MS)
      timer.unref()
    })
    await Promise.race([Promise.all(pairs), abandoned])
  } catch {
    // No loopback, no port: start cold.
  } finally {
    clearTimeout(timer)
    for (const c of clients) c.destroy()
    await server.close()
  }
}

/** One producer and one worker on a tube of their own, `rounds` times through the script. */
async function runPair(port: number, tube: string, rounds: number, clients: net.Socket[]): Promise<void> {
  const p = await LineClient.open(port, clients)
  const w = await LineClient.open(port, clients)
  await p.call(`use ${tube}\r\n`, 1)
  await w.call(`watch ${tube}\r\nignore default\r\n`, 2)
  const put = `put 0 0 60 ${BODY.length}\r\n${BODY}\r\n`
  for (let i = 0; i < rounds; i++) {
    // A reserve that waits, woken by a put (sent in the same turn: the server reads the reserve first).
    const woken = w.call('reserve-with-timeout 10\r\n', 1)
    await p.call(put, 1)
    const id = jobId(await woken)
    await w.call(`release ${id} 0 0\r\n`, 1)
    // The same job again through a reserve that waits for a job for good (gets it at once now), and a reserve that waits for good, woken by a put.
    const held = jobId(await w.call('reserve\r\n', 1))
    await w.call(`delete ${held}\r\n`, 1)
    const waiting = w.call('reserve\r\n', 1)
    await p.call(put, 1)
    await w.call(`release ${jobId(await waiting)} 0 0\r\n`, 1)
    // A reserve that finds a job at once, then the job's end.
    const again = jobId(await w.call('reserve\r\n', 1))
    await w.call(`delete ${again}\r\nreserve-with-timeout 0\r\n`, 2)
    // Pipelined puts taken by reserve-with-timeout 0.
    await p.call(put + put, 2)
    const got = await w.call('reserve-with-timeout 0\r\nreserve-with-timeout 0\r\n', 2)
    const ids = got.match(/^RESERVED (\d+)/gm) ?? []
    await w.call(ids.map((r) => `delete ${r.slice(9)}\r\n`).join(''), ids.length)
  }
}

function jobId(reply: string): string {
  const m = /^RESERVED (\d+) /.exec(reply)
  if (m === null) throw new Error(`warm-up: unexpected reply ${reply.slice(0, 40)}`)
  return m[1]!
}

/** A minimal client: sends commands and waits for a number of reply lines (bodies skipped). */
class LineClient {
  private readonly socket: net.Socket
  private buf = ''
  private want = 0
  private got: string[] = []
  private done: ((reply: string) => void) | null = null

  private constructor(socket: net.Socket) {
    this.socket = socket
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => this.onData(d))
  }

  static open(port: number, clients: net.Socket[]): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(new LineClient(s)))
      clients.push(s)
      s.once('error', reject)
    })
  }

  /** Sends `cmds` and resolves with the next `replies` replies (a RESERVED with its body counts as one). */
  call(cmds: string, replies: number): Promise<string> {
    return new Promise((resolve) => {
      this.want = replies
      this.got = []
      this.done = resolve
      if (replies === 0) this.finish()
      this.socket.write(cmds)
    })
  }

  private onData(d: string): void {
    this.buf += d
    for (;;) {
      const eol = this.buf.indexOf('\r\n')
      if (eol === -1) return
      const line = this.buf.slice(0, eol)
      let end = eol + 2
      const m = /^RESERVED \d+ (\d+)$/.exec(line)
      if (m !== null) {
        end += Number(m[1]) + 2
        if (this.buf.length < end) return
      }
      this.buf = this.buf.slice(end)
      this.got.push(line)
      if (this.got.length === this.want) this.finish()
    }
  }

  private finish(): void {
    const done = this.done
    this.done = null
    done?.(this.got.join('\n'))
  }
}

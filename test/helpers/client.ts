/**
 * A raw beanstalk client over a real socket, for byte-exact assertions.
 * Every wait is bounded.
 */
import net from 'node:net'
import tls from 'node:tls'

const DEFAULT_WAIT_MS = 2000

export class RawClient {
  private readonly socket: net.Socket
  private buf = Buffer.alloc(0)
  private ended = false
  private waiter: (() => void) | null = null

  private constructor(socket: net.Socket) {
    this.socket = socket
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d])
      this.waiter?.()
    })
    socket.on('end', () => {
      this.ended = true
      this.waiter?.()
    })
    socket.on('close', () => {
      this.ended = true
      this.waiter?.()
    })
    socket.on('error', () => undefined)
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host }, () => resolve(new RawClient(s)))
      s.once('error', reject)
    })
  }

  /** Over TLS (Node's tls client); resolves once the handshake is done, rejects if it fails. */
  static connectTls(port: number, opts: tls.ConnectionOptions = {}, ms = DEFAULT_WAIT_MS): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts }, () => {
        clearTimeout(t)
        resolve(new RawClient(s))
      })
      const t = setTimeout(() => {
        s.destroy()
        reject(new Error(`TLS handshake not done after ${ms} ms`))
      }, ms)
      s.once('error', (err) => {
        clearTimeout(t)
        reject(err)
      })
    })
  }

  /** The socket, for what the protocol helpers do not cover (TLS details). */
  get raw(): net.Socket {
    return this.socket
  }

  static connectPath(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ path }, () => resolve(new RawClient(s)))
      s.once('error', reject)
    })
  }

  send(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data)
  }

  /** Resolves when `n` bytes have arrived (or rejects after `ms`), and consumes them. */
  async read(n: number, ms = DEFAULT_WAIT_MS): Promise<string> {
    await this.until(() => this.buf.length >= n || this.ended, ms, `waiting for ${n} bytes`)
    if (this.buf.length < n) throw new Error(`connection ended after ${JSON.stringify(this.buf.toString('latin1'))}`)
    const out = this.buf.subarray(0, n).toString('latin1')
    this.buf = this.buf.subarray(n)
    return out
  }

  /** Reads one CRLF-terminated line (CRLF included). */
  async line(ms = DEFAULT_WAIT_MS): Promise<string> {
    await this.until(() => this.buf.indexOf('\r\n') !== -1 || this.ended, ms, 'waiting for a line')
    const i = this.buf.indexOf('\r\n')
    if (i === -1) throw new Error(`connection ended after ${JSON.stringify(this.buf.toString('latin1'))}`)
    return this.read(i + 2)
  }

  /** Sends `cmd` and returns the next line. */
  async call(cmd: string, ms = DEFAULT_WAIT_MS): Promise<string> {
    this.send(cmd)
    return this.line(ms)
  }

  /** Reads an `OK <n>` reply and returns its YAML body. */
  async yaml(cmd: string): Promise<string> {
    const head = await this.call(cmd)
    const m = /^OK (\d+)\r\n$/.exec(head)
    if (m === null) throw new Error(`expected OK, got ${JSON.stringify(head)}`)
    const body = await this.read(Number(m[1]) + 2)
    return body.slice(0, -2)
  }

  /** Parsed `key: value` pairs of a stats reply. */
  async stats(cmd: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {}
    for (const l of (await this.yaml(cmd)).split('\n').slice(1)) {
      const i = l.indexOf(': ')
      if (i > 0) out[l.slice(0, i)] = l.slice(i + 2)
    }
    return out
  }

  /** Asserts nothing arrives for `ms`; returns what did arrive (empty if nothing). */
  async quiet(ms: number): Promise<string> {
    await new Promise((r) => setTimeout(r, ms))
    const out = this.buf.toString('latin1')
    this.buf = Buffer.alloc(0)
    return out
  }

  /** Resolves true once the server has closed the connection (bounded). */
  async closedByServer(ms = DEFAULT_WAIT_MS): Promise<boolean> {
    await this.until(() => this.ended, ms, 'waiting for the server to close')
    return this.ended
  }

  halfClose(): void {
    this.socket.end()
  }

  close(): void {
    this.socket.destroy()
  }

  private async until(cond: () => boolean, ms: number, what: string): Promise<void> {
    if (cond()) return
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiter = null
        reject(new Error(`timed out after ${ms} ms ${what}; have ${JSON.stringify(this.buf.toString('latin1'))}`))
      }, ms)
      this.waiter = () => {
        if (!cond()) return
        clearTimeout(t)
        this.waiter = null
        resolve()
      }
    })
  }
}

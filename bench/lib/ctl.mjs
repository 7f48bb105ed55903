// @ts-check
/**
 * A small blocking-style control client (one command at a time) for setup and
 * verification: stats, stats-tube, peek-delayed. Not on any measured path.
 */
import net from 'node:net'

/** Only loopback addresses may be driven. @param {string} host */
export function assertLoopback(host) {
  if (host === '::1' || host === 'localhost' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return
  throw new Error(`refusing non-loopback host ${host} (only 127.0.0.0/8 and ::1)`)
}

export class Ctl {
  /** @param {net.Socket} sock */
  constructor(sock) {
    this.sock = sock
    /** @type {Buffer} */
    this.buf = Buffer.alloc(0)
    /** @type {(() => void) | null} */
    this.wake = null
    this.closed = false
    sock.on('data', (d) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d
      this.poke()
    })
    sock.on('close', () => {
      this.closed = true
      this.poke()
    })
    sock.on('error', () => {})
  }

  poke() {
    const w = this.wake
    this.wake = null
    if (w) w()
  }

  /** @param {string} host @param {number} port @param {number} [timeoutMs] @returns {Promise<Ctl>} */
  static connect(host, port, timeoutMs = 5000) {
    assertLoopback(host)
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port })
      const t = setTimeout(() => {
        sock.destroy()
        reject(new Error('connect timeout'))
      }, timeoutMs)
      sock.once('connect', () => {
        clearTimeout(t)
        sock.setNoDelay(true)
        resolve(new Ctl(sock))
      })
      sock.once('error', (e) => {
        clearTimeout(t)
        reject(e)
      })
    })
  }

  /**
   * Sends one command and returns its reply line (without CRLF) and body.
   * @param {string} cmd without CRLF @param {number} [timeoutMs]
   * @returns {Promise<{line: string, body: string | null}>}
   */
  async cmd(cmd, timeoutMs = 30000) {
    this.sock.write(cmd + '\r\n', 'latin1')
    const end = Date.now() + timeoutMs
    for (;;) {
      const nl = this.buf.indexOf(10)
      if (nl >= 0) {
        const line = this.buf.toString('latin1', 0, nl > 0 && this.buf[nl - 1] === 13 ? nl - 1 : nl)
        const m = /^(?:OK|FOUND \d+|RESERVED \d+) (\d+)$/.exec(line)
        if (!m) {
          this.buf = this.buf.subarray(nl + 1)
          return { line, body: null }
        }
        const blen = Number(m[1])
        if (this.buf.length >= nl + 1 + blen + 2) {
          const body = this.buf.toString('latin1', nl + 1, nl + 1 + blen)
          this.buf = this.buf.subarray(nl + 1 + blen + 2)
          return { line, body }
        }
      }
      if (this.closed) throw new Error(`connection closed during '${cmd}'`)
      const left = end - Date.now()
      if (left <= 0) throw new Error(`timeout waiting for reply to '${cmd}'`)
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left)
        this.wake = () => {
          clearTimeout(t)
          resolve(undefined)
        }
      })
    }
  }

  /** `stats` as numbers (non-numeric fields dropped). @returns {Promise<Record<string, number>>} */
  async stats() {
    const r = await this.cmd('stats')
    if (r.body === null) throw new Error(`stats: ${r.line}`)
    return yamlNumbers(r.body)
  }

  close() {
    this.sock.destroy()
  }
}

/** @param {string} body @returns {Record<string, number>} */
export function yamlNumbers(body) {
  /** @type {Record<string, number>} */
  const out = {}
  for (const m of body.matchAll(/^([\w-]+): (-?\d+(?:\.\d+)?)\s*$/gm)) out[m[1] ?? ''] = Number(m[2])
  return out
}

/**
 * Waits until a beanstalk server answers on host:port.
 * @param {string} host @param {number} port @param {number} waitMs
 * @param {() => boolean} [gaveUp] stop early (e.g. the server process exited)
 */
export async function probe(host, port, waitMs, gaveUp) {
  const end = Date.now() + waitMs
  for (;;) {
    try {
      const c = await Ctl.connect(host, port, 1000)
      try {
        const r = await c.cmd('list-tube-used', 2000)
        if (r.line.startsWith('USING ')) return true
      } finally {
        c.close()
      }
    } catch {
      // not up yet
    }
    if (Date.now() > end || (gaveUp && gaveUp())) return false
    await new Promise((r) => setTimeout(r, 30))
  }
}

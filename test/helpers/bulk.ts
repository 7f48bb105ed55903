/**
 * Bulk traffic for tests that need a large queue: many commands pipelined
 * on one connection (written in large chunks, honouring backpressure), and
 * a process's memory from /proc. Every wait is bounded.
 */
import fs from 'node:fs'
import net from 'node:net'

/**
 * Sends `cmd(0) .. cmd(n - 1)` pipelined and resolves once n replies came,
 * each one line matching `ok` (which must not take a body). Rejects on the
 * first other reply, a closed connection, or after `ms`.
 */
export function pipelined(port: number, n: number, cmd: (i: number) => string, ok: RegExp, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' })
    let got = 0
    let carry = ''
    const fail = (err: Error): void => {
      clearTimeout(t)
      s.destroy()
      reject(err)
    }
    const t = setTimeout(() => fail(new Error(`${got} of ${n} replies after ${ms} ms`)), ms)
    s.setEncoding('latin1')
    s.on('error', fail)
    s.on('close', () => {
      if (got < n) fail(new Error(`connection closed after ${got} of ${n} replies`))
    })
    s.on('data', (d: string) => {
      const lines = (carry + d).split('\r\n')
      carry = lines.pop()!
      for (const l of lines) {
        if (!ok.test(l)) return fail(new Error(`reply ${got + 1}: ${JSON.stringify(l)}`))
        got++
      }
      if (got === n) {
        clearTimeout(t)
        s.destroy()
        resolve()
      }
    })
    let i = 0
    const write = (): void => {
      while (i < n) {
        let chunk = ''
        for (const end = Math.min(n, i + 1000); i < end; i++) chunk += cmd(i)
        if (!s.write(chunk, 'latin1')) {
          s.once('drain', write)
          return
        }
      }
    }
    s.on('connect', write)
  })
}

/** VmRSS and VmHWM of a live process, in MiB. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'latin1')
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(st)?.[1] ?? NaN)
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 }
}

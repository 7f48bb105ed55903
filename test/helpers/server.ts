/** Starts a real tsbeanstalkd server in-process on 127.0.0.1, port 0. */
import { pino } from 'pino'
import { BeanstalkServer } from '../../src/server/server.js'
import type { Clock } from '../../src/util/clock.js'

export interface TestServer {
  readonly server: BeanstalkServer
  readonly port: number
  close(): Promise<void>
}

export async function startServer(opts: { maxJobSize?: number; clock?: Clock; extensions?: boolean } = {}): Promise<TestServer> {
  const server = new BeanstalkServer({
    maxJobSize: opts.maxJobSize ?? 65535,
    binlogMaxSize: 10485760,
    log: pino({ level: 'silent' }),
    ...(opts.clock === undefined ? {} : { clock: opts.clock }),
    extensions: opts.extensions === true,
  })
  const addr = await server.listen({ host: '127.0.0.1', port: 0 })
  if (typeof addr === 'string') throw new Error('expected a TCP address')
  return { server, port: addr.port, close: () => server.close() }
}

/**
 * With a store to replay (-b), the server listens first and serves later,
 * as the reference does: a client that connects while the store replays is
 * accepted, its commands wait unanswered, and it is served, with the
 * replayed jobs, once serve() hands the store over. The clients that wait
 * count against the connection budget.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { BeanstalkServer } from '../../src/server/server.js'
import { openStore } from '../../src/store/open.js'
import { systemClock } from '../../src/util/clock.js'
import { RawClient } from '../helpers/client.js'
import { Model, tmpDir } from '../binlog/helpers.js'

const servers: BeanstalkServer[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close()
})

describe('a server that waits for its store', () => {
  it('accepts connections during the replay and answers them after, from the replayed queue', async () => {
    const dir = tmpDir()
    const m = new Model(dir, { clock: systemClock, now: Date.now })
    await m.open()
    m.put('kept')
    await m.commit()
    m.bl.close()

    const log = pino({ level: 'silent' })
    const server = new BeanstalkServer({ maxJobSize: 65535, binlogMaxSize: 1 << 20, log, awaitStore: true })
    servers.push(server)
    const addr = await server.listen({ host: '127.0.0.1', port: 0 })
    if (typeof addr === 'string') throw new Error('expected TCP')
    const c = await RawClient.connect(addr.port)
    c.send('peek-ready\r\n')
    // However long it waits, nothing is answered before the store is there.
    expect(await c.quiet(100)).toBe('')
    expect(server.connectionCount).toBe(0)

    const store = await openStore({ ...m.options(), engine: 'binlog', clock: systemClock, log }, server.restoreInto)
    server.serve(store)
    expect(await c.line()).toBe('FOUND 1 4\r\n')
    expect(await c.read(6)).toBe('kept\r\n')
    c.send('put 0 0 60 3\r\nnew\r\n')
    expect(await c.line()).toBe('INSERTED 2\r\n')
    c.close()
    await server.close()
    servers.length = 0
    store.close()
  })

  it('connections that wait count against the connection budget; serve() applies the budget of that moment', async () => {
    const log = pino({ level: 'silent' })
    const server = new BeanstalkServer({ maxJobSize: 65535, binlogMaxSize: 1 << 20, log, awaitStore: true, maxConnections: 3 })
    servers.push(server)
    const addr = await server.listen({ host: '127.0.0.1', port: 0 })
    if (typeof addr === 'string') throw new Error('expected TCP')
    const waiting = [await RawClient.connect(addr.port), await RawClient.connect(addr.port), await RawClient.connect(addr.port)]
    for (const c of waiting) c.send('list-tube-used\r\n')
    // A fourth is past the budget while the others wait: closed at once, not queued.
    const extra = await RawClient.connect(addr.port)
    expect(await extra.closedByServer()).toBe(true)
    expect(server.refusedConnections).toBe(1)
    // The store's files took descriptors meanwhile: two fit now, the last to come is refused.
    server.serve(undefined, 2)
    expect(await waiting[0]!.line()).toBe('USING default\r\n')
    expect(await waiting[1]!.line()).toBe('USING default\r\n')
    expect(await waiting[2]!.closedByServer()).toBe(true)
    expect(server.refusedConnections).toBe(2)
  })
})

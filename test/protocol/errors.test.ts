/**
 * The error matrix over real TCP: each malformed input gets the reference's
 * reply, and the same connection keeps working afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { startServer, type TestServer } from '../helpers/server.js'

let srv: TestServer

beforeAll(async () => {
  srv = await startServer({ maxJobSize: 10 })
})
afterAll(async () => {
  await srv.close()
})

/** [what the client sends, what it must receive] */
const MATRIX: [string, string][] = [
  ['foo\r\n', 'UNKNOWN_COMMAND\r\n'],
  ['PUT 0 0 1 1\r\n', 'UNKNOWN_COMMAND\r\n'],
  ['put\r\n', 'UNKNOWN_COMMAND\r\n'],
  ['\r\n', 'UNKNOWN_COMMAND\r\n'],
  ['stats \r\n', 'BAD_FORMAT\r\n'],
  ['reservefoo\r\n', 'BAD_FORMAT\r\n'],
  ['stats-tube\r\n', 'BAD_FORMAT\r\n'],
  ['delete \r\n', 'BAD_FORMAT\r\n'],
  ['delete 1 \r\n', 'BAD_FORMAT\r\n'],
  ['peek 18446744073709551616\r\n', 'BAD_FORMAT\r\n'],
  ['peek 18446744073709551615\r\n', 'NOT_FOUND\r\n'],
  ['touch a111\r\n', 'BAD_FORMAT\r\n'],
  ['bury 1\r\n', 'BAD_FORMAT\r\n'],
  ['release 1 2\r\n', 'BAD_FORMAT\r\n'],
  ['kick x\r\n', 'BAD_FORMAT\r\n'],
  ['stats-job 111ABC\r\n', 'BAD_FORMAT\r\n'],
  ['use -foo\r\n', 'BAD_FORMAT\r\n'],
  [`use ${'a'.repeat(201)}\r\n`, 'BAD_FORMAT\r\n'],
  ['watch a*b\r\n', 'BAD_FORMAT\r\n'],
  ['stats\0\r\n', 'BAD_FORMAT\r\n'],
  [`${'x'.repeat(500)}\r\n`, 'BAD_FORMAT\r\n'],
  ['put -1 0 0 1\r\n', 'BAD_FORMAT\r\n'],
  ['put 512 -1 100 0\r\n', 'BAD_FORMAT\r\n'],
  ['put 4294967296 0 1 0\r\n', 'BAD_FORMAT\r\n'],
  ['put 0 0 1 1\r\nxyz', 'EXPECTED_CRLF\r\n'],
  ['put 0 0 1 11\r\ndelete 9999\r\n', 'JOB_TOO_BIG\r\n'],
  ['put 0 0 1 1 \r\n', 'BAD_FORMAT\r\n'],
  ['pause-tube nope 1\r\n', 'NOT_FOUND\r\n'],
  ['stats-tube nope\r\n', 'NOT_FOUND\r\n'],
  ['kick-job 999\r\n', 'NOT_FOUND\r\n'],
  ['reserve-job 999\r\n', 'NOT_FOUND\r\n'],
  ['ignore default\r\n', 'NOT_IGNORED\r\n'],
]

describe('bad input gets the reference reply and loses nothing', () => {
  for (const [send, reply] of MATRIX) {
    it(`${JSON.stringify(send.length > 40 ? `${send.slice(0, 37)}...` : send)} -> ${reply.trim()}`, async () => {
      const c = await RawClient.connect(srv.port)
      try {
        c.send(send)
        expect(await c.read(reply.length)).toBe(reply)
        expect(await c.call('put 0 0 1 2\r\nok\r\n')).toMatch(/^INSERTED \d+\r\n$/)
        expect(await c.quiet(20)).toBe('')
      } finally {
        c.close()
      }
    })
  }

  it('a put whose body is BAD_FORMAT is not swallowed: the body runs as a command', async () => {
    const c = await RawClient.connect(srv.port)
    c.send('put +1 0 0 5\r\nstats\r\n')
    expect(await c.line()).toBe('BAD_FORMAT\r\n')
    expect(await c.line()).toMatch(/^OK \d+\r\n$/)
    c.close()
  })

  it('commands split across TCP packets at every byte still work', async () => {
    const c = await RawClient.connect(srv.port)
    const cmd = 'put 1 0 1 3\r\nabc\r\n'
    for (const ch of cmd) {
      c.send(ch)
      await new Promise((res) => setImmediate(res))
    }
    const inserted = await c.line()
    expect(inserted).toMatch(/^INSERTED (\d+)\r\n$/)
    const id = /\d+/.exec(inserted)![0]
    c.send(`peek ${id}\r\n`)
    expect(await c.read(`FOUND ${id} 3\r\nabc\r\n`.length)).toBe(`FOUND ${id} 3\r\nabc\r\n`)
    c.close()
  })

  it('binary bodies with CR, LF and NUL round-trip', async () => {
    const c = await RawClient.connect(srv.port)
    c.send('use bin\r\nput 0 0 1 6\r\n\r\n\0\r\0\n\r\n')
    expect(await c.line()).toBe('USING bin\r\n')
    const id = /\d+/.exec(await c.line())![0]
    c.send(`peek ${id}\r\n`)
    expect(await c.read(`FOUND ${id} 6\r\n`.length + 8)).toBe(`FOUND ${id} 6\r\n\r\n\0\r\0\n\r\n`)
    c.close()
  })

  it('ids are consumed by EXPECTED_CRLF but not by BAD_FORMAT or JOB_TOO_BIG', async () => {
    const c = await RawClient.connect(srv.port)
    const first = Number(/\d+/.exec(await c.call('put 0 0 1 1\r\na\r\n'))![0])
    expect(await c.call('put 0 0 1 1\r\nabc')).toBe('EXPECTED_CRLF\r\n')
    expect(await c.call('put x\r\n')).toBe('BAD_FORMAT\r\n')
    expect(await c.call('put 0 0 1 11\r\n01234567890\r\n')).toBe('JOB_TOO_BIG\r\n')
    expect(await c.call('put 0 0 1 1\r\na\r\n')).toBe(`INSERTED ${first + 2}\r\n`)
    c.close()
  })
})

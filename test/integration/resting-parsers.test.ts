/**
 * Connections at rest hand their parser back for the next connection that
 * reads (src/server/connection.ts): an idle connection holds none. A
 * connection in the middle of a command must keep its own, with the bytes it
 * has, while other connections' commands run on the parsers handed back.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { startServer, type TestServer } from '../helpers/server.js'

let srv: TestServer
const clients: RawClient[] = []

beforeEach(async () => {
  srv = await startServer()
})

afterEach(async () => {
  for (const c of clients.splice(0)) c.close()
  await srv.close()
})

async function connect(): Promise<RawClient> {
  const c = await RawClient.connect(srv.port)
  clients.push(c)
  return c
}

describe('parsers handed back at rest', () => {
  it('a line, a put line and a body cut across reads survive other connections commands in between', async () => {
    const [line, putLine, body] = [await connect(), await connect(), await connect()]
    const others = await Promise.all(Array.from({ length: 300 }, () => connect()))
    line.send('watc')
    putLine.send('put 1 0 10 5')
    body.send('put 1 0 10 5\r\nhe')
    // Each has been read (nothing to answer yet) before the others run.
    expect(await line.quiet(50)).toBe('')
    expect(await putLine.quiet(1)).toBe('')
    expect(await body.quiet(1)).toBe('')
    // More connections than parsers kept at rest, each with commands of its own.
    const replies = await Promise.all(
      others.map(async (c, i) => {
        c.send(`use o${i % 7}\r\nput 2 0 10 3\r\nabc\r\n`)
        return [await c.line(), await c.line()]
      }),
    )
    for (const [i, [use, ins]] of replies.entries()) {
      expect(use).toBe(`USING o${i % 7}\r\n`)
      expect(ins).toMatch(/^INSERTED \d+\r\n$/)
    }
    line.send('h t1\r\n')
    expect(await line.line()).toBe('WATCHING 2\r\n')
    putLine.send('\r\nworld\r\n')
    const a = (await putLine.line()).match(/^INSERTED (\d+)\r\n$/)
    body.send('llo\r\n')
    const b = (await body.line()).match(/^INSERTED (\d+)\r\n$/)
    expect(a).not.toBeNull()
    expect(b).not.toBeNull()
    expect(await line.call(`peek ${a![1]}\r\n`)).toBe(`FOUND ${a![1]} 5\r\n`)
    expect(await line.read(7)).toBe('world\r\n')
    expect(await line.call(`peek ${b![1]}\r\n`)).toBe(`FOUND ${b![1]} 5\r\n`)
    expect(await line.read(7)).toBe('hello\r\n')
  })
})

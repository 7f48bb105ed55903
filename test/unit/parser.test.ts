/**
 * Parser: every fixture gives the same commands whether it arrives whole,
 * split at any byte offset, or one byte at a time.
 */
import { describe, expect, it } from 'vitest'
import { Op } from '../../src/protocol/commands.js'
import { Parser } from '../../src/protocol/parser.js'
import { prng } from '../helpers/prng.js'

const OP_NAMES = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k])) as Record<number, string>

/**
 * Feeds chunks and returns a readable trace, acting on puts as dispatch does (max job size 10).
 * With `shared`, each chunk arrives in that one buffer, as socket reads do, and the
 * buffer is overwritten with junk once the parser was told to retain what it needs.
 */
function trace(chunks: Buffer[], maxJobSize = 10, shared?: Buffer, extensions = false): string[] {
  const p = new Parser(extensions)
  const out: string[] = []
  const drain = (): void => {
    for (;;) {
      const op = p.next()
      if (op === Op.NEED_MORE) return
      switch (op) {
        case Op.ERROR:
          out.push(`ERROR ${p.errorReply.toString('latin1').trim()}`)
          break
        case Op.PUT:
          out.push(`PUT ${p.pri} ${p.delay} ${p.ttr} ${p.bytes}${p.trailingJunk ? ' junk' : ''}`)
          if (p.bytes > maxJobSize) p.skip(p.bytes + 2)
          else if (!p.trailingJunk) p.expectBody(p.bytes)
          break
        case Op.PUT_BODY:
        case Op.PUT_BODY_BAD:
          out.push(`${OP_NAMES[op]} ${JSON.stringify(p.body!.toString('latin1'))}`)
          break
        case Op.PEEK:
        case Op.DELETE:
        case Op.TOUCH:
        case Op.KICK_JOB:
        case Op.STATS_JOB:
        case Op.RESERVE_JOB:
          out.push(`${OP_NAMES[op]} ${p.id}`)
          break
        case Op.RELEASE:
          out.push(`RELEASE ${p.id} ${p.pri} ${p.delay}`)
          break
        case Op.BURY:
          out.push(`BURY ${p.id} ${p.pri}`)
          break
        case Op.KICK:
          out.push(`KICK ${p.count}`)
          break
        case Op.RESERVE_TIMEOUT:
          out.push(`RESERVE_TIMEOUT ${p.timeout}`)
          break
        case Op.USE:
        case Op.WATCH:
        case Op.IGNORE:
        case Op.STATS_TUBE:
          out.push(`${OP_NAMES[op]} ${p.name}`)
          break
        case Op.PAUSE_TUBE:
          out.push(`PAUSE_TUBE ${p.name} ${p.delay}`)
          break
        case Op.WATCH_WEIGHTED:
          // With the extensions every watch comes this way; weight 1 is the reference's watch.
          out.push(p.ext!.weight === 1 ? `WATCH ${p.name}` : `WATCH ${p.name} ${p.ext!.weight}`)
          break
        default:
          out.push(OP_NAMES[op]!)
      }
    }
  }
  for (const c of chunks) {
    if (shared === undefined) {
      p.push(c)
      drain()
      continue
    }
    c.copy(shared)
    p.push(shared.subarray(0, c.length))
    drain()
    p.retain(shared.buffer)
    shared.fill(0x58)
  }
  return out
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1')

/** [input, expected trace] */
const FIXTURES: [string, string[]][] = [
  ['put 1 2 3 5\r\nhello\r\n', ['PUT 1 2 3 5', 'PUT_BODY "hello\\r\\n"']],
  ['put 0 0 1 0\r\n\r\n', ['PUT 0 0 1 0', 'PUT_BODY "\\r\\n"']],
  ['put 0 0 1 4\r\na\r\nb\r\n', ['PUT 0 0 1 4', 'PUT_BODY "a\\r\\nb\\r\\n"']],
  ['put 0 0 1 3\r\na\0b\r\n', ['PUT 0 0 1 3', 'PUT_BODY "a\\u0000b\\r\\n"']],
  ['put 0 0 1 2\r\nabcdstats\r\n', ['PUT 0 0 1 2', 'PUT_BODY_BAD "abcd"', 'STATS']],
  ['put 0 0 1 11\r\ndelete 9999\r\nstats\r\n', ['PUT 0 0 1 11', 'PUT_SKIPPED', 'STATS']],
  ['put 0 0 1 1 \r\nx\r\n', ['PUT 0 0 1 1 junk', 'ERROR UNKNOWN_COMMAND']],
  ['put  1  0 0 1\r\nx\r\n', ['PUT 1 0 0 1', 'PUT_BODY "x\\r\\n"']],
  ['put +1 0 0 1\r\nx\r\n', ['ERROR BAD_FORMAT', 'ERROR UNKNOWN_COMMAND']],
  ['put 4294967296 0 0 1\r\n', ['ERROR BAD_FORMAT']],
  ['put 4294967295 0 0 0\r\n\r\n', ['PUT 4294967295 0 0 0', 'PUT_BODY "\\r\\n"']],
  ['put 0 0 0 4294967296\r\n', ['ERROR BAD_FORMAT']],
  ['reserve\r\nreserve \r\nreservex\r\n', ['RESERVE', 'ERROR BAD_FORMAT', 'ERROR BAD_FORMAT']],
  ['reserve-with-timeout 5\r\n', ['RESERVE_TIMEOUT 5']],
  ['reserve-with-timeout -1\r\nreserve-with-timeout abc\r\n', ['RESERVE_TIMEOUT -1', 'RESERVE_TIMEOUT 0']],
  ['reserve-with-timeout 4294967296\r\nreserve-with-timeout 2147483648\r\n', ['RESERVE_TIMEOUT 0', 'RESERVE_TIMEOUT -1']],
  ['reserve-with-timeout 99999999999999999999\r\n', ['ERROR BAD_FORMAT']],
  ['reserve-job 7\r\n', ['RESERVE_JOB 7']],
  ['peek 007\r\npeek 1 \r\npeek +1\r\n', ['PEEK 7', 'ERROR BAD_FORMAT', 'ERROR BAD_FORMAT']],
  ['peek 18446744073709551615\r\npeek 18446744073709551616\r\n', ['PEEK 18446744073709552000', 'ERROR BAD_FORMAT']],
  ['peek\r\npeek-ready\r\npeek-delayed\r\npeek-buried\r\npeek-readyx\r\n', ['ERROR UNKNOWN_COMMAND', 'PEEK_READY', 'PEEK_DELAYED', 'PEEK_BURIED', 'ERROR BAD_FORMAT']],
  ['delete 1\r\ndelete \r\ndelete\r\n', ['DELETE 1', 'ERROR BAD_FORMAT', 'ERROR UNKNOWN_COMMAND']],
  ['release 1 2 3\r\nrelease 1 2\r\n', ['RELEASE 1 2 3', 'ERROR BAD_FORMAT']],
  ['bury 4 5\r\nbury 4\r\n', ['BURY 4 5', 'ERROR BAD_FORMAT']],
  ['kick 3\r\nkick -1\r\nkick 4294967298\r\nkick 2abc\r\nkick x\r\n', ['KICK 3', 'KICK 4294967295', 'KICK 2', 'KICK 2', 'ERROR BAD_FORMAT']],
  ['kick 18446744073709551616\r\nkick\r\n', ['ERROR BAD_FORMAT', 'ERROR UNKNOWN_COMMAND']],
  ['kick-job 3\r\ntouch 4\r\nstats-job 5\r\n', ['KICK_JOB 3', 'TOUCH 4', 'STATS_JOB 5']],
  ['use foo\r\nwatch a+b/c;d.e$f_g(h)\r\nignore x\r\n', ['USE foo', 'WATCH a+b/c;d.e$f_g(h)', 'IGNORE x']],
  ['use -foo\r\nuse foo \r\nuse  foo\r\nuse a*b\r\nuse \r\n', Array(5).fill('ERROR BAD_FORMAT') as string[]],
  [`use ${'a'.repeat(200)}\r\nuse ${'a'.repeat(201)}\r\n`, [`USE ${'a'.repeat(200)}`, 'ERROR BAD_FORMAT']],
  ['stats-tube default\r\nstats-tube\r\nstats\r\nstatsx\r\n', ['STATS_TUBE default', 'ERROR BAD_FORMAT', 'STATS', 'ERROR BAD_FORMAT']],
  ['list-tubes\r\nlist-tube-used\r\nlist-tubes-watched\r\nlist-tubesX\r\n', ['LIST_TUBES', 'LIST_TUBE_USED', 'LIST_TUBES_WATCHED', 'ERROR BAD_FORMAT']],
  ['pause-tube foo 10\r\npause-tubefoo 0\r\npause-tube  foo 1\r\npause-tube foo\r\n', ['PAUSE_TUBE foo 10', 'PAUSE_TUBE foo 0', 'PAUSE_TUBE foo 1', 'ERROR BAD_FORMAT']],
  ['quit\r\n', ['QUIT']],
  ['quitxyz\r\n', ['QUIT']],
  ['PUT 1 0 0 1\r\nfoo\r\n\r\n', ['ERROR UNKNOWN_COMMAND', 'ERROR UNKNOWN_COMMAND', 'ERROR UNKNOWN_COMMAND']],
  ['stats\0\r\nfoo\0bar\r\n', ['ERROR BAD_FORMAT', 'ERROR BAD_FORMAT']],
  // A bare LF never ends a line; a stray CR makes the line unfindable until the window fills.
  ['stats\nstats\r\n', ['ERROR BAD_FORMAT']],
  [`use a\rb\r\n${'x'.repeat(230)}\r\nstats\r\n`, ['ERROR BAD_FORMAT', 'STATS']],
  // Over-long lines: one BAD_FORMAT, then the next command.
  [`${'x'.repeat(500)}\r\nput 0 0 1 1\r\na\r\n`, ['ERROR BAD_FORMAT', 'PUT 0 0 1 1', 'PUT_BODY "a\\r\\n"']],
  // 224 bytes with CRLF is the longest command.
  [`pause-tube ${'a'.repeat(200)} 4294967295\r\n`, [`PAUSE_TUBE ${'a'.repeat(200)} 4294967295`]],
  // 225 bytes: the CR ends the first window, the LF starts the next: the next command's CRLF ends the bad line.
  [`use ${'a'.repeat(219)}\r\nuse x\r\nlist-tube-used\r\n`, ['ERROR BAD_FORMAT', 'LIST_TUBE_USED']],
]

describe('parser', () => {
  for (const [input, expected] of FIXTURES) {
    const data = b(input)
    const label = JSON.stringify(input.length > 60 ? `${input.slice(0, 57)}...` : input)
    it(`parses ${label}`, () => {
      expect(trace([data])).toEqual(expected)
    })
    it(`parses ${label} split at every offset and byte by byte`, () => {
      for (let i = 1; i < data.length; i++) {
        expect(trace([data.subarray(0, i), data.subarray(i)]), `split at ${i}`).toEqual(expected)
      }
      expect(trace([...data].map((x) => Buffer.from([x])))).toEqual(expected)
    })
    it(`parses ${label} the same with the extension verbs on (--extensions)`, () => {
      expect(trace([data], 10, undefined, true)).toEqual(expected)
    })
    it(`parses ${label} split at every offset, read into one reused buffer`, () => {
      const shared = Buffer.allocUnsafeSlow(data.length)
      for (let i = 1; i < data.length; i++) {
        expect(trace([data.subarray(0, i), data.subarray(i)], 10, shared), `split at ${i}`).toEqual(expected)
      }
    })
  }

  it('keeps unparsed input out of a reused read buffer (a connection waiting in reserve)', () => {
    const p = new Parser()
    const shared = Buffer.allocUnsafeSlow(64)
    const read = (s: string): void => {
      shared.fill(0x58)
      p.push(shared.subarray(0, shared.write(s, 'latin1')))
    }
    read('reserve\r\nstats\r\nuse x\r\nwat')
    expect(p.next()).toBe(Op.RESERVE)
    // The connection stops running here; the next read reuses the buffer.
    p.retain(shared.buffer)
    read('ch y\r\n')
    p.retain(shared.buffer)
    shared.fill(0x58)
    expect(p.next()).toBe(Op.STATS)
    expect(p.next()).toBe(Op.USE)
    expect(p.name).toBe('x')
    expect(p.next()).toBe(Op.WATCH)
    expect(p.name).toBe('y')
    expect(p.next()).toBe(Op.NEED_MORE)
    expect(p.buffered).toBe(0)
  })

  it('yields nothing for an incomplete line and keeps its bytes', () => {
    const p = new Parser()
    p.push(b('stat'))
    expect(p.next()).toBe(Op.NEED_MORE)
    p.push(b('s\r'))
    expect(p.next()).toBe(Op.NEED_MORE)
    p.push(b('\n'))
    expect(p.next()).toBe(Op.STATS)
    expect(p.buffered).toBe(0)
  })

  it('stops mid-chunk and resumes where it stopped', () => {
    const p = new Parser()
    p.push(b('reserve\r\nstats\r\n'))
    expect(p.next()).toBe(Op.RESERVE)
    expect(p.buffered).toBe(7)
    p.push(b('use x\r\n'))
    expect(p.next()).toBe(Op.STATS)
    expect(p.next()).toBe(Op.USE)
    expect(p.name).toBe('x')
    expect(p.next()).toBe(Op.NEED_MORE)
  })

  it('copies bodies out of the socket chunk', () => {
    const p = new Parser()
    const chunk = Buffer.alloc(18)
    chunk.write('put 0 0 1 3\r\nabc\r\n', 'latin1')
    p.push(chunk)
    expect(p.next()).toBe(Op.PUT)
    p.expectBody(3)
    expect(p.next()).toBe(Op.PUT_BODY)
    expect(p.body!.buffer).not.toBe(chunk.buffer)
  })

  it('swallows a huge oversized body in pieces, then yields PUT_SKIPPED', () => {
    const p = new Parser()
    p.push(b('put 0 0 1 100000\r\n'))
    expect(p.next()).toBe(Op.PUT)
    p.skip(100002)
    for (let i = 0; i < 10; i++) {
      p.push(Buffer.alloc(10000, 0x41))
      expect(p.next()).toBe(Op.NEED_MORE)
    }
    p.push(b('\r\nstats\r\n'))
    expect(p.next()).toBe(Op.PUT_SKIPPED)
    expect(p.next()).toBe(Op.STATS)
  })

  it('reads a put body into the space it is given', () => {
    const p = new Parser()
    const space = Buffer.alloc(20, 0x2e)
    p.push(b('put 0 0 1 3\r\nab'))
    expect(p.next()).toBe(Op.PUT)
    p.expectBody(3, space, 7)
    expect(p.next()).toBe(Op.NEED_MORE)
    p.push(b('c\r\n'))
    expect(p.next()).toBe(Op.PUT_BODY)
    expect(space.toString('latin1')).toBe('.......abc\r\n........')
    expect([p.bodyOff, p.bodyEnd]).toEqual([7, 12])
  })
})

/**
 * kick (strtoul) and reserve-with-timeout (strtol) numbers against a BigInt
 * model of the C functions: the parser's fast path for short numbers and its
 * exact path for long ones must agree with it everywhere.
 */
describe('C number parsing', () => {
  const U64 = 2n ** 64n
  const modelKick = (arg: string): string => {
    const m = /^[ \t\n\v\f\r]*([+-]?)(\d*)/.exec(arg)!
    if (m[2] === '') return 'ERROR BAD_FORMAT'
    const mag = BigInt(m[2]!)
    if (mag >= U64) return 'ERROR BAD_FORMAT'
    const v = m[1] === '-' ? (U64 - mag) % U64 : mag
    return `KICK ${BigInt.asUintN(32, v)}`
  }
  const modelTimeout = (arg: string): string => {
    const m = /^[ \t\n\v\f\r]*([+-]?)(\d*)/.exec(arg)!
    if (m[2] === '') return 'RESERVE_TIMEOUT 0'
    const mag = BigInt(m[2]!)
    if (mag > (m[1] === '-' ? 2n ** 63n : 2n ** 63n - 1n)) return 'ERROR BAD_FORMAT'
    const t = Number(BigInt.asIntN(32, m[1] === '-' ? -mag : mag))
    return `RESERVE_TIMEOUT ${t < 0 ? -1 : t}`
  }
  const rnd = prng(20261124)
  const args: string[] = ['0', '-0', '+7', ' 12', '999999999999999', '1000000000000000', '-999999999999999', '4294967295', '4294967296', '-2147483648', '2147483647', '2147483648']
  for (let i = 0; i < 400; i++) {
    const digits = Array.from({ length: 1 + rnd.int(22) }, () => String(rnd.int(10))).join('')
    args.push(`${rnd.pick(['', ' ', '  '])}${rnd.pick(['', '', '-', '+'])}${digits}${rnd.pick(['', '', 'x', ' 5'])}`)
  }

  it('kick <n> as strtoul', () => {
    for (const a of args) expect(trace([b(`kick ${a}\r\n`)]), a).toEqual([modelKick(` ${a}`)])
  })

  it('reserve-with-timeout <n> as strtol truncated to an int', () => {
    for (const a of args) expect(trace([b(`reserve-with-timeout ${a}\r\n`)]), a).toEqual([modelTimeout(` ${a}`)])
  })
})

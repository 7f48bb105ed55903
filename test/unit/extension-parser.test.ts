/**
 * The extension grammar (tuber's): put tags, reserve-batch, delete-batch,
 * reserve-mode, watch with a weight, stats-group. Each fixture gives the same
 * commands whole, split at every offset and byte by byte; without the switch
 * every one of these lines is answered as the reference answers it.
 */
import { describe, expect, it } from 'vitest'
import { Op } from '../../src/protocol/commands.js'
import { BATCH_MAX, EXT_LINE_MAX } from '../../src/protocol/extensions.js'
import { Parser } from '../../src/protocol/parser.js'

const OP_NAMES = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k])) as Record<number, string>

/** Feeds chunks to a parser with the extensions and returns a readable trace (bodies read as dispatch would). */
function trace(chunks: Buffer[], extensions = true): string[] {
  const p = new Parser(extensions)
  const out: string[] = []
  const drain = (): void => {
    for (let op = p.next(); op !== Op.NEED_MORE; op = p.next()) {
      const x = p.ext
      switch (op) {
        case Op.ERROR:
          out.push(`ERROR ${p.errorReply.toString('latin1').trim()}`)
          break
        case Op.PUT:
          out.push(`PUT ${p.bytes}${p.trailingJunk ? ' junk' : ''}`)
          if (!p.trailingJunk) p.expectBody(p.bytes)
          break
        case Op.PUT_TAGGED: {
          const t = x!.tags!
          out.push(`PUT_TAGGED ${p.pri} ${p.delay} ${p.ttr} ${p.bytes} idp=${t.idpKey}:${t.idpTtl} grp=${t.group} aft=${t.after} con=${t.conKey}:${t.conLimit}`)
          p.expectBody(p.bytes, undefined, 0, Op.PUT_BODY_TAGGED)
          break
        }
        case Op.PUT_BODY:
        case Op.PUT_BODY_TAGGED:
        case Op.PUT_BODY_BAD:
          out.push(`${OP_NAMES[op]} ${JSON.stringify(p.body.toString('latin1'))}`)
          break
        case Op.RESERVE_BATCH:
          out.push(`RESERVE_BATCH ${x!.count}`)
          break
        case Op.DELETE_BATCH:
          out.push(`DELETE_BATCH ${x!.idCount}: ${Array.from(x!.ids!.subarray(0, Math.min(x!.idCount, 3))).join(' ')}`)
          break
        case Op.RESERVE_MODE:
          out.push(`RESERVE_MODE ${x!.weighted ? 'weighted' : 'fifo'}`)
          break
        case Op.WATCH_WEIGHTED:
          out.push(`WATCH ${p.name} ${x!.weight}`)
          break
        case Op.WATCH:
        case Op.STATS_GROUP:
          out.push(`${OP_NAMES[op]} ${p.name}`)
          break
        default:
          out.push(OP_NAMES[op]!)
      }
    }
  }
  for (const c of chunks) {
    p.push(c)
    drain()
  }
  return out
}

const b = (s: string): Buffer => Buffer.from(s, 'latin1')
const ids = (n: number, width = 1): string => Array.from({ length: n }, (_, i) => String(i + 1).padStart(width, '0')).join(' ')

/** [input, with --extensions, without (the reference's)] */
const FIXTURES: [string, string[], string[]][] = [
  [
    'put 1 2 3 2 idp:k\r\nab\r\n',
    ['PUT_TAGGED 1 2 3 2 idp=k:0 grp=null aft=null con=null:1', 'PUT_BODY_TAGGED "ab\\r\\n"'],
    ['PUT 2 junk', 'ERROR UNKNOWN_COMMAND'],
  ],
  [
    'put 0 0 1 1 idp:key:60 grp:g1 aft:g0 con:api:3\r\nx\r\n',
    ['PUT_TAGGED 0 0 1 1 idp=key:60 grp=g1 aft=g0 con=api:3', 'PUT_BODY_TAGGED "x\\r\\n"'],
    ['PUT 1 junk', 'ERROR UNKNOWN_COMMAND'],
  ],
  // Order-free, several spaces between tags.
  ['put 0 0 1 0 con:c   idp:k\r\n\r\n', ['PUT_TAGGED 0 0 1 0 idp=k:0 grp=null aft=null con=c:1', 'PUT_BODY_TAGGED "\\r\\n"'], ['PUT 0 junk', 'ERROR UNKNOWN_COMMAND']],
  // Malformed or unknown tags are the reference's trailing junk: BAD_FORMAT, body not swallowed.
  ...[
    'foo:bar',
    'idp:',
    'idp:-bad',
    'idp:k:',
    'idp:k:x',
    'idp:a:1:2',
    'con:c:0',
    'con:c:4294967296',
    'grp:a:1',
    'idp:a idp:b',
    'grp:a*b',
    `grp:${'g'.repeat(201)}`,
    'idp:k ',
    'IDP:k',
  ].map((tags): [string, string[], string[]] => [`put 0 0 1 1 ${tags}\r\nx\r\n`, ['PUT 1 junk', 'ERROR UNKNOWN_COMMAND'], ['PUT 1 junk', 'ERROR UNKNOWN_COMMAND']]),
  // A plain put and its junk are the reference's with the switch on too.
  ['put 0 0 1 1\r\nx\r\nput 0 0 1 1 \r\n', ['PUT 1', 'PUT_BODY "x\\r\\n"', 'PUT 1 junk'], ['PUT 1', 'PUT_BODY "x\\r\\n"', 'PUT 1 junk']],
  ['reserve-batch 5\r\nreserve-batch 1000\r\n', ['RESERVE_BATCH 5', 'RESERVE_BATCH 1000'], ['ERROR BAD_FORMAT', 'ERROR BAD_FORMAT']],
  [
    'reserve-batch 0\r\nreserve-batch 1001\r\nreserve-batch x\r\nreserve-batch \r\nreserve-batch 5 \r\nreserve-batch\r\n',
    Array(6).fill('ERROR BAD_FORMAT') as string[],
    Array(6).fill('ERROR BAD_FORMAT') as string[],
  ],
  ['delete-batch 1 2  3 99\r\n', ['DELETE_BATCH 4: 1 2 3'], ['ERROR UNKNOWN_COMMAND']],
  [
    'delete-batch \r\ndelete-batch 1 \r\ndelete-batch 1 x\r\ndelete-batch 18446744073709551616\r\ndelete-batch -1\r\n',
    Array(5).fill('ERROR BAD_FORMAT') as string[],
    Array(5).fill('ERROR UNKNOWN_COMMAND') as string[],
  ],
  ['delete-batch 18446744073709551615\r\n', ['DELETE_BATCH 1: 18446744073709552000'], ['ERROR UNKNOWN_COMMAND']],
  ['reserve-mode weighted\r\nreserve-mode fifo\r\nreserve-mode default\r\n', ['RESERVE_MODE weighted', 'RESERVE_MODE fifo', 'ERROR BAD_FORMAT'], ['ERROR BAD_FORMAT', 'ERROR BAD_FORMAT', 'ERROR BAD_FORMAT']],
  ['watch foo 5\r\nwatch foo\r\nwatch foo 9999\r\n', ['WATCH foo 5', 'WATCH foo 1', 'WATCH foo 9999'], ['ERROR BAD_FORMAT', 'WATCH foo', 'ERROR BAD_FORMAT']],
  [
    'watch foo 0\r\nwatch foo 10000\r\nwatch foo  5\r\nwatch foo \r\nwatch -foo\r\nwatch foo x\r\n',
    Array(6).fill('ERROR BAD_FORMAT') as string[],
    Array(6).fill('ERROR BAD_FORMAT') as string[],
  ],
  ['stats-group import\r\nstats-group -x\r\nstats-group\r\n', ['STATS_GROUP import', 'ERROR BAD_FORMAT', 'ERROR BAD_FORMAT'], ['ERROR BAD_FORMAT', 'ERROR BAD_FORMAT', 'ERROR BAD_FORMAT']],
]

describe('extension grammar', () => {
  for (const [input, on, off] of FIXTURES) {
    const data = b(input)
    const label = JSON.stringify(input.length > 60 ? `${input.slice(0, 57)}...` : input)
    it(`parses ${label}, whole, split at every offset and byte by byte`, () => {
      expect(trace([data])).toEqual(on)
      for (let i = 1; i < data.length; i++) expect(trace([data.subarray(0, i), data.subarray(i)]), `split at ${i}`).toEqual(on)
      expect(trace([...data].map((x) => Buffer.from([x])))).toEqual(on)
    })
    it(`answers ${label} as the reference without the switch`, () => {
      expect(trace([data], false)).toEqual(off)
    })
  }
})

describe('extension lines past 224 bytes', () => {
  const most = `delete-batch ${ids(BATCH_MAX, 20)}`

  it('take a delete-batch of 1000 twenty-digit ids, the longest extension line, however it arrives', () => {
    const data = b(`${most}\r\nstats\r\n`)
    expect(most.length + 2).toBe(EXT_LINE_MAX)
    const expected = [`DELETE_BATCH 1000: 1 2 3`, 'STATS']
    expect(trace([data])).toEqual(expected)
    for (const at of [1, 100, 223, 224, 225, 4000, most.length, most.length + 1]) {
      expect(trace([data.subarray(0, at), data.subarray(at)]), `split at ${at}`).toEqual(expected)
    }
    const chunks: Buffer[] = []
    for (let i = 0; i < data.length; i += 97) chunks.push(data.subarray(i, i + 97))
    expect(trace(chunks)).toEqual(expected)
  })

  it('refuse 1001 ids, and a line longer than the longest: one BAD_FORMAT, then the next command', () => {
    expect(trace([b(`delete-batch ${ids(BATCH_MAX + 1)}\r\nstats\r\n`)])).toEqual(['ERROR BAD_FORMAT', 'STATS'])
    expect(trace([b(`${most} 1\r\nstats\r\n`)])).toEqual(['ERROR BAD_FORMAT', 'STATS'])
  })

  it('take a put with four 200-byte keys', () => {
    const k = (c: string): string => c.repeat(200)
    const line = `put 0 0 1 1 idp:${k('i')}:4294967295 grp:${k('g')} aft:${k('a')} con:${k('c')}:4294967295`
    const data = b(`${line}\r\nx\r\n`)
    const expected = [`PUT_TAGGED 0 0 1 1 idp=${k('i')}:4294967295 grp=${k('g')} aft=${k('a')} con=${k('c')}:4294967295`, 'PUT_BODY_TAGGED "x\\r\\n"']
    expect(trace([data])).toEqual(expected)
    for (let i = 200; i < line.length + 3; i += 37) expect(trace([data.subarray(0, i), data.subarray(i)]), `split at ${i}`).toEqual(expected)
  })

  it('keep the reference window for every other verb, and for put without the switch', () => {
    expect(trace([b(`use ${'a'.repeat(300)}\r\nstats\r\n`)])).toEqual(['ERROR BAD_FORMAT', 'STATS'])
    expect(trace([b(`put 0 0 1 1 grp:${'g'.repeat(200)} aft:${'a'.repeat(20)}\r\nstats\r\n`)], false)).toEqual(['ERROR BAD_FORMAT', 'STATS'])
  })
})

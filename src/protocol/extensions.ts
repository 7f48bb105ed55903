/**
 * The extension verbs, served only with --extensions (docs/EXTENSIONS.md).
 * Without the switch a parser never matches them, so their lines get the
 * reference's replies (UNKNOWN_COMMAND, or BAD_FORMAT where a standard verb
 * is a prefix, e.g. `reserve-batch 5` after `reserve`).
 *
 * A parser made with extensions tries these before the reference's verbs:
 * each has a name of its own, and putting them first keeps a standard verb
 * that is a prefix of one (`reserve` of `reserve-batch`) from taking it.
 *
 * The grammar is tuber's (tuberq/tuber README): put tags `idp:<key>[:<ttl>]`,
 * `grp:<name>`, `aft:<name>`, `con:<key>[:<n>]`; `reserve-batch <n>`,
 * `delete-batch <id>...`, `reserve-mode fifo|weighted`, `watch <tube> <weight>`,
 * `stats-group <name>`. Everything here is pure: bytes in, fields of the
 * parser's ExtensionArgs out, Op.ERROR with BAD_FORMAT for anything malformed.
 *
 * Invariants:
 * - A line that parses without the extensions parses to the same command with
 *   them (`watch <tube>` is WATCH_WEIGHTED with weight 1, handled as WATCH);
 *   only lines the reference answers BAD_FORMAT or UNKNOWN_COMMAND change.
 * - Keys and group names follow the tube-name rules (1-200 bytes of
 *   NAME_CHAR, no leading '-'); ':' is not a name byte, so `idp:k:60` splits
 *   at its only second colon.
 */
import { NAME_CHAR, NAME_MAX, Reply, SPACE, U32_MAX } from './constants.js'
import { Op } from './commands.js'
import type { Parser } from './parser.js'
import { Args, verb, type Verb } from './verbs.js'
import type { AdminArgs } from './admin-verbs.js'

/** reserve-batch and delete-batch take 1 to this many (tuber's MAX_RESERVE_BATCH, MAX_DELETE_BATCH). */
export const BATCH_MAX = 1000
/** watch <tube> <weight>: 1 to this (tuber's MAX_TUBE_WEIGHT). */
export const WEIGHT_MAX = 9999
/** Longest key or group name: the tube-name limit. */
export const KEY_MAX = NAME_MAX
/**
 * Longest extension line, CRLF included: delete-batch with BATCH_MAX 20-digit
 * ids. Only `put `, `delete-batch ` and `tube-policy ` (fan-out) lines may pass the reference's 224 bytes.
 */
export const EXT_LINE_MAX = 'delete-batch'.length + BATCH_MAX * 21 + 2

/** The tags of one put; a fresh object per tagged put (it becomes the job's). */
export class PutTags {
  idpKey: string | null = null
  /** idp:<key>:<ttl>: seconds the key keeps answering after the job's delete; 0 without. */
  idpTtl = 0
  group: string | null = null
  after: string | null = null
  conKey: string | null = null
  /** con:<key>:<n>; 1 without. */
  conLimit = 1
}

/** Where extension verbs leave their arguments (a parser has one only with the extensions). */
export class ExtensionArgs {
  /** reserve-batch: how many. */
  count = 0
  /** delete-batch: the ids, in order; made on first use. */
  ids: Float64Array | null = null
  idCount = 0
  /** reserve-mode: weighted (true) or fifo. */
  weighted = false
  /** watch: the weight (1 when none is given). */
  weight = 1
  /** PUT_TAGGED: the tags of the put line. */
  tags: PutTags | null = null
  /** Extensions II (admin-verbs.ts): made on first use. */
  admin: AdminArgs | null = null
}

export const bad = (p: Parser): Op => {
  p.errorReply = Reply.BAD_FORMAT
  return Op.ERROR
}

const isDigit = (b: number): boolean => b >= 0x30 && b <= 0x39

/** Digits only, `buf[from, to)`, as a number no larger than `max`; -1 if not. */
export function digits(buf: Buffer, from: number, to: number, max: number): number {
  if (from >= to || to - from > 20) return -1
  let v = 0
  for (let i = from; i < to; i++) {
    const b = buf[i]!
    if (!isDigit(b)) return -1
    v = v * 10 + (b - 0x30)
  }
  return v <= max ? v : -1
}

/** A key or group name, `buf[from, to)`, by the tube-name rules; null if it breaks one. */
export function key(buf: Buffer, from: number, to: number): string | null {
  const len = to - from
  if (len < 1 || len > KEY_MAX || buf[from] === 0x2d) return null
  for (let i = from; i < to; i++) if (NAME_CHAR[buf[i]!] === 0) return null
  return buf.toString('latin1', from, to)
}

const COLON = 0x3a
const tag = (s: string): number => s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16)
const IDP = tag('idp')
const GRP = tag('grp')
const AFT = tag('aft')
const CON = tag('con')

/**
 * The tags after a put's four numbers, `buf[from, end)`: one or more, each
 * after one or more spaces, each kind at most once. Anything else (an unknown
 * tag, a bad key, a trailing space) returns null: the put is then the
 * reference's BAD_FORMAT (trailing junk), body not swallowed.
 */
export function readTags(buf: Buffer, from: number, end: number): PutTags | null {
  const t = new PutTags()
  let p = from
  while (p < end) {
    if (buf[p] !== SPACE) return null
    while (p < end && buf[p] === SPACE) p++
    let q = p
    while (q < end && buf[q] !== SPACE) q++
    if (q - p < 5 || buf[p + 3] !== COLON) return null
    const kind = buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16)
    const v = p + 4
    // idp: and con: may end in :<number>.
    let colon = -1
    for (let i = v; i < q; i++) if (buf[i] === COLON) colon = colon === -1 ? i : -2
    if (colon === -2) return null
    const keyEnd = colon === -1 ? q : colon
    if (kind === IDP && t.idpKey === null) {
      t.idpKey = key(buf, v, keyEnd)
      t.idpTtl = colon === -1 ? 0 : digits(buf, colon + 1, q, U32_MAX)
      if (t.idpKey === null || t.idpTtl < 0) return null
    } else if (kind === CON && t.conKey === null) {
      t.conKey = key(buf, v, keyEnd)
      t.conLimit = colon === -1 ? 1 : digits(buf, colon + 1, q, U32_MAX)
      if (t.conKey === null || t.conLimit < 1) return null
    } else if (kind === GRP && t.group === null && colon === -1) {
      if ((t.group = key(buf, v, q)) === null) return null
    } else if (kind === AFT && t.after === null && colon === -1) {
      if ((t.after = key(buf, v, q)) === null) return null
    } else {
      return null
    }
    p = q
  }
  return t
}

/** Whether a line that filled the reference's 224-byte window may go on (EXT_LINE_MAX). */
export function mayBeLong(buf: Buffer, start: number): boolean {
  return startsWith(buf, start, PUT) || startsWith(buf, start, DELETE_BATCH) || startsWith(buf, start, TUBE_POLICY)
}

const PUT = Buffer.from('put ', 'latin1')
const DELETE_BATCH = Buffer.from('delete-batch ', 'latin1')
/** tube-policy <tube> fan-out with up to 16 targets of 200 bytes (admin-verbs.ts). */
const TUBE_POLICY = Buffer.from('tube-policy ', 'latin1')

function startsWith(buf: Buffer, start: number, word: Buffer): boolean {
  if (buf.length - start < word.length) return false
  for (let i = 0; i < word.length; i++) if (buf[start + i] !== word[i]) return false
  return true
}

// --- the verbs' argument readers ------------------------------------------------

/** reserve-batch <n>: 1..BATCH_MAX, digits only, ending the line. */
function parseReserveBatch(p: Parser, buf: Buffer, from: number, end: number): Op {
  const n = digits(buf, from, end, BATCH_MAX)
  if (n < 1) return bad(p)
  p.ext!.count = n
  return Op.RESERVE_BATCH
}

/** delete-batch <id> [<id>...]: 1..BATCH_MAX u64 ids separated by spaces. */
function parseDeleteBatch(p: Parser, buf: Buffer, from: number, end: number): Op {
  const x = p.ext!
  const ids = (x.ids ??= new Float64Array(BATCH_MAX))
  let n = 0
  let i = from
  while (i < end) {
    let j = i
    while (j < end && buf[j] !== SPACE) j++
    // Ids above 2**53 lose precision, which is harmless: no job id gets there.
    const id = j - i === 20 && buf.toString('latin1', i, j) > '18446744073709551615' ? -1 : digits(buf, i, j, Infinity)
    if (id < 0 || n === BATCH_MAX) return bad(p)
    ids[n++] = id
    if (j === end) break
    while (j < end && buf[j] === SPACE) j++
    if (j === end) return bad(p) // a trailing space
    i = j
  }
  if (n === 0) return bad(p)
  x.idCount = n
  return Op.DELETE_BATCH
}

const FIFO = Buffer.from('fifo', 'latin1')
const WEIGHTED = Buffer.from('weighted', 'latin1')

/** reserve-mode fifo|weighted. */
function parseReserveMode(p: Parser, buf: Buffer, from: number, end: number): Op {
  const len = end - from
  if (len === FIFO.length && startsWith(buf, from, FIFO)) p.ext!.weighted = false
  else if (len === WEIGHTED.length && startsWith(buf, from, WEIGHTED)) p.ext!.weighted = true
  else return bad(p)
  return Op.RESERVE_MODE
}

/**
 * watch <tube> [<weight>]: the reference's name rules for the tube, then
 * optionally one space and a weight 1..WEIGHT_MAX. Without a weight it is the
 * reference's `watch` (weight 1).
 */
function parseWatch(p: Parser, buf: Buffer, from: number, end: number): Op {
  let sp = from
  while (sp < end && buf[sp] !== SPACE) sp++
  const name = key(buf, from, sp)
  if (name === null) return bad(p)
  const w = sp === end ? 1 : digits(buf, sp + 1, end, WEIGHT_MAX)
  if (w < 1) return bad(p)
  p.name = name
  p.ext!.weight = w
  return Op.WATCH_WEIGHTED
}

/** stats-group <name>. */
function parseStatsGroup(p: Parser, buf: Buffer, from: number, end: number): Op {
  const name = key(buf, from, end)
  if (name === null) return bad(p)
  p.name = name
  return Op.STATS_GROUP
}

export const EXTENSION_VERBS: readonly Verb[] = [
  verb('reserve-batch ', Op.RESERVE_BATCH, Args.EXT, parseReserveBatch),
  verb('reserve-mode ', Op.RESERVE_MODE, Args.EXT, parseReserveMode),
  verb('delete-batch ', Op.DELETE_BATCH, Args.EXT, parseDeleteBatch),
  verb('stats-group ', Op.STATS_GROUP, Args.EXT, parseStatsGroup),
  verb('watch ', Op.WATCH_WEIGHTED, Args.EXT, parseWatch),
]

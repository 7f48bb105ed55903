/**
 * Extensions II (--extensions, docs/EXTENSIONS.md "Browse, flush, policies"):
 * the grammar of the operator commands. Pure: bytes in, fields of
 * `parser.ext.admin` out, Op.ERROR with BAD_FORMAT for anything malformed.
 *
 *   list-jobs <tube> <state> <after-id> <limit>
 *   flush-tube <tube> [<state>]
 *   delete-tube <tube>
 *   tube-policy <tube> max-retries <n> [dead-letter <tube>]
 *   tube-policy <tube> max-jobs <n>
 *   tube-policy <tube> fan-out <tube>[,<tube>...] | -
 *   stats-tube-policy <tube>
 *   reprioritize <id> <pri>
 *   redelay <id> <seconds>
 *
 * Invariants:
 * - Arguments are separated by exactly one space and nothing follows the
 *   last one (as the reference's own commands).
 * - Tube names follow the reference's rules (1-200 NAME_CHAR bytes, no leading '-').
 * - None of these verbs is a prefix of a standard verb or has one as its
 *   prefix followed by a space, so with the switch off every one of these
 *   lines gets the reference's reply (conformance/extensions/*_off).
 */
import { Op } from './commands.js'
import { U32_MAX, SPACE } from './constants.js'
import { bad, digits, key } from './extensions.js'
import type { Parser } from './parser.js'
import { Args, verb, type Verb } from './verbs.js'

/** list-jobs: at most this many ids per page. */
export const LIST_MAX = 1000

/** States as list-jobs and flush-tube name them; the queue's JobState numbers, 0 for "all". */
export const ListState = { ALL: 0, READY: 1, RESERVED: 2, BURIED: 3, DELAYED: 4 } as const
export type ListState = (typeof ListState)[keyof typeof ListState]

const STATE_WORDS: readonly (readonly [string, ListState])[] = [
  ['ready', ListState.READY],
  ['reserved', ListState.RESERVED],
  ['buried', ListState.BURIED],
  ['delayed', ListState.DELAYED],
]

export const PolicyKind = { MAX_RETRIES: 1, MAX_JOBS: 2, FAN_OUT: 3 } as const

/** fan-out: at most this many target tubes (the line stays within EXT_LINE_MAX). */
export const FAN_OUT_MAX = 16
export type PolicyKind = (typeof PolicyKind)[keyof typeof PolicyKind]

/** Where the operator commands leave their arguments. */
export class AdminArgs {
  tube = ''
  state: ListState = ListState.ALL
  /** list-jobs: the cursor (0: from the start). reprioritize, redelay: the job. */
  id = 0
  /** list-jobs: the page size; tube-policy: n; reprioritize: pri; redelay: seconds. */
  n = 0
  policy: PolicyKind = PolicyKind.MAX_RETRIES
  /** tube-policy max-retries ... dead-letter <tube>; null without. */
  deadLetter: string | null = null
  /** tube-policy fan-out: the targets in order (empty: `-`, none). */
  fanOut: string[] = []
}

const args = (p: Parser): AdminArgs => (p.ext!.admin ??= new AdminArgs())

/** Splits `buf[from, end)` at single spaces; null on an empty field (two spaces, a trailing one). */
function fields(buf: Buffer, from: number, end: number): [number, number][] | null {
  const out: [number, number][] = []
  let i = from
  for (;;) {
    let j = i
    while (j < end && buf[j] !== SPACE) j++
    if (j === i) return null
    out.push([i, j])
    if (j === end) return out
    i = j + 1
  }
}

function word(buf: Buffer, f: [number, number]): string {
  return buf.toString('latin1', f[0], f[1])
}

function state(buf: Buffer, f: [number, number]): ListState | -1 {
  const w = word(buf, f)
  for (const [name, s] of STATE_WORDS) if (w === name) return s
  return -1
}

/** A job id: digits, 1 .. 2^53 (no job id gets higher). */
const jobId = (buf: Buffer, f: [number, number]): number => digits(buf, f[0], f[1], Number.MAX_SAFE_INTEGER)

function parseListJobs(p: Parser, buf: Buffer, from: number, end: number): Op {
  const f = fields(buf, from, end)
  if (f === null || f.length !== 4) return bad(p)
  const a = args(p)
  const tube = key(buf, f[0]![0], f[0]![1])
  const s = state(buf, f[1]!)
  const after = jobId(buf, f[2]!)
  const limit = digits(buf, f[3]![0], f[3]![1], LIST_MAX)
  if (tube === null || s === -1 || after < 0 || limit < 1) return bad(p)
  a.tube = tube
  a.state = s
  a.id = after
  a.n = limit
  return Op.LIST_JOBS
}

function parseFlushTube(p: Parser, buf: Buffer, from: number, end: number): Op {
  const f = fields(buf, from, end)
  if (f === null || f.length > 2) return bad(p)
  const tube = key(buf, f[0]![0], f[0]![1])
  const s = f.length === 2 ? state(buf, f[1]!) : ListState.ALL
  if (tube === null || s === -1) return bad(p)
  const a = args(p)
  a.tube = tube
  a.state = s
  return Op.FLUSH_TUBE
}

function parseTubeOnly(op: Op) {
  return (p: Parser, buf: Buffer, from: number, end: number): Op => {
    const tube = key(buf, from, end)
    if (tube === null) return bad(p)
    args(p).tube = tube
    return op
  }
}

function parseTubePolicy(p: Parser, buf: Buffer, from: number, end: number): Op {
  const f = fields(buf, from, end)
  if (f === null || (f.length !== 3 && f.length !== 5)) return bad(p)
  const tube = key(buf, f[0]![0], f[0]![1])
  const kind = word(buf, f[1]!)
  if (tube === null) return bad(p)
  const a = args(p)
  a.tube = tube
  if (kind === 'fan-out' && f.length === 3) return parseFanOut(p, a, buf, f[2]!)
  const n = digits(buf, f[2]![0], f[2]![1], U32_MAX)
  if (n < 0) return bad(p)
  a.n = n
  a.deadLetter = null
  if (kind === 'max-jobs' && f.length === 3) {
    a.policy = PolicyKind.MAX_JOBS
    return Op.TUBE_POLICY
  }
  if (kind !== 'max-retries') return bad(p)
  a.policy = PolicyKind.MAX_RETRIES
  if (f.length === 5) {
    const dl = key(buf, f[4]![0], f[4]![1])
    if (word(buf, f[3]!) !== 'dead-letter' || dl === null || dl === tube) return bad(p)
    a.deadLetter = dl
  }
  return Op.TUBE_POLICY
}

/** fan-out <t1>[,<t2>...]: 1..FAN_OUT_MAX distinct tubes, none the source; `-` for none. */
function parseFanOut(p: Parser, a: AdminArgs, buf: Buffer, f: [number, number]): Op {
  a.policy = PolicyKind.FAN_OUT
  a.fanOut = []
  if (f[1] - f[0] === 1 && buf[f[0]] === 0x2d) return Op.TUBE_POLICY
  let i = f[0]
  for (;;) {
    let j = i
    while (j < f[1] && buf[j] !== COMMA) j++
    const t = key(buf, i, j)
    if (t === null || t === a.tube || a.fanOut.includes(t) || a.fanOut.length === FAN_OUT_MAX) return bad(p)
    a.fanOut.push(t)
    if (j === f[1]) return Op.TUBE_POLICY
    i = j + 1
  }
}

const COMMA = 0x2c

/** reprioritize <id> <pri>, redelay <id> <seconds>: an id and a u32. */
function parseIdNumber(op: Op) {
  return (p: Parser, buf: Buffer, from: number, end: number): Op => {
    const f = fields(buf, from, end)
    if (f === null || f.length !== 2) return bad(p)
    const id = jobId(buf, f[0]!)
    const n = digits(buf, f[1]![0], f[1]![1], U32_MAX)
    if (id < 1 || n < 0) return bad(p)
    const a = args(p)
    a.id = id
    a.n = n
    return op
  }
}

export const ADMIN_VERBS: readonly Verb[] = [
  verb('list-jobs ', Op.LIST_JOBS, Args.EXT, parseListJobs),
  verb('flush-tube ', Op.FLUSH_TUBE, Args.EXT, parseFlushTube),
  verb('delete-tube ', Op.DELETE_TUBE, Args.EXT, parseTubeOnly(Op.DELETE_TUBE)),
  verb('tube-policy ', Op.TUBE_POLICY, Args.EXT, parseTubePolicy),
  verb('stats-tube-policy ', Op.STATS_TUBE_POLICY, Args.EXT, parseTubeOnly(Op.STATS_TUBE_POLICY)),
  verb('reprioritize ', Op.REPRIORITIZE, Args.EXT, parseIdNumber(Op.REPRIORITIZE)),
  verb('redelay ', Op.REDELAY, Args.EXT, parseIdNumber(Op.REDELAY)),
]

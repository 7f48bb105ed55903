/**
 * The command words the parser knows and how each one's arguments are read.
 * The reference's verbs are here; the extension verbs (--extensions) are in
 * extensions.ts and are matched only by a parser made with them.
 */
import { Op } from './commands.js'
import type { Parser } from './parser.js'

/** How a verb's arguments are read. */
export const Args = {
  NONE: 0, // exact: nothing may follow the verb
  ANY: 1, // `quit`: anything may follow
  PUT: 2,
  ID: 3, // one u64 that ends the line
  RELEASE: 4,
  BURY: 5,
  KICK: 6,
  TIMEOUT: 7,
  NAME: 8, // the rest of the line is a tube name
  PAUSE: 9,
  /** An extension verb: its own `parse` reads the arguments (extensions.ts). */
  EXT: 10,
} as const
export type Args = (typeof Args)[keyof typeof Args]

/** Reads an extension verb's arguments, `buf[from, end)`, into the parser; returns the command or Op.ERROR. */
export type ParseArgs = (p: Parser, buf: Buffer, from: number, end: number) => Op

export interface Verb {
  readonly bytes: Buffer
  readonly op: Op
  readonly args: Args
  /** Args.EXT only. */
  readonly parse: ParseArgs | null
}

export const verb = (s: string, op: Op, args: Args, parse: ParseArgs | null = null): Verb => ({
  bytes: Buffer.from(s, 'latin1'),
  op,
  args,
  parse,
})

/**
 * Case-sensitive prefix dispatch in the reference's order (REFERENCE.md 2.2):
 * longer verbs sharing a prefix come first, and a prefix match followed by
 * bad arguments is BAD_FORMAT, never UNKNOWN_COMMAND.
 */
export const VERBS: readonly Verb[] = [
  verb('put ', Op.PUT, Args.PUT),
  verb('peek ', Op.PEEK, Args.ID),
  verb('peek-ready', Op.PEEK_READY, Args.NONE),
  verb('peek-delayed', Op.PEEK_DELAYED, Args.NONE),
  verb('peek-buried', Op.PEEK_BURIED, Args.NONE),
  verb('reserve-with-timeout ', Op.RESERVE_TIMEOUT, Args.TIMEOUT),
  verb('reserve-job ', Op.RESERVE_JOB, Args.ID),
  verb('reserve', Op.RESERVE, Args.NONE),
  verb('delete ', Op.DELETE, Args.ID),
  verb('release ', Op.RELEASE, Args.RELEASE),
  verb('bury ', Op.BURY, Args.BURY),
  verb('kick ', Op.KICK, Args.KICK),
  verb('kick-job ', Op.KICK_JOB, Args.ID),
  verb('touch ', Op.TOUCH, Args.ID),
  verb('stats-job ', Op.STATS_JOB, Args.ID),
  verb('stats-tube ', Op.STATS_TUBE, Args.NAME),
  verb('stats', Op.STATS, Args.NONE),
  verb('use ', Op.USE, Args.NAME),
  verb('watch ', Op.WATCH, Args.NAME),
  verb('ignore ', Op.IGNORE, Args.NAME),
  verb('list-tubes-watched', Op.LIST_TUBES_WATCHED, Args.NONE),
  verb('list-tube-used', Op.LIST_TUBE_USED, Args.NONE),
  verb('list-tubes', Op.LIST_TUBES, Args.NONE),
  verb('quit', Op.QUIT, Args.ANY),
  verb('pause-tube', Op.PAUSE_TUBE, Args.PAUSE),
]

/**
 * Verbs bucketed by first byte, so matching compares against a handful; the
 * order within a bucket is the order of `verbs`.
 */
export function verbsByFirstByte(verbs: readonly Verb[]): readonly (readonly Verb[])[] {
  const table: Verb[][] = Array.from({ length: 256 }, () => [])
  for (const v of verbs) table[v.bytes[0]!]!.push(v)
  return table
}

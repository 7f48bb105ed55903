/**
 * Wire constants of the beanstalk protocol: byte codes, limits and the fixed
 * replies, pre-encoded once so the hot path copies bytes instead of encoding
 * strings.
 */

export const CR = 0x0d
export const LF = 0x0a
export const SPACE = 0x20

/**
 * The reference's command buffer: 224 bytes including CRLF, sized for
 * `pause-tube <200-byte name> 4294967295\r\n` (ref:dat.h LINE_BUF_SIZE).
 */
export const LINE_MAX = 224
/** Longest tube name (ref:dat.h MAX_TUBE_NAME_LEN - 1). */
export const NAME_MAX = 200
export const DEFAULT_PORT = 11300
/** protocol.txt says "less than 2**16"; the reference accepts exactly 65535. */
export const DEFAULT_MAX_JOB_SIZE = 65535
/** The reference clamps -z to 1 GiB. */
export const MAX_JOB_SIZE_LIMIT = 1073741824
export const DEFAULT_BINLOG_SIZE = 10485760
/** Jobs with priority below this are "urgent" in stats. */
export const URGENT_THRESHOLD = 1024
/** A reserved job within this many ms of its deadline makes reserve answer DEADLINE_SOON. */
export const SAFETY_MARGIN_MS = 1000
export const MIN_TTR_MS = 1000
export const U32_MAX = 4294967295
export const DEFAULT_TUBE = 'default'

/** Bytes allowed in tube names (ref:prot.c NAME_CHARS). */
export const NAME_CHAR = new Uint8Array(256)
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()') {
  NAME_CHAR[ch.charCodeAt(0)] = 1
}

const fixed = (s: string): Buffer => Buffer.from(s, 'latin1')

export const Reply = {
  BAD_FORMAT: fixed('BAD_FORMAT\r\n'),
  UNKNOWN_COMMAND: fixed('UNKNOWN_COMMAND\r\n'),
  EXPECTED_CRLF: fixed('EXPECTED_CRLF\r\n'),
  JOB_TOO_BIG: fixed('JOB_TOO_BIG\r\n'),
  DRAINING: fixed('DRAINING\r\n'),
  OUT_OF_MEMORY: fixed('OUT_OF_MEMORY\r\n'),
  INTERNAL_ERROR: fixed('INTERNAL_ERROR\r\n'),
  NOT_FOUND: fixed('NOT_FOUND\r\n'),
  DELETED: fixed('DELETED\r\n'),
  RELEASED: fixed('RELEASED\r\n'),
  BURIED: fixed('BURIED\r\n'),
  TOUCHED: fixed('TOUCHED\r\n'),
  PAUSED: fixed('PAUSED\r\n'),
  KICKED: fixed('KICKED\r\n'),
  NOT_IGNORED: fixed('NOT_IGNORED\r\n'),
  TIMED_OUT: fixed('TIMED_OUT\r\n'),
  DEADLINE_SOON: fixed('DEADLINE_SOON\r\n'),
} as const

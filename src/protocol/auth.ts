/**
 * The one command a listener with token authentication reads before it
 * trusts a client: `auth <token>\r\n`, answered `AUTHENTICATED\r\n`, or
 * `UNAUTHORIZED\r\n` and a close (the words of beanstalkd-rs, so client
 * support carries over). Not a command of the reference: on a listener
 * without authentication the parser never learns it (UNKNOWN_COMMAND).
 *
 * Framing is the reference's (parser.ts, REFERENCE.md 2.1): the line must
 * end within LINE_MAX bytes, at the first CR, which an LF must follow. So a
 * token is at most LINE_MAX - `auth `.length - CRLF = 217 bytes; the token
 * file refuses longer ones. Anything else in the first line (another verb,
 * no space, an empty token, a CR without LF, no
 * line end within LINE_MAX bytes) is a failure: nothing in it is parsed
 * further. The token's bytes are not checked here: a token that cannot be
 * in the token file (util/token-set.ts) simply matches none.
 */
import { CR, LF, LINE_MAX } from './constants.js'

const PREFIX = Buffer.from('auth ', 'latin1')

/** The longest token an `auth` line can carry. */
export const MAX_TOKEN_BYTES = LINE_MAX - PREFIX.length - 2

export const AuthReply = {
  AUTHENTICATED: Buffer.from('AUTHENTICATED\r\n', 'latin1'),
  UNAUTHORIZED: Buffer.from('UNAUTHORIZED\r\n', 'latin1'),
} as const

/** What the first bytes of a connection are: an `auth` line, not yet known, or anything else. */
export type AuthLine =
  | { readonly kind: 'more' }
  | { readonly kind: 'bad'; readonly why: 'not auth' | 'line too long' }
  | { readonly kind: 'auth'; readonly token: Buffer; readonly end: number }

const MORE: AuthLine = { kind: 'more' }
const NOT_AUTH: AuthLine = { kind: 'bad', why: 'not auth' }
const TOO_LONG: AuthLine = { kind: 'bad', why: 'line too long' }

/**
 * Reads the first line of `buf` (everything the client sent so far). `end`
 * of an `auth` result is the offset just past its CRLF: what follows are
 * the client's next commands. A prefix that can still become an `auth` line
 * is 'more'; one that cannot is 'bad' at once, without waiting for its end.
 */
export function readAuthLine(buf: Buffer): AuthLine {
  const n = buf.length
  const head = Math.min(n, PREFIX.length)
  for (let i = 0; i < head; i++) if (buf[i] !== PREFIX[i]) return NOT_AUTH
  // The CRLF must fit in the window too: a CR is at most at LINE_MAX - 2.
  const last = Math.min(n, LINE_MAX - 1)
  for (let i = PREFIX.length; i < last; i++) {
    if (buf[i] === CR) {
      if (i + 1 === n) return MORE
      if (buf[i + 1] !== LF || i === PREFIX.length) return NOT_AUTH
      return { kind: 'auth', token: buf.subarray(PREFIX.length, i), end: i + 2 }
    }
  }
  return n >= LINE_MAX - 1 ? TOO_LONG : MORE
}

/**
 * A set of secret tokens (`--auth-file`, `--http-token-file`): one token a
 * line, `#` comments and blank lines ignored, whitespace around a token
 * trimmed.
 *
 * Invariants:
 * - Only SHA-256 digests of the tokens are kept, and `has()` compares the
 *   digest of the candidate with every one of them with timingSafeEqual,
 *   never stopping early: the time taken says nothing about how much of a
 *   token matched, nor (fixed-length digests) how long the tokens are.
 * - No token is ever part of an error message or a log line; errors name
 *   the file and the line.
 */
import { createHash, timingSafeEqual } from 'node:crypto'

/** Shorter tokens get a warning: they can be guessed. */
export const MIN_TOKEN_ADVISED = 16

/** A token file that cannot be used: it names the file and line, never the token. */
export class TokenFileError extends Error {
  readonly code = 'TSB_ERR_TOKEN_FILE'
  readonly file: string
  constructor(file: string, detail: string) {
    super(`${file}: ${detail}`)
    this.name = 'TokenFileError'
    this.file = file
  }
}

/** Bytes a token may hold: printable ASCII without the space (fits a protocol line and an HTTP header). */
const isTokenByte = (b: number): boolean => b >= 0x21 && b <= 0x7e

const digest = (b: Buffer | string): Buffer => createHash('sha256').update(b).digest()

export class TokenSet {
  private readonly digests: readonly Buffer[]

  private constructor(digests: Buffer[]) {
    this.digests = digests
  }

  /**
   * Parses a token file's text; `file` names it in errors and warnings.
   * `maxBytes`: the longest token the caller can receive (an `auth` line
   * holds protocol/auth.ts MAX_TOKEN_BYTES).
   */
  static parse(text: string, file: string, maxBytes: number, warn: (msg: string) => void): TokenSet {
    const seen = new Set<string>()
    const digests: Buffer[] = []
    let short = 0
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim()
      if (line === '' || line.startsWith('#')) return
      const bytes = Buffer.from(line, 'utf8')
      if (bytes.length > maxBytes) {
        throw new TokenFileError(file, `line ${i + 1}: the token is ${bytes.length} bytes; at most ${maxBytes} fit in an auth line`)
      }
      if (!bytes.every(isTokenByte)) throw new TokenFileError(file, `line ${i + 1}: a token holds printable ASCII only (no spaces)`)
      if (bytes.length < MIN_TOKEN_ADVISED) short++
      const d = digest(bytes)
      const key = d.toString('hex')
      if (seen.has(key)) return
      seen.add(key)
      digests.push(d)
    })
    if (digests.length === 0) throw new TokenFileError(file, 'no token in it (one a line; # starts a comment)')
    if (short > 0) warn(`${file}: ${short} token${short === 1 ? ' is' : 's are'} shorter than ${MIN_TOKEN_ADVISED} characters and could be guessed (openssl rand -hex 32 makes a good one)`)
    return new TokenSet(digests)
  }

  get size(): number {
    return this.digests.length
  }

  /** Whether `candidate` is one of the tokens, in time independent of how it differs. */
  has(candidate: Buffer | string): boolean {
    const d = digest(candidate)
    let found = false
    for (const t of this.digests) {
      const same = timingSafeEqual(d, t)
      found = found || same
    }
    return found
  }
}

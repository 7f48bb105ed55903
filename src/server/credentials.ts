/**
 * The secrets a secured server reads from files: its TLS certificate and
 * key, the CA that signs client certificates (mTLS), the tokens of `auth`
 * and of the HTTP bearer. Read at start (an error stops the start) and again
 * on SIGHUP (an error keeps what was loaded before; cli.ts logs it).
 *
 * Invariants:
 * - What is returned has been checked the way a handshake would use it:
 *   tls.createSecureContext accepted the certificate, key (they match) and
 *   CA together; a token file parsed with at least one token.
 * - No secret is in an error message or warning: they name files and lines.
 */
import { X509Certificate } from 'node:crypto'
import fs from 'node:fs'
import tls from 'node:tls'
import { MAX_TOKEN_BYTES } from '../protocol/auth.js'
import { TokenFileError, TokenSet } from '../util/token-set.js'

/** --tls-cert, --tls-key, --tls-ca. */
export interface TlsFiles {
  readonly cert: string
  readonly key: string
  /** Client certificates must be signed by this CA (mTLS); null: none asked for. */
  readonly ca: string | null
}

/** What tls.Server needs, and what an operator wants to know of it. */
export interface TlsMaterial {
  readonly cert: Buffer
  readonly key: Buffer
  readonly ca: Buffer | null
  /** The leaf certificate's subject, as one line (CN=...). */
  readonly subject: string
  readonly notAfter: Date
  readonly fingerprint256: string
}

/** A file that cannot serve as what it was given for. */
export class CredentialsError extends Error {
  readonly code = 'TSB_ERR_CREDENTIALS'
  readonly file: string
  constructor(file: string, detail: string, options?: ErrorOptions) {
    super(`${file}: ${detail}`, options)
    this.name = 'CredentialsError'
    this.file = file
  }
}

function read(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file)
  } catch (err) {
    throw new CredentialsError(file, `cannot read the ${what}: ${(err as Error).message}`, { cause: err })
  }
}

/** A secret file others can read: `mask` 0o044 for group or others, 0o004 for others only. */
function warnIfReadable(file: string, mask: number, warn: (msg: string) => void): void {
  try {
    const mode = fs.statSync(file).mode & 0o777
    if ((mode & mask) !== 0) {
      const who = (mode & 0o004) !== 0 ? 'everyone' : 'its group'
      warn(`${file} is readable by ${who} (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 ${file}`)
    }
  } catch {
    // read() has reported or will report it
  }
}

/** Reads and checks the certificate, key and CA. */
export function loadTls(files: TlsFiles, warn: (msg: string) => void): TlsMaterial {
  const cert = read(files.cert, 'certificate')
  const key = read(files.key, 'private key')
  const ca = files.ca === null ? null : read(files.ca, 'client CA')
  // A group-readable key is a common layout (Debian's ssl-cert group); readable by everyone is not.
  warnIfReadable(files.key, 0o004, warn)
  let leaf: X509Certificate
  try {
    leaf = new X509Certificate(cert)
  } catch (err) {
    throw new CredentialsError(files.cert, `not a PEM certificate: ${(err as Error).message}`, { cause: err })
  }
  if (ca !== null) {
    try {
      new X509Certificate(ca)
    } catch (err) {
      throw new CredentialsError(files.ca!, `not a PEM CA certificate: ${(err as Error).message}`, { cause: err })
    }
  }
  try {
    tls.createSecureContext({ cert, key, ...(ca === null ? {} : { ca }) })
  } catch (err) {
    // "key values mismatch", a bad PEM key, ... : name the pair.
    throw new CredentialsError(files.key, `does not go with ${files.cert}: ${(err as Error).message}`, { cause: err })
  }
  const notAfter = new Date(leaf.validTo)
  if (notAfter.getTime() < Date.now()) warn(`${files.cert}: the certificate expired on ${notAfter.toISOString()}; clients will refuse it`)
  return { cert, key, ca, subject: leaf.subject.replaceAll('\n', ', '), notAfter, fingerprint256: leaf.fingerprint256 }
}

/** Reads a token file (--auth-file, --http-token-file); it should be readable by its owner only. */
export function loadTokens(file: string, warn: (msg: string) => void): TokenSet {
  const text = read(file, 'token file').toString('utf8')
  warnIfReadable(file, 0o044, warn)
  try {
    return TokenSet.parse(text, file, MAX_TOKEN_BYTES, warn)
  } catch (err) {
    if (err instanceof TokenFileError) throw new CredentialsError(file, err.message.slice(file.length + 2), { cause: err })
    throw err
  }
}

/** What --check-config and the start log say of the TLS material (no secret in it). */
export function describeTls(m: TlsMaterial): string {
  return `${m.subject}, expires ${m.notAfter.toISOString()}, sha256 ${m.fingerprint256.slice(0, 23)}...`
}

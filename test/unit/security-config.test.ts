/** The auth line's framing, the token file's rules, and the TLS and auth settings of flags and config file. */
import { describe, expect, it } from 'vitest'
import { parseConfigFile } from '../../src/config-file.js'
import { toConfig, UsageError } from '../../src/config.js'
import { MAX_TOKEN_BYTES, readAuthLine } from '../../src/protocol/auth.js'
import { LINE_MAX } from '../../src/protocol/constants.js'
import { TokenSet } from '../../src/util/token-set.js'

describe('readAuthLine (the reference framing: 224 bytes, first CR, then LF)', () => {
  const b = (s: string): Buffer => Buffer.from(s, 'latin1')
  it('reads the token and where the next command starts', () => {
    const r = readAuthLine(b('auth tok\r\nput 0 0 1 1\r\n'))
    expect(r.kind).toBe('auth')
    if (r.kind !== 'auth') return
    expect(r.token.toString()).toBe('tok')
    expect(r.end).toBe(10)
  })

  it('asks for more while a prefix can still become an auth line, at every split of it', () => {
    const line = 'auth tok\r\n'
    for (let i = 0; i < line.length; i++) expect(readAuthLine(b(line.slice(0, i))).kind, JSON.stringify(line.slice(0, i))).toBe('more')
  })

  it('refuses at once what cannot become one', () => {
    for (const s of ['put 0 0 1 1\r\n', 'AUTH tok\r\n', 'authx', 'auth \r\n', 'auth tok\rx', 'stats\r\n', 'b', 'aut\r\n', '\r\n']) {
      expect(readAuthLine(b(s)), JSON.stringify(s)).toEqual({ kind: 'bad', why: 'not auth' })
    }
  })

  it(`takes a ${MAX_TOKEN_BYTES}-byte token, whose line is exactly ${LINE_MAX} bytes, and refuses one byte more`, () => {
    const fits = `auth ${'t'.repeat(MAX_TOKEN_BYTES)}\r\n`
    expect(fits.length).toBe(LINE_MAX)
    expect(readAuthLine(b(fits)).kind).toBe('auth')
    const over = `auth ${'t'.repeat(MAX_TOKEN_BYTES + 1)}\r\n`
    expect(readAuthLine(b(over))).toEqual({ kind: 'bad', why: 'line too long' })
    // Without waiting for its end either.
    expect(readAuthLine(b(over.slice(0, LINE_MAX - 1)))).toEqual({ kind: 'bad', why: 'line too long' })
    expect(readAuthLine(b(over.slice(0, LINE_MAX - 2))).kind).toBe('more')
  })
})

describe('TokenSet', () => {
  const noWarn = (): void => undefined
  it('one token a line; comments, blanks and surrounding whitespace ignored; only whole tokens match', () => {
    const t = TokenSet.parse('# ops\n\n  first-token-0123456789  \r\nsecond-token-0123456789\nfirst-token-0123456789\n', 'f', MAX_TOKEN_BYTES, noWarn)
    expect(t.size).toBe(2)
    expect(t.has('first-token-0123456789')).toBe(true)
    expect(t.has(Buffer.from('second-token-0123456789'))).toBe(true)
    for (const wrong of ['first-token-012345678', 'first-token-01234567890', '', ' first-token-0123456789', '# ops']) expect(t.has(wrong), wrong).toBe(false)
  })

  it('errors name the file and line, never the token; short tokens get a warning', () => {
    const err = (text: string): string => {
      try {
        TokenSet.parse(text, 'tok.txt', MAX_TOKEN_BYTES, noWarn)
      } catch (e) {
        return (e as Error).message
      }
      return 'no error'
    }
    expect(err('ok-token-0123456789\nhas a space\n')).toBe('tok.txt: line 2: a token holds printable ASCII only (no spaces)')
    expect(err(`${'x'.repeat(MAX_TOKEN_BYTES + 1)}\n`)).toBe(`tok.txt: line 1: the token is ${MAX_TOKEN_BYTES + 1} bytes; at most ${MAX_TOKEN_BYTES} fit in an auth line`)
    expect(err('# nothing\n\n')).toBe('tok.txt: no token in it (one a line; # starts a comment)')
    expect(err('tökén-0123456789abc\n')).toMatch(/line 1: a token holds printable ASCII only/)
    const warned: string[] = []
    TokenSet.parse('short\n', 'tok.txt', MAX_TOKEN_BYTES, (m) => warned.push(m))
    expect(warned).toEqual(['tok.txt: 1 token is shorter than 16 characters and could be guessed (openssl rand -hex 32 makes a good one)'])
    expect(warned.join()).not.toContain('short\n')
  })
})

describe('TLS and auth settings', () => {
  const flags = (f: Record<string, unknown>, warn: string[] = [], file?: string): ReturnType<typeof toConfig> =>
    toConfig({ verbose: 0, ...f }, (m) => warn.push(m), file === undefined ? undefined : parseConfigFile('s.toml', file))
  const usage = (fn: () => unknown): string => {
    try {
      fn()
    } catch (e) {
      if (e instanceof UsageError) return e.message
      throw e
    }
    return 'no error'
  }
  const tlsFiles = { tlsCert: 'c.pem', tlsKey: 'k.pem' }

  it('--tls-port adds a TLS listener on the -l address; --tls-only drops the plaintext one', () => {
    expect(flags({ listen: '127.0.0.1', tlsPort: '11301', ...tlsFiles }).listeners).toEqual([
      { host: '127.0.0.1', port: 11300 },
      { host: '127.0.0.1', port: 11301, tls: true },
    ])
    expect(flags({ tlsPort: '11301', tlsOnly: true, ...tlsFiles }).listeners).toEqual([{ host: '::', port: 11301, tls: true }])
    expect(flags({ tlsPort: '1', ...tlsFiles }).tls).toEqual({ cert: 'c.pem', key: 'k.pem', ca: null })
  })

  it('--auth-file asks auth of every listener, or of the TLS ones with --auth-listeners tls; a [[listen]] may say otherwise', () => {
    const both = { listen: '127.0.0.1', tlsPort: '11301', ...tlsFiles, authFile: 't' }
    expect(flags(both).listeners.map((l) => l.auth === true)).toEqual([true, true])
    expect(flags({ ...both, authListeners: 'tls' }).listeners.map((l) => l.auth === true)).toEqual([false, true])
    expect(flags({ ...both, authListeners: 'tls' }).authPlaintext).toBe(false)
    expect(flags(both).authPlaintext).toBe(true)
    const file = '[[listen]]\nhost = "127.0.0.1"\nauth = false\n[[listen]]\nport = 11301\ntls = true\n[[listen]]\npath = "/s"\nauth = true\n[tls]\ncert = "c"\nkey = "k"\nca = "ca"\n[auth]\ntoken_file = "t"\nlisteners = "tls"\n'
    const c = flags({}, [], file)
    expect(c.listeners).toEqual([{ host: '127.0.0.1', port: 11300 }, { host: '::', port: 11301, tls: true, auth: true }, { path: '/s', auth: true }])
    expect(c.tls).toEqual({ cert: 'c', key: 'k', ca: 'ca' })
    expect(c.authFile).toBe('t')
  })

  it('without --auth-file nothing asks for auth, and auth is off', () => {
    const c = flags({ tlsPort: '1', ...tlsFiles })
    expect(c.authFile).toBeNull()
    expect(c.listeners.some((l) => l.auth === true)).toBe(false)
  })

  it('refuses what cannot work, naming the flag or the file line', () => {
    expect(usage(() => flags({ tlsPort: 'x', ...tlsFiles }))).toBe('invalid --tls-port: x')
    expect(usage(() => flags({ tlsPort: '70000', ...tlsFiles }))).toBe('invalid --tls-port: 70000')
    expect(usage(() => flags({ tlsPort: '1' }))).toMatch(/needs --tls-cert and --tls-key/)
    expect(usage(() => flags({ authFile: 't', authListeners: 'some' }))).toBe('invalid --auth-listeners: some (all or tls)')
    expect(usage(() => flags({ maxPending: '0', authFile: 't' }))).toBe('invalid --max-pending: 0 (a whole number, at least 1)')
    expect(usage(() => flags({}, [], '[[listen]]\nport = 1\nauth = true\n'))).toMatch(/asks for auth: it needs --auth-file/)
    expect(usage(() => flags({}, [], '[[listen]]\nport = 1\ntls = "yes"\n'))).toBe('s.toml:3: listen.tls must be a boolean')
    expect(usage(() => flags({}, [], '[limits]\nmax_pending = 0\n'))).toBe('s.toml:2: invalid --max-pending: 0 (a whole number, at least 1)')
    expect(usage(() => flags({}, [], '[auth]\nlisteners = "none"\ntoken_file = "t"\n'))).toBe('s.toml:2: invalid --auth-listeners: none (all or tls)')
  })

  it('warns of settings that do nothing, and of tokens in clear text off this machine', () => {
    const w: string[] = []
    flags({ tlsCert: 'c' }, w)
    flags({ authListeners: 'tls' }, w)
    flags({ httpTokenFile: 'h' }, w)
    flags({ listen: '0.0.0.0', authFile: 't' }, w)
    flags({ listen: '127.0.0.1', authFile: 't' }, w)
    expect(w).toEqual([
      '--tls-cert, --tls-key and --tls-ca have no effect without a TLS listener (--tls-port, or [[listen]] tls = true)',
      '--auth-listeners has no effect without --auth-file',
      '--http-token-file has no effect without --http',
      'tokens cross the network in clear text on 0.0.0.0:11300 (auth): give it TLS, or keep auth to loopback and Unix sockets',
    ])
  })
})

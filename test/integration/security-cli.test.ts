/**
 * Security through the real command line, as an operator runs it: the TLS,
 * auth and HTTP token flags and --check-config, `openssl s_client` as the
 * client, certificate and token reload on SIGHUP (with a bad certificate
 * keeping the old one), POST /drain behind a bearer token, the new /metrics
 * families under promtool, and the README's Security commands run as
 * written.
 */
import { spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import tls from 'node:tls'
import { beforeAll, describe, expect, it } from 'vitest'
import { RawClient } from '../helpers/client.js'
import { fingerprintOf, makeCerts, type CertSet } from '../helpers/certs.js'
import { cliFixture } from '../helpers/cli-fixture.js'
import { haveTool, parseMetrics, runTool, sample } from '../helpers/http.js'
import { spawnCli, type Proc } from '../helpers/process.js'

const fx = cliFixture('tsb-seccli-')
const TOKEN = 'cli-test-token-00112233445566778899'
let certs: CertSet | null = null
let tokenFile = ''
/** A server with TLS and auth loads certificates and tokens before it listens: slower under load than the 5 s default. */
const START_MS = 10_000

beforeAll(() => {
  certs = makeCerts(path.join(fx.tmp(), 'certs'))
  tokenFile = path.join(fx.tmp(), 'tokens')
  fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
}, 60_000)

/** The bound ports of the `listening` line, by label suffix: '' plaintext, ' (tls, auth)' ... */
async function ports(proc: Proc): Promise<Map<string, number>> {
  const line = await proc.listening(START_MS)
  const out = new Map<string, number>()
  for (const l of line['listeners'] as string[]) {
    const m = /:(\d+)((?: \([^)]*\))?)$/.exec(l)
    if (m !== null) out.set(m[2]!.trim(), Number(m[1]))
  }
  return out
}

function tlsArgs(c: CertSet, mutual = false): string[] {
  return ['--tls-cert', c.serverCert, '--tls-key', c.serverKey, ...(mutual ? ['--tls-ca', c.caCert] : [])]
}

/** Runs `openssl s_client` with `input` on stdin until `want` has arrived on stdout (bounded); returns stdout. */
async function sClient(port: number, args: string[], input: string, want: RegExp, ms = 10_000): Promise<string> {
  const child = spawn('openssl', ['s_client', '-quiet', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.setEncoding('latin1').on('data', (d: string) => (out += d))
  child.stderr.setEncoding('latin1').on('data', (d: string) => (err += d))
  child.stdin.write(input)
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`s_client: no ${String(want)} after ${ms} ms; stdout ${JSON.stringify(out)}; stderr ${err}`)), ms)
      const check = (): void => {
        if (!want.test(out)) return
        clearTimeout(t)
        resolve()
      }
      child.stdout.on('data', check)
      child.on('exit', () => {
        clearTimeout(t)
        if (want.test(out)) resolve()
        else reject(new Error(`s_client exited; stdout ${JSON.stringify(out)}; stderr ${err}`))
      })
    })
  } finally {
    child.kill('SIGKILL')
  }
  return out
}

describe('the TLS and auth flags', () => {
  it('--check-config summarises them without printing a token, and warns of a token file others can read', async () => {
    const c = certs!
    if (c === null) return
    const loose = path.join(fx.tmp(), 'tokens-loose')
    fs.writeFileSync(loose, `${TOKEN}\n`)
    fs.chmodSync(loose, 0o644)
    const proc = spawnCli(['-l', '127.0.0.1', '--tls-port', '11301', ...tlsArgs(c, true), '--auth-file', loose, '--auth-listeners', 'tls', '--pending-timeout', '5000', '--check-config'])
    expect(await proc.exited()).toEqual({ code: 0, signal: null })
    expect(proc.stdout).toContain('listen: 127.0.0.1:11300, 127.0.0.1:11301 (tls, auth) (sockets passed by systemd take the place of the plaintext ones)\n')
    expect(proc.stdout).toMatch(new RegExp(`tls: certificate ${c.serverCert} \\(CN=tsb-test, expires \\d{4}-.*\\), key ${c.serverKey}; client certificates required, signed by the CA in ${c.caCert}; TLS 1.2 and 1.3\\n`))
    expect(proc.stdout).toContain(`auth: 1 token from ${loose}, required on 127.0.0.1:11301 (tls, auth)\n`)
    expect(proc.stdout).toContain('before trust: 5000 ms to finish the TLS handshake and auth, at most 1024 connections pending at once\n')
    expect(proc.stderr).toContain(`warning: ${loose} is readable by everyone (mode 0644): chmod 600 ${loose}`)
    expect(proc.output).not.toContain(TOKEN)
  })

  it('refuses what cannot work, with exit 5 and the file or flag at fault', async () => {
    const c = certs!
    if (c === null) return
    const cases: [string[], RegExp][] = [
      [['--tls-port', '0'], /a TLS listener needs --tls-cert and --tls-key/],
      [['--tls-only'], /--tls-only turns the plaintext port off: it needs --tls-port/],
      [['-l', 'unix:/tmp/x.sock', '--tls-port', '0', ...tlsArgs(c)], /--tls-port serves TLS on the -l address, which must be a TCP one/],
      [['--tls-port', '0', '--tls-cert', c.serverCert, '--tls-key', c.server2Key], new RegExp(`${c.server2Key}: does not go with ${c.serverCert}`)],
      [['--tls-port', '0', '--tls-cert', path.join(fx.tmp(), 'missing.pem'), '--tls-key', c.serverKey], /missing\.pem: cannot read the certificate/],
      [['--auth-file', path.join(fx.tmp(), 'nope')], /nope: cannot read the token file/],
      [['--http', '127.0.0.1:0', '--http-token-metrics'], /--http-token-metrics needs --http-token-file/],
      [['--pending-timeout', '0', '--auth-file', tokenFile], /invalid --pending-timeout: 0/],
    ]
    for (const [args, want] of cases) {
      const proc = spawnCli([...args, '--check-config'])
      expect(await proc.exited(), args.join(' ')).toEqual({ code: 5, signal: null })
      expect(proc.stderr, args.join(' ')).toMatch(want)
    }
  })

  it('a config file says the same: [[listen]] tls and auth, [tls], [auth], [limits]', async () => {
    const c = certs!
    if (c === null) return
    const file = path.join(fx.tmp(), 'sec.toml')
    fs.writeFileSync(
      file,
      [
        '[[listen]]',
        'host = "127.0.0.1"',
        'port = 0',
        'auth = false',
        '[[listen]]',
        'host = "127.0.0.1"',
        'port = 0',
        'tls = true',
        '[tls]',
        `cert = ${JSON.stringify(c.serverCert)}`,
        `key = ${JSON.stringify(c.serverKey)}`,
        '[auth]',
        `token_file = ${JSON.stringify(tokenFile)}`,
        '[limits]',
        'max_pending = 10',
        '',
      ].join('\n'),
    )
    const proc = spawnCli(['--config', file])
    const p = await ports(proc)
    const plain = await fx.connect(p.get('')!)
    expect(await plain.call('list-tube-used\r\n')).toBe('USING default\r\n')
    const secure = await RawClient.connectTls(p.get('(tls, auth)')!, { ca: fs.readFileSync(c.caCert) })
    try {
      expect(await secure.call('list-tube-used\r\n')).toBe('UNAUTHORIZED\r\n')
    } finally {
      secure.close()
    }
  })
})

describe('openssl s_client against a spawned server', () => {
  it('mTLS plus a token on the TLS port; the loopback plaintext port without either', async () => {
    const c = certs!
    if (c === null) return
    const proc = spawnCli(['-l', '127.0.0.1', '-p', '0', '--tls-port', '0', ...tlsArgs(c, true), '--auth-file', tokenFile, '--auth-listeners', 'tls'])
    const p = await ports(proc)
    const tlsPort = p.get('(tls, auth)')!
    const client = ['-CAfile', c.caCert, '-cert', c.clientCert, '-key', c.clientKey]
    const got = await sClient(tlsPort, client, `auth ${TOKEN}\r\nput 0 0 60 5\r\nhello\r\n`, /INSERTED \d+\r\n/)
    expect(got).toMatch(/^AUTHENTICATED\r\nINSERTED 1\r\n$/)
    for (const v of ['-tls1_2', '-tls1_3']) {
      expect(await sClient(tlsPort, [...client, v], `auth ${TOKEN}\r\nlist-tube-used\r\n`, /USING/)).toBe('AUTHENTICATED\r\nUSING default\r\n')
    }
    expect(await sClient(tlsPort, client, 'auth not-the-token\r\n', /UNAUTHORIZED/)).toBe('UNAUTHORIZED\r\n')
    // Without a client certificate the handshake is refused: no reply, ever.
    const none = spawn('openssl', ['s_client', '-quiet', '-connect', `127.0.0.1:${tlsPort}`, '-CAfile', c.caCert], { stdio: ['pipe', 'pipe', 'pipe'] })
    let noneOut = ''
    none.stdout.setEncoding('latin1').on('data', (d: string) => (noneOut += d))
    none.stdin.write(`auth ${TOKEN}\r\n`)
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => resolve(-1), 10_000)
      none.on('exit', (c2) => {
        clearTimeout(t)
        resolve(c2)
      })
    })
    none.kill('SIGKILL')
    expect(code).not.toBe(-1)
    expect(noneOut).toBe('')
    const plain = await fx.connect(p.get('')!)
    expect(await plain.call('auth x\r\n')).toBe('UNKNOWN_COMMAND\r\n')
    const st = await plain.stats('stats\r\n')
    expect(st['current-jobs-ready']).toBe('1')
  })
})

describe('SIGHUP reloads certificates and tokens', () => {
  it('a new certificate is served to new handshakes; a bad one keeps the old with an error line; tokens follow the file', async () => {
    const c = certs!
    if (c === null) return
    const dir = fs.mkdtempSync(path.join(fx.tmp(), 'reload-'))
    const cert = path.join(dir, 'cert.pem')
    const key = path.join(dir, 'key.pem')
    const tokens = path.join(dir, 'tokens')
    fs.copyFileSync(c.serverCert, cert)
    fs.copyFileSync(c.serverKey, key)
    fs.writeFileSync(tokens, `${TOKEN}\n`, { mode: 0o600 })
    const proc = spawnCli(['-l', '127.0.0.1', '--tls-only', '--tls-port', '0', '--tls-cert', cert, '--tls-key', key, '--auth-file', tokens, '--http', '127.0.0.1:0'])
    const port = (await ports(proc)).get('(tls, auth)')!
    const fp = async (): Promise<string> => {
      const s = await RawClient.connectTls(port, { ca: fs.readFileSync(c.caCert) })
      const f = (s.raw as tls.TLSSocket).getPeerCertificate().fingerprint256
      s.close()
      return f
    }
    expect(await fp()).toBe(fingerprintOf(c.serverCert))
    const kept = await RawClient.connectTls(port, { ca: fs.readFileSync(c.caCert) })
    try {
      expect(await kept.call(`auth ${TOKEN}\r\n`)).toBe('AUTHENTICATED\r\n')
      const reloaded = (): number => proc.logLines.filter((l) => String(l['msg']).startsWith('SIGHUP')).length
      fs.copyFileSync(c.server2Cert, cert)
      fs.copyFileSync(c.server2Key, key)
      fs.writeFileSync(tokens, 'a-second-token-after-the-reload\n')
      proc.child.kill('SIGHUP')
      await proc.until(() => reloaded() === 1, 'the reload line')
      expect(await fp()).toBe(fingerprintOf(c.server2Cert))
      const fresh = await RawClient.connectTls(port, { ca: fs.readFileSync(c.caCert) })
      expect(await fresh.call(`auth ${TOKEN}\r\n`)).toBe('UNAUTHORIZED\r\n')
      fresh.close()
      const second = await RawClient.connectTls(port, { ca: fs.readFileSync(c.caCert) })
      expect(await second.call('auth a-second-token-after-the-reload\r\n')).toBe('AUTHENTICATED\r\n')
      second.close()
      // A broken certificate: the one in use stays, an error line names the file.
      fs.writeFileSync(cert, '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n')
      proc.child.kill('SIGHUP')
      await proc.until(() => reloaded() === 3, 'the error and reload lines')
      const error = proc.logLines.find((l) => String(l['msg']).startsWith('SIGHUP: the TLS certificate not reloaded'))
      expect(error?.['level']).toBe(50)
      expect(error?.['file']).toBe(cert)
      expect(await fp()).toBe(fingerprintOf(c.server2Cert))
      expect(await kept.call('list-tube-used\r\n')).toBe('USING default\r\n')
      const http = proc.logLines.find((l) => typeof l['http'] === 'string' && String(l['msg']).startsWith('http:'))!['http'] as string
      const m = parseMetrics(await (await fetch(`http://${http}/metrics`, { signal: AbortSignal.timeout(5000) })).text())
      expect(sample(m, 'tsbeanstalkd_reload_failures_total')).toBe(1)
      expect(sample(m, 'tsbeanstalkd_auth_failures_total', { listener: 'beanstalk' })).toBe(1)
      expect(sample(m, 'tsbeanstalkd_tls_certificate_expiry_timestamp_seconds')).toBe(new Date(new X509Certificate(fs.readFileSync(c.server2Cert)).validTo).getTime() / 1000)
    } finally {
      kept.close()
    }
    expect(proc.output).not.toContain(TOKEN)
    expect(proc.output).not.toContain('a-second-token-after-the-reload')
  })
})

describe('the HTTP bearer token', () => {
  /** The http address of a spawned server, from its log. */
  async function httpOf(proc: Proc): Promise<string> {
    const find = (): string | undefined => proc.logLines.find((l) => typeof l['http'] === 'string' && String(l['msg']).startsWith('http:'))?.['http'] as string | undefined
    await proc.until(() => find() !== undefined, 'the http log line')
    return `http://${find()}`
  }
  const req = async (url: string, method: string, token?: string): Promise<{ status: number; body: string; challenge: string | null }> => {
    const res = await fetch(url, { method, headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) })
    return { status: res.status, body: await res.text(), challenge: res.headers.get('www-authenticate') }
  }

  it('POST /drain needs it (401 without, with a challenge), drains with it; reads stay open; no token file: 403', async () => {
    const httpTokens = path.join(fx.tmp(), 'http-tokens')
    fs.writeFileSync(httpTokens, 'http-bearer-token-0123456789\n', { mode: 0o600 })
    const proc = spawnCli(['-l', '127.0.0.1', '-p', '0', '--http', '127.0.0.1:0', '--http-token-file', httpTokens])
    const port = (await proc.listening(START_MS)).port!
    const url = await httpOf(proc)
    expect(await req(`${url}/drain`, 'POST')).toMatchObject({ status: 401, challenge: 'Bearer realm="tsbeanstalkd"' })
    expect((await req(`${url}/drain`, 'POST', 'wrong-token-0123456789')).status).toBe(401)
    expect((await req(`${url}/drain`, 'GET', 'http-bearer-token-0123456789')).status).toBe(405)
    expect((await req(`${url}/metrics`, 'GET')).status).toBe(200)
    const c = await fx.connect(port)
    expect(await c.call('put 0 0 60 1\r\nx\r\n')).toBe('INSERTED 1\r\n')
    expect(await req(`${url}/drain`, 'POST', 'http-bearer-token-0123456789')).toMatchObject({ status: 200, body: '{"status":"draining"}\n' })
    expect(await c.call('put 0 0 60 1\r\nx\r\n')).toBe('DRAINING\r\n')
    expect((await req(`${url}/readyz`, 'GET')).status).toBe(503)
    const m = parseMetrics((await req(`${url}/metrics`, 'GET')).body)
    expect(sample(m, 'tsbeanstalkd_auth_failures_total', { listener: 'http' })).toBe(2)
    expect(proc.output).not.toContain('http-bearer-token-0123456789')

    const off = spawnCli(['-l', '127.0.0.1', '-p', '0', '--http', '127.0.0.1:0'])
    await off.listening(START_MS)
    expect((await req(`${await httpOf(off)}/drain`, 'POST', 'anything')).status).toBe(403)
  })

  it('--http-token-metrics puts /metrics behind it too; /healthz and /readyz stay open; promtool accepts the security families', async () => {
    const c = certs!
    if (c === null) return
    const httpTokens = path.join(fx.tmp(), 'http-tokens-2')
    fs.writeFileSync(httpTokens, 'metrics-bearer-token-0123456789\n', { mode: 0o600 })
    const proc = spawnCli(['-l', '127.0.0.1', '-p', '0', '--tls-port', '0', ...tlsArgs(c), '--auth-file', tokenFile, '--http', '127.0.0.1:0', '--http-token-file', httpTokens, '--http-token-metrics'])
    await proc.listening(START_MS)
    const url = await httpOf(proc)
    expect((await req(`${url}/metrics`, 'GET')).status).toBe(401)
    expect((await req(`${url}/healthz`, 'GET')).status).toBe(200)
    expect((await req(`${url}/readyz`, 'GET')).status).toBe(200)
    const text = (await req(`${url}/metrics`, 'GET', 'metrics-bearer-token-0123456789')).body
    const m = parseMetrics(text)
    for (const name of ['tsbeanstalkd_pending_connections', 'tsbeanstalkd_pending_refused_total', 'tsbeanstalkd_pending_timeouts_total', 'tsbeanstalkd_tls_handshake_failures_total', 'tsbeanstalkd_auth_successes_total', 'tsbeanstalkd_reload_failures_total']) {
      expect(sample(m, name), name).toBe(0)
    }
    expect(sample(m, 'tsbeanstalkd_auth_failures_total', { listener: 'http' })).toBe(1)
    if (haveTool('promtool')) {
      const r = runTool('promtool', ['check', 'metrics'], text)
      expect(r.output).toBe('')
      expect(r.status).toBe(0)
    }
  })
})

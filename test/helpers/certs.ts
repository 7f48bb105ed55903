/**
 * Test certificates made at test time with the real `openssl` (req, x509):
 * a CA, a server certificate for 127.0.0.1/localhost signed by it, client
 * certificates (one good, one expired, one from another CA), and a second
 * server certificate for reload tests. EC P-256 keys: fast to make.
 * Under CI=true a missing openssl fails the test (.ci/run installs it).
 */
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { haveTool } from './http.js'

export interface CertSet {
  readonly dir: string
  readonly caCert: string
  readonly serverCert: string
  readonly serverKey: string
  /** A second server certificate (same CA, CN=tsb-reloaded), to rotate to. */
  readonly server2Cert: string
  readonly server2Key: string
  readonly clientCert: string
  readonly clientKey: string
  readonly expiredCert: string
  readonly expiredKey: string
  /** Signed by another CA than caCert. */
  readonly strangerCert: string
  readonly strangerKey: string
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 })
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

function ca(dir: string, name: string): void {
  openssl(dir, ['req', '-x509', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`])
}

/** A key and a certificate signed by `caName`, valid `days` (negative: already expired). */
function leaf(dir: string, name: string, caName: string, cn: string, days: number, server: boolean): void {
  openssl(dir, ['req', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`])
  const ext = path.join(dir, `${name}.ext`)
  fs.writeFileSync(ext, server ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' : 'extendedKeyUsage=clientAuth\n')
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-days', String(days), '-extfile', ext, '-out', `${name}.pem`])
}

export function makeCerts(dir: string): CertSet | null {
  if (!haveTool('openssl', ['version'])) return null
  fs.mkdirSync(dir, { recursive: true })
  ca(dir, 'ca')
  ca(dir, 'other-ca')
  leaf(dir, 'server', 'ca', 'tsb-test', 2, true)
  leaf(dir, 'server2', 'ca', 'tsb-reloaded', 2, true)
  leaf(dir, 'client', 'ca', 'client', 2, false)
  leaf(dir, 'expired', 'ca', 'expired-client', -1, false)
  leaf(dir, 'stranger', 'other-ca', 'stranger', 2, false)
  for (const f of fs.readdirSync(dir)) if (f.endsWith('.key')) fs.chmodSync(path.join(dir, f), 0o600)
  const p = (f: string): string => path.join(dir, f)
  return {
    dir,
    caCert: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    server2Cert: p('server2.pem'),
    server2Key: p('server2.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    expiredCert: p('expired.pem'),
    expiredKey: p('expired.key'),
    strangerCert: p('stranger.pem'),
    strangerKey: p('stranger.key'),
  }
}

/** The SHA-256 fingerprint of a PEM certificate file, as TLSSocket.getPeerCertificate() gives it. */
export function fingerprintOf(certFile: string): string {
  return new X509Certificate(fs.readFileSync(certFile)).fingerprint256
}

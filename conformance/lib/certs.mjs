// @ts-check
/**
 * Throw-away TLS material for running a suite over TLS with tokens: a CA, a
 * server certificate for localhost and 127.0.0.1 that it signed (EC P-256,
 * valid two days) and a token file, made with the real `openssl` in `dir`.
 * Keys and the token file are mode 0600, as a server wants them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Whether `openssl` runs here. */
export function haveOpenssl() {
  return spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
}

/**
 * @param {string} dir an empty directory
 * @returns {{ ca: string, cert: string, key: string, tokens: string, token: string }}
 */
export function makeTestCerts(dir) {
  const ssl = (/** @type {string[]} */ args) =>
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl(['req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=conformance-ca']);
  ssl(['req', ...key, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
    '-extfile', 'server.ext', '-out', 'server.pem']);
  const token = randomBytes(32).toString('hex');
  const p = (/** @type {string} */ f) => path.join(dir, f);
  writeFileSync(p('tokens'), `${token}\n`, { mode: 0o600 });
  for (const f of ['ca.key', 'server.key']) chmodSync(p(f), 0o600);
  return { ca: p('ca.pem'), cert: p('server.pem'), key: p('server.key'), tokens: p('tokens'), token };
}

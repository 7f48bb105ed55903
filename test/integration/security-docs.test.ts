/**
 * The README's Security commands, run as written: the openssl block that
 * makes a CA, certificates and a token (in a temp directory), the server
 * command, the `openssl s_client` client (its output must be what the
 * README's comments say), and the socat tunnel that lets an unchanged
 * client library (fivebeans) use mutual TLS. Ports are swapped for free
 * ones; nothing else is changed.
 */
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import type { EventEmitter } from 'node:events'
import { beforeAll, describe, expect, it } from 'vitest'
import { cliFixture } from '../helpers/cli-fixture.js'
import { haveTool } from '../helpers/http.js'
import { Proc, ROOT, freePort, spawnCli, waitConnectable } from '../helpers/process.js'

const fx = cliFixture('tsb-secdocs-')
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')

/** The ```sh block that follows `<!-- security-test: NAME -->`. */
function block(name: string): string {
  const mark = `<!-- security-test: ${name} -->`
  const at = README.indexOf(mark)
  if (at < 0) throw new Error(`README has no ${mark}`)
  const m = /```sh\n([\s\S]*?)```/.exec(README.slice(at))
  if (m === null) throw new Error(`no sh block after ${mark}`)
  return m[1]!
}

/** A block's commands: continuation lines joined, comments dropped, a trailing `&` removed. */
function commands(text: string): string[] {
  return text
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.replace(/\s*&$/, ''))
}

let dir = ''
const ports = new Map<string, string>()
/** README ports -> free ones, in a command line. */
const localize = (cmd: string): string => cmd.replace(/\b(11300|11301|11400)\b/g, (p) => ports.get(p)!)

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(fx.tmp(), 'readme-'))
  for (const p of ['11300', '11301', '11400']) ports.set(p, String(await freePort()))
})

/** Starts a README server command (tsbeanstalkd ...) in the temp directory. */
function startServer(cmd: string): Proc {
  const words = localize(cmd).split(/\s+/)
  expect(words[0]).toBe('tsbeanstalkd')
  return spawnCli(words.slice(1), dir)
}

describe('README "Security"', () => {
  it('the certificate commands run as written and make a CA, certificates it signed and a private token', () => {
    if (!haveTool('openssl', ['version'])) return
    execFileSync('bash', ['-euo', 'pipefail', '-c', block('certs')], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 })
    const verify = execFileSync('openssl', ['verify', '-CAfile', 'ca.pem', 'server.pem', 'client.pem'], { cwd: dir, encoding: 'utf8' })
    expect(verify).toBe('server.pem: OK\nclient.pem: OK\n')
    expect(fs.readFileSync(path.join(dir, 'tokens'), 'utf8')).toMatch(/^[0-9a-f]{64}\n$/)
    expect(fs.statSync(path.join(dir, 'tokens')).mode & 0o077).toBe(0)
    expect(fs.statSync(path.join(dir, 'server.key')).mode & 0o077).toBe(0)
  })

  it('the server command serves, and the s_client command gets what the comments say', async () => {
    if (!fs.existsSync(path.join(dir, 'tokens'))) throw new Error('the certificate block did not run')
    const [serve] = commands(block('serve'))
    const proc = startServer(serve!)
    await proc.listening()
    expect(proc.logLines.filter((l) => l['level'] === 40)).toEqual([])
    const text = block('client')
    const want = text
      .split('\n')
      .filter((l) => l.startsWith('# '))
      .map((l) => `${l.slice(2)}\r\n`)
      .join('')
    const out = execFileSync('bash', ['-euo', 'pipefail', '-c', localize(text)], { cwd: dir, encoding: 'latin1', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] })
    expect(want).toBe('AUTHENTICATED\r\nINSERTED 1\r\n')
    expect(out).toBe(want)
  })

  it('fivebeans, unchanged, through the socat tunnel of the README to a mutual-TLS port', async () => {
    if (!haveTool('socat', ['-V'])) return
    if (!fs.existsSync(path.join(dir, 'tokens'))) throw new Error('the certificate block did not run')
    const [serve, tunnel] = commands(block('tunnel'))
    const proc = startServer(serve!)
    await proc.listening()
    const words = localize(tunnel!).split(/\s+/)
    expect(words[0]).toBe('socat')
    const socat = new Proc(spawn('socat', words.slice(1), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }))
    const port = Number(ports.get('11400'))
    await waitConnectable(port)
    const require = createRequire(import.meta.url)
    type Client = EventEmitter & { connect(): void; end(): void } & Record<string, (...a: unknown[]) => void>
    const fivebeans = require('fivebeans') as { client: new (host: string, port: number) => Client }
    const client = new fivebeans.client('127.0.0.1', port)
    const call = <T extends unknown[]>(name: string, ...args: unknown[]): Promise<T> =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`fivebeans ${name}: no reply`)), 5000)
        client[name]!(...args, (err: unknown, ...res: unknown[]) => {
          clearTimeout(t)
          if (err !== null && err !== undefined) reject(new Error(`fivebeans ${name}: ${String(err)}`))
          else resolve(res as T)
        })
      })
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('fivebeans: no connect')), 5000)
      client.on('connect', () => {
        clearTimeout(t)
        resolve()
      })
      client.on('error', reject)
      client.connect()
    })
    try {
      const [id] = await call<[string]>('put', 0, 0, 60, 'through the tunnel')
      const [rid, body] = await call<[string, Buffer]>('reserve_with_timeout', 0)
      expect(rid).toBe(id)
      expect(body.toString()).toBe('through the tunnel')
      await call('destroy', rid)
    } finally {
      client.end()
      socat.child.kill('SIGKILL')
    }
  })
})

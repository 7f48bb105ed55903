/**
 * A real PostgreSQL cluster of the test's own: `initdb` in a temporary
 * directory, `pg_ctl start` with its Unix socket in that directory and no
 * TCP listener, removed by stop(). PostgreSQL refuses to run as root, so as
 * root the cluster belongs to (and runs as) the `postgres` user the Debian
 * package creates, through `runuser`.
 *
 * Invariants: every cluster started here is tracked until it is removed, and
 * `stopAllClusters()` (afterAll) stops and removes whatever is left; every
 * command has a bounded wait. `pgBinDir()` is null only when the binaries
 * are missing, and the tests then skip with a message saying so.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const live = new Set<PgCluster>()

/** Where initdb and pg_ctl are: Debian's /usr/lib/postgresql/N/bin (newest), or PATH. */
export function pgBinDir(): string | null {
  const base = '/usr/lib/postgresql'
  const versions = fs.existsSync(base) ? fs.readdirSync(base).filter((v) => fs.existsSync(path.join(base, v, 'bin/initdb'))) : []
  versions.sort((a, b) => Number(b) - Number(a))
  if (versions.length > 0) return path.join(base, versions[0]!, 'bin')
  try {
    const initdb = execFileSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).trim()
    return initdb === '' ? null : path.dirname(initdb)
  } catch {
    return null
  }
}

/** The reason the PostgreSQL tests skip, or null when they can run. */
export function pgMissing(): string | null {
  if (pgBinDir() === null) return 'PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql (.ci/run does)'
  if (process.getuid?.() === 0) {
    try {
      execFileSync('id', ['postgres'], { stdio: 'ignore' })
    } catch {
      return 'running as root and there is no postgres user to run PostgreSQL as'
    }
  }
  return null
}

export class PgCluster {
  readonly dir: string
  readonly data: string
  readonly port: number
  private readonly bin: string
  private running = false

  private constructor(dir: string, bin: string, port: number) {
    this.dir = dir
    this.data = path.join(dir, 'data')
    this.bin = bin
    this.port = port
  }

  /** initdb and start; `settings` become -c options of the server. */
  static start(settings: Record<string, string> = {}): PgCluster {
    const bin = pgBinDir()
    if (bin === null) throw new Error('no PostgreSQL binaries')
    // Short: the socket path (dir/.s.PGSQL.port) must fit in 107 bytes.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbpg-'))
    if (process.getuid?.() === 0) execFileSync('chown', ['postgres:postgres', dir])
    const c = new PgCluster(dir, bin, 5432)
    c.settings = settings
    live.add(c)
    c.run('initdb', ['-D', c.data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-instructions'])
    c.startServer()
    return c
  }

  private settings: Record<string, string> = {}

  /** A connection URL for tsbeanstalkd --pg-url and for postgres.js. */
  get url(): string {
    return `postgres://postgres@localhost:${this.port}/postgres?host=${encodeURIComponent(this.dir)}`
  }

  /** Starts the server again after stop({ keep: true }). */
  startServer(): void {
    const opts = [
      `-k ${this.dir}`,
      "-c listen_addresses=''",
      `-p ${this.port}`,
      ...Object.entries(this.settings).map(([k, v]) => `-c ${k}=${v}`),
    ].join(' ')
    this.run('pg_ctl', ['-D', this.data, '-l', path.join(this.dir, 'server.log'), '-o', opts, '-w', '-t', '30', 'start'])
    this.running = true
  }

  /** Stops the server (`immediate`: as a crash would, no checkpoint) and keeps its files. */
  stopServer(mode: 'fast' | 'immediate' = 'fast'): void {
    if (!this.running) return
    this.run('pg_ctl', ['-D', this.data, '-m', mode, '-w', '-t', '30', 'stop'])
    this.running = false
  }

  /** Stops the server and removes the directory. */
  remove(): void {
    try {
      this.stopServer('immediate')
    } finally {
      live.delete(this)
      fs.rmSync(this.dir, { recursive: true, force: true })
    }
  }

  /** The server's log (for a failing test's message). */
  log(): string {
    try {
      return fs.readFileSync(path.join(this.dir, 'server.log'), 'utf8')
    } catch {
      return ''
    }
  }

  private run(cmd: string, args: string[]): void {
    const file = path.join(this.bin, cmd)
    const asRoot = process.getuid?.() === 0
    execFileSync(asRoot ? 'runuser' : file, asRoot ? ['-u', 'postgres', '--', file, ...args] : args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
      cwd: this.dir,
    })
  }
}

/** afterAll: stops and removes every cluster still there. */
export function stopAllClusters(): void {
  for (const c of [...live]) {
    try {
      c.remove()
    } catch {
      // Best effort: the next one still goes.
    }
  }
}

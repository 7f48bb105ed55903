/**
 * Runs binlog code in a child process (lock holders, crash victims). Vitest
 * compiles TypeScript in-process only, so the sources a child needs are
 * transpiled once into a temp directory (with node_modules linked in) and
 * run with plain `node`: children start in tens of milliseconds.
 *
 * Invariants: every child started here is killed and reaped in afterAll; the
 * build directory is removed with it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const SOURCES = ['src/store', 'src/util/clock.ts', 'src/util/readiness.ts', 'test/helpers/prng.ts', 'test/binlog/fixtures']

export class ChildBuild {
  readonly dir: string
  private readonly children = new Set<ChildProcess>()

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsb-binlog-build-'))
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(this.dir, 'node_modules'))
    fs.writeFileSync(path.join(this.dir, 'package.json'), '{"type":"module"}\n')
    for (const s of SOURCES) {
      const abs = path.join(ROOT, s)
      const files = fs.statSync(abs).isDirectory()
        ? fs.readdirSync(abs, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => path.join(s, f))
        : [s]
      for (const f of files) {
        const out = ts.transpileModule(fs.readFileSync(path.join(ROOT, f), 'utf8'), {
          compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
        })
        const dest = path.join(this.dir, f.replace(/\.ts$/, '.js'))
        fs.mkdirSync(path.dirname(dest), { recursive: true })
        fs.writeFileSync(dest, out.outputText)
      }
    }
  }

  /** Starts test/binlog/fixtures/<name>.ts with `args`; stdout is collected into `out`. */
  start(name: string, args: string[]): Child {
    const child = spawn(process.execPath, [path.join(this.dir, 'test/binlog/fixtures', `${name}.js`), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.children.add(child)
    child.on('exit', () => this.children.delete(child))
    return new Child(child)
  }

  async dispose(): Promise<void> {
    await Promise.all([...this.children].map((c) => new Child(c).kill()))
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

export class Child {
  readonly proc: ChildProcess
  out = ''
  err = ''
  private readonly exited: Promise<void>

  constructor(proc: ChildProcess) {
    this.proc = proc
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => (this.out += d))
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => (this.err += d))
    this.exited = new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve()
      else proc.on('close', () => resolve())
    })
  }

  /** Resolves once stdout contains `text`; rejects after `ms` or if the child exits first. */
  async waitFor(text: string, ms = 5000): Promise<void> {
    const start = Date.now()
    while (!this.out.includes(text)) {
      if (this.proc.exitCode !== null) throw new Error(`child exited (${this.proc.exitCode}) before "${text}": ${this.err}`)
      if (Date.now() - start > ms) throw new Error(`child did not print "${text}" within ${ms} ms: ${this.err}`)
      await new Promise((r) => setTimeout(r, 5))
    }
  }

  /** SIGKILL, and wait until the process is gone and its output drained. */
  async kill(): Promise<void> {
    this.proc.kill('SIGKILL')
    await this.exited
  }
}

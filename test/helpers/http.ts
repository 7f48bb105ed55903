/**
 * HTTP and Prometheus helpers for the --http tests: a bounded GET, a parser
 * for the text exposition, and the real tools (promtool, systemd-analyze):
 * a missing tool skips the test on a developer's machine and fails it under
 * CI=true, where .ci/run installs it.
 */
import { spawnSync } from 'node:child_process'

export interface Reply {
  readonly status: number
  readonly type: string
  readonly body: string
}

/** GET (or HEAD) with a bound on the whole exchange. */
export async function get(url: string, ms = 5000, method = 'GET'): Promise<Reply> {
  const res = await fetch(url, { method, signal: AbortSignal.timeout(ms) })
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() }
}

/** Samples of a Prometheus text exposition, keyed `name{a="x",b="y"}` with labels sorted. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`not a sample line: ${line}`)
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
      .map((l) => `${l[1]}="${l[2]}"`)
      .sort()
    out.set(labels.length === 0 ? m[1]! : `${m[1]}{${labels.join(',')}}`, Number(m[3]))
  }
  return out
}

/** The sample `name{labels}` (labels in any order); throws when it is missing. */
export function sample(samples: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
  const key = l.length === 0 ? name : `${name}{${l.join(',')}}`
  const v = samples.get(key)
  if (v === undefined) throw new Error(`no sample ${key}`)
  return v
}

/** Whether `tool` runs here; under CI=true a missing tool is an error, not a skip. */
export function haveTool(tool: string, args: readonly string[] = ['--version']): boolean {
  const r = spawnSync(tool, args, { stdio: 'ignore', timeout: 20_000 })
  const ok = r.error === undefined
  if (!ok && process.env['CI'] === 'true') throw new Error(`${tool} is not installed; .ci/run installs it (CI=true: this test must not be skipped)`)
  return ok
}

/** Runs a tool with `input` on stdin; returns its exit status and output. */
export function runTool(tool: string, args: readonly string[], input = ''): { status: number | null; output: string } {
  const r = spawnSync(tool, args, { input, encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, output: `${r.stdout}${r.stderr}` }
}

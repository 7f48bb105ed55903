/**
 * What the README and contrib/ promise an operator, checked against the real
 * thing: `-h` and the README's flag table list the same flags with the same
 * numeric defaults, the systemd units pass `systemd-analyze verify`, and the
 * Prometheus files pass `promtool check`.
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { haveTool, runTool } from '../helpers/http.js'
import { cliFixture } from '../helpers/cli-fixture.js'
import { BIN, ROOT, spawnCli } from '../helpers/process.js'

const fx = cliFixture('tsb-docs-')

interface HelpFlag {
  readonly forms: string[]
  readonly text: string
}

/** The options of `-h`, each with its forms (-b, --binlog-dir) and its description. */
function helpFlags(help: string): HelpFlag[] {
  const body = help.slice(help.indexOf('Options:') + 'Options:'.length)
  const out: HelpFlag[] = []
  for (const line of body.split('\n')) {
    const m = /^ {2}(-\S+(?:, --\S+)?)(?: <[^>]+>)?\s{2,}(.*)$/.exec(line)
    if (m !== null) out.push({ forms: m[1]!.split(', '), text: m[2]! })
    else if (out.length > 0 && /^\s{4,}\S/.test(line)) out[out.length - 1] = { ...out[out.length - 1]!, text: `${out[out.length - 1]!.text} ${line.trim()}` }
  }
  return out
}

/** The README's flag table: first cell's flags (`-l ADDR` -> -l) and the default cell. */
function readmeFlags(readme: string): { flags: string[]; dflt: string }[] {
  const section = readme.slice(readme.indexOf('## Flags'), readme.indexOf('\n## ', readme.indexOf('## Flags') + 1))
  const rows: { flags: string[]; dflt: string }[] = []
  for (const line of section.split('\n')) {
    if (!line.startsWith('| `-')) continue
    const cells = line.split(' | ')
    rows.push({ flags: [...cells[0]!.matchAll(/`(-[^\s`]+)/g)].map((m) => m[1]!), dflt: cells[cells.length - 1]!.replace(/\s*\|$/, '') })
  }
  return rows
}

describe('the help and the README agree', () => {
  it('every flag of -h is in the README flag table with the same numeric default, and every row is a flag of -h', async () => {
    const proc = spawnCli(['-h'])
    expect((await proc.exited()).code).toBe(0)
    const help = helpFlags(proc.output)
    const rows = readmeFlags(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'))
    expect(help.length).toBeGreaterThan(15)
    for (const h of help) {
      const row = rows.find((r) => r.flags.some((f) => h.forms.includes(f)))
      expect(row, `README flag table lacks ${h.forms.join(', ')}`).toBeDefined()
      const dflt = /\(default is (\d+)(?=[\s,)])/.exec(h.text)?.[1]
      if (dflt !== undefined) expect(row!.dflt.replace(/,/g, ''), `default of ${h.forms[0]}`).toContain(dflt)
    }
    const all = help.flatMap((h) => h.forms)
    for (const r of rows) for (const f of r.flags) expect(all, `README lists ${f}, which -h does not`).toContain(f)
    // Nothing in the help promises what is not there.
    expect(proc.output).not.toMatch(/coming|not yet|TODO/i)
  })
})

describe('contrib/', () => {
  it('the systemd units pass systemd-analyze verify, without a warning', async (ctx) => {
    if (!haveTool('systemd-analyze')) return ctx.skip()
    for (const unit of ['tsbeanstalkd.service', 'tsbeanstalkd.socket']) {
      const text = fs.readFileSync(path.join(ROOT, 'contrib/systemd', unit), 'utf8')
      // verify wants ExecStart= to exist: point it at this checkout.
      fs.writeFileSync(path.join(fx.tmp(), unit), text.replace('/usr/bin/tsbeanstalkd', `${process.execPath} ${BIN}`))
    }
    const r = runTool('systemd-analyze', ['verify', '--man=no', path.join(fx.tmp(), 'tsbeanstalkd.socket'), path.join(fx.tmp(), 'tsbeanstalkd.service')])
    expect(r.output).toBe('')
    expect(r.status).toBe(0)
    // The check is real: a misspelt setting is reported.
    fs.writeFileSync(path.join(fx.tmp(), 'tsbeanstalkd.service'), fs.readFileSync(path.join(fx.tmp(), 'tsbeanstalkd.service'), 'utf8').replace('NoNewPrivileges=yes', 'NoNewPrivileges=yse'))
    expect(runTool('systemd-analyze', ['verify', '--man=no', path.join(fx.tmp(), 'tsbeanstalkd.service')]).output).toMatch(/NoNewPrivileges|boolean/)
  })

  it('the Prometheus scrape config and alert rules pass promtool check', async (ctx) => {
    if (!haveTool('promtool')) return ctx.skip()
    const dir = path.join(ROOT, 'contrib/prometheus')
    const rules = runTool('promtool', ['check', 'rules', path.join(dir, 'tsbeanstalkd.rules.yml')])
    expect(rules.output).toMatch(/SUCCESS: \d+ rules found/)
    expect(rules.status).toBe(0)
    const config = runTool('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')])
    expect(config.status).toBe(0)
    // Every metric an alert uses is one the server exports.
    const exported = fs.readFileSync(path.join(ROOT, 'src/http/metrics.ts'), 'utf8')
    for (const m of fs.readFileSync(path.join(dir, 'tsbeanstalkd.rules.yml'), 'utf8').matchAll(/tsbeanstalkd_[a-z_]+/g)) {
      const name = m[0].replace(/_(bucket|sum|count)$/, '')
      expect(exported, `alert uses ${m[0]}`).toContain(`'${name}'`)
    }
  })
})

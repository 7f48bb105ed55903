/** The TOML layer: schema, file:line for every mistake, flags over the file, and the throttled warning. */
import { describe, expect, it } from 'vitest'
import { lineOf, parseConfigFile } from '../../src/config-file.js'
import { toConfig, UsageError } from '../../src/config.js'
import { Throttled } from '../../src/util/throttled.js'

const cfg = (text: string, flags = {}): ReturnType<typeof toConfig> => toConfig({ verbose: 0, ...flags }, () => undefined, parseConfigFile('t.toml', text))

describe('lineOf', () => {
  const text = ['a = 1', '[store]', '  dir = "/x"', '"quoted.key" = 2', '[[listen]]', 'port = 1', '[[listen]]', 'port = 2', 'http.listen = "x"'].join('\n')
  it.each([
    [['a'], 1],
    [['store'], 2],
    [['store', 'dir'], 3],
    [['store', 'quoted.key'], 4],
    [['listen', 0, 'port'], 6],
    [['listen', 1, 'port'], 8],
    [['listen', 1, 'host'], 7], // not there: its table's header
    [['listen', 1, 'http', 'listen'], 9],
    [['nowhere', 'x'], 1],
  ] as const)('%j is on line %i', (keyPath, line) => {
    expect(lineOf(text, keyPath)).toBe(line)
  })
})

describe('parseConfigFile + toConfig', () => {
  it('maps every section onto the flags it stands for', () => {
    const c = cfg(
      'max_job_size = 100\nuser = "nobody"\n[store]\ndir = "/d"\nengine = "sqlite"\nfsync_ms = 7\nbinlog_size = 4096\n' +
        '[http]\nlisten = ":9100"\nmetrics_max_tubes = 3\n[log]\nformat = "pretty"\nlevel = "trace"\n',
    )
    expect(c).toMatchObject({
      maxJobSize: 100,
      user: 'nobody',
      binlogDir: '/d',
      store: 'sqlite',
      fsyncMs: 7,
      fsyncNever: false,
      binlogSize: 4096,
      http: { host: '::', port: 9100 },
      metricsMaxTubes: 3,
      logFormat: 'pretty',
      verbosity: 2,
      configFile: 't.toml',
      listeners: [{ host: '::', port: 11300 }],
    })
  })

  it('--extensions: off by default, on from the flag or the file', () => {
    expect(cfg('').extensions).toBe(false)
    expect(cfg('extensions = true\n').extensions).toBe(true)
    expect(cfg('', { extensions: true }).extensions).toBe(true)
    expect(() => cfg('extensions = "yes"\n')).toThrow(/^t\.toml:1: /)
  })

  it('[[tube_policy]]: the tube-policy settings from the start, with --extensions only; bad ones name file:line', () => {
    const text =
      'extensions = true\n[[tube_policy]]\ntube = "work"\nmax_retries = 3\ndead_letter = "dlq"\n[[tube_policy]]\ntube = "in"\nmax_jobs = 10\nfan_out = ["a", "b"]\n'
    expect(cfg(text).tubePolicies).toEqual([
      { tube: 'work', maxRetries: 3, deadLetter: 'dlq', maxJobs: 0, fanOut: [] },
      { tube: 'in', maxRetries: 0, deadLetter: null, maxJobs: 10, fanOut: ['a', 'b'] },
    ])
    expect(cfg('').tubePolicies).toEqual([])
    const bad = (t: string): string => {
      try {
        cfg(t)
      } catch (err) {
        expect(err).toBeInstanceOf(UsageError)
        return (err as Error).message
      }
      throw new Error('accepted')
    }
    expect(bad('\n[[tube_policy]]\ntube = "w"\nmax_jobs = 1\n')).toBe('t.toml:2: [[tube_policy]] needs --extensions (or extensions = true)')
    expect(bad('extensions = true\n[[tube_policy]]\ntube = "w"\nmax_retries = 1\ndead_letter = "w"\n')).toBe('t.toml:5: tube_policy.dead_letter must be another tube than w')
    expect(bad('extensions = true\n[[tube_policy]]\ntube = "w"\ndead_letter = "d"\n')).toBe('t.toml:4: tube_policy.dead_letter needs max_retries above 0')
    expect(bad('extensions = true\n[[tube_policy]]\ntube = "-w"\n')).toMatch(/^t\.toml:3: tube_policy\.tube must be a tube name/)
    expect(bad('extensions = true\n[[tube_policy]]\nmax_jobs = 1\n')).toBe('t.toml:2: a [[tube_policy]] needs tube = "<name>"')
    expect(bad('extensions = true\n[[tube_policy]]\ntube = "w"\nmax_jobs = -1\n')).toBe('t.toml:4: tube_policy.max_jobs must be an integer 0-4294967295')
    expect(bad('extensions = true\n[[tube_policy]]\ntube = "w"\nmax_job = 1\n')).toMatch(/^t\.toml:4: unknown setting tube_policy\.max_job /)
    expect(bad('extensions = true\n[[tube_policy]]\ntube = "w"\n[[tube_policy]]\ntube = "w"\n')).toBe('t.toml:5: a second [[tube_policy]] for tube w')
    expect(bad('extensions = true\n[[tube_policy]]\ntube = "w"\nfan_out = ["w"]\n')).toBe('t.toml:4: tube_policy.fan_out must name distinct tubes other than w')
    expect(bad('extensions = true\n[[tube_policy]]\ntube = "w"\nfan_out = []\n')).toBe('t.toml:4: tube_policy.fan_out must be an array of 1-16 tube names')
  })

  it('flags win: -f over fsync_never, -F over fsync_ms, -p over [[listen]], -V over level only upwards', () => {
    expect(cfg('[store]\nfsync_never = true\n', { fsync: '0' })).toMatchObject({ fsyncNever: false, fsyncMs: 0 })
    expect(cfg('[store]\nfsync_ms = 3\n', { fsyncNever: true })).toMatchObject({ fsyncNever: true })
    expect(cfg('[store]\nfsync_never = true\n')).toMatchObject({ fsyncNever: true })
    expect(cfg('[[listen]]\npath = "/s"\n').listeners).toEqual([{ path: '/s' }])
    expect(cfg('[[listen]]\npath = "/s"\n', { port: '5' }).listeners).toEqual([{ host: '::', port: 5 }])
    expect(cfg('[log]\nlevel = "debug"\n', { verbose: 2 }).verbosity).toBe(2)
    expect(cfg('max_job_size = 100\n', { maxJobSize: '7' }).maxJobSize).toBe(7)
  })

  it('names file:line for a bad value whether the checks are the TOML layer\'s or config.ts\'s', () => {
    const bad = (text: string): string => {
      try {
        cfg(text)
      } catch (err) {
        expect(err).toBeInstanceOf(UsageError)
        return (err as Error).message
      }
      throw new Error('accepted')
    }
    expect(bad('\n\n[http]\nmetrics_max_tubes = -1\n')).toBe('t.toml:4: http.metrics_max_tubes must be a non-negative integer')
    expect(bad('[log]\nformat = "xml"\n')).toBe('t.toml:2: invalid --log-format: xml (json or pretty)')
    expect(bad('[store]\nfsync_ms = 1.5\n')).toBe('t.toml:2: store.fsync_ms must be a non-negative integer')
    expect(bad('store = 1\n')).toBe('t.toml:1: store must be a table ([store])')
    expect(bad('[[listen]]\npath = "/a"\nport = 1\n')).toBe('t.toml:1: a [[listen]] has either path or host and port')
    expect(bad('[[listen]]\nsocket = "/a"\n')).toMatch(/^t\.toml:2: unknown setting listen\.socket/)
    expect(bad('[store.mysql]\nurl = "x"\n')).toMatch(/^t\.toml:1: unknown setting store\.mysql /)
    expect(bad('[store]\nengine = "postgres"\n[store.postgres]\nurl = "x"\n')).toBe('t.toml:4: invalid --pg-url x: not a postgres:// URL')
    expect(bad('[store]\nengine = "postgres"\n[store.postgres]\nurl = "postgres://h/db"\nschema = "Bad-Name"\n')).toMatch(/^t\.toml:5: invalid --pg-schema "Bad-Name"/)
    expect(bad('[store]\nengine = "postgres"\n[store.postgres]\nurl = "postgres://h/db"\nsession_timeout_ms = 100\n')).toBe(
      't.toml:5: invalid --pg-session-timeout: 100 (whole ms, at least 200)',
    )
    expect(bad('a = "unterminated\n')).toMatch(/^t\.toml:1: /)
    // The same value as a flag: no file position.
    expect(() => toConfig({ logFormat: 'xml' }, () => undefined, parseConfigFile('t.toml', ''))).toThrow(/^invalid --log-format/)
  })
})

describe('Throttled', () => {
  it('says the first at once, then one line per interval with the count, then goes quiet', async () => {
    const said: number[] = []
    const t = new Throttled(30, (n) => said.push(n))
    for (let i = 0; i < 5; i++) t.hit()
    expect(said).toEqual([1])
    const deadline = Date.now() + 5000
    while (said.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
    expect(said).toEqual([1, 4])
    t.hit() // within the next interval: counted, said at its end
    while (said.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
    expect(said).toEqual([1, 4, 1])
    t.stop()
  })
})

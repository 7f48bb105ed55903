// @ts-check
/**
 * The named scenarios of `bench/run.mjs`: each is one loadgen run against a
 * fresh server. `n` is the job count of the full run, `quick` of --quick;
 * `flags` are added to the server command (the durable scenarios' binlog,
 * for both servers of a compare), `tsbFlags` only to tsbeanstalkd's (an
 * engine the reference has not); `metrics` are the extra keys the summary
 * shows for it. `restart`: after the run the server is killed (-9) and
 * started again on the same {DIR}, and the restart is measured (run.mjs).
 * `manual` ones run only when named (or their group is): not in `all`.
 */

/**
 * @typedef {{
 *   name: string, group: string, what: string, args: string[], n: number, quick: number,
 *   flags?: string[], tsbFlags?: string[], maxSecs?: number, quickArgs?: string[], metrics?: string[], warmup?: number,
 *   restart?: boolean, manual?: boolean
 * }} Scenario
 */

/** @type {Scenario[]} */
const list = []

/** @param {Scenario} s */
function add(s) {
  list.push(s)
}

for (const c of [1, 10, 100]) {
  add({
    name: `put@${c}`,
    group: 'core',
    what: `put 100-byte jobs from ${c} connection(s), one command in flight each`,
    args: ['-s', 'put', '-c', `${c}`, '-p', '1'],
    n: c === 1 ? 30000 : 100000,
    quick: c === 1 ? 3000 : 10000,
  })
}
for (const c of [1, 10, 100]) {
  add({
    name: `reserve-delete@${c}`,
    group: 'core',
    what: `reserve-with-timeout 0 + delete from a pre-filled queue (prefill not measured), ${c} connection(s)`,
    args: ['-s', 'reserve-delete', '-c', `${c}`, '-p', '1'],
    n: c === 1 ? 20000 : 100000,
    quick: c === 1 ? 2000 : 10000,
  })
}
for (const c of [1, 10, 100]) {
  add({
    name: `put-reserve-delete@${c}`,
    group: 'core',
    what: `put, reserve-with-timeout 0, delete in turn on each of ${c} connection(s), one tube`,
    args: ['-s', 'cycle', '-c', `${c}`, '-p', '1', '-t', '1'],
    n: c === 1 ? 10000 : 50000,
    quick: c === 1 ? 1000 : 5000,
  })
}
add({
  name: 'pipeline',
  group: 'pipelined',
  what: '4 connections x 100 commands in flight, put/reserve/delete cycles, a tube each (compare.sh "pipeline")',
  args: ['-s', 'cycle', '-c', '4', '-p', '100', '-t', '4'],
  n: 200000,
  quick: 20000,
  metrics: ['cmds_per_s'],
})
add({
  name: 'pipeline16',
  group: 'pipelined',
  what: '4 connections x 16 commands in flight, put/reserve/delete cycles',
  args: ['-s', 'cycle', '-c', '4', '-p', '16', '-t', '4'],
  n: 100000,
  quick: 10000,
  metrics: ['cmds_per_s'],
})
add({
  name: 'mixed',
  group: 'latency',
  what: '10 producers at 10,000 jobs/s total, 10 blocking workers; p50/p99/p999 are put->reserve (end to end)',
  args: ['-s', 'mixed', '-c', '10', '--workers', '10', '-p', '1', '--rate', '10000'],
  n: 30000,
  quick: 10000,
  metrics: ['p999_us', 'rtt_p99_us', 'max_pace_lag_us'],
})
add({
  name: 'body-100',
  group: 'body',
  what: 'put, 10 connections, 100-byte bodies (the baseline of body-4k)',
  args: ['-s', 'put', '-c', '10', '-p', '1', '-b', '100'],
  n: 100000,
  quick: 10000,
})
add({
  name: 'body-4k',
  group: 'body',
  what: 'put, 10 connections, 4 KiB bodies',
  args: ['-s', 'put', '-c', '10', '-p', '1', '-b', '4096'],
  n: 50000,
  quick: 5000,
})
add({
  name: 'tubes-10k',
  group: 'tubes',
  what: 'one worker watching 10,000 tubes (reserve + delete), 4 producers putting into random tubes (use + put)',
  args: ['-s', 'tubes', '-t', '10000', '-c', '4', '-p', '16'],
  n: 20000,
  quick: 3000,
  metrics: ['srv_us_per_cmd'],
})
add({
  name: 'tubes-1',
  group: 'tubes',
  what: 'the same with one tube: srv_us_per_cmd here vs tubes-10k is the cost of watching many tubes',
  args: ['-s', 'tubes', '-t', '1', '-c', '4', '-p', '16'],
  n: 20000,
  quick: 3000,
  metrics: ['srv_us_per_cmd'],
})
add({
  name: 'idle-10k',
  group: 'conns',
  what: '10,000 idle connections (use + watch, then silent) plus 4 busy put/reserve/delete connections',
  args: ['-s', 'many-conns', '--idle', '10000', '-c', '4', '-p', '1'],
  quickArgs: ['-s', 'many-conns', '--idle', '2000', '-c', '4', '-p', '1'],
  n: 30000,
  quick: 3000,
  metrics: ['kb_per_idle_conn', 'idle_slowdown', 'idle_connect_s'],
})
add({
  name: 'fill-1m',
  group: 'memory',
  what: '1,000,000 x 100-byte jobs put and kept (4 connections x 200 in flight); bytes per job from RSS growth',
  args: ['-s', 'fill', '-c', '4', '-p', '200'],
  quickArgs: ['-s', 'fill', '-c', '4', '-p', '200', '--settle-ms', '300'],
  n: 1000000,
  quick: 100000,
  maxSecs: 120,
  metrics: ['bytes_per_job', 'hwm_bytes_per_job'],
})
add({
  name: 'delayed-1m',
  group: 'memory',
  what: '1,000,000 jobs with random delays of 1-60 s; counts and peek-delayed checked against each job\'s due time',
  args: ['-s', 'delayed', '-c', '4', '-p', '100', '--delay-min', '1', '--delay-max', '60', '--checks', '2'],
  quickArgs: ['-s', 'delayed', '-c', '4', '-p', '100', '--delay-min', '1', '--delay-max', '60', '--checks', '1'],
  n: 1000000,
  quick: 100000,
  maxSecs: 120,
  metrics: ['bytes_per_job', 'chk_ready'],
})

/** restart: fill N jobs (pipelined), kill -9, start on the same DIR (run.mjs restartOnce) */
const RESTART_METRICS = ['restart_s', 'replay_rss_mb', 'replay_hwm_mb', 'rss_mb', 'rss_vs_live', 'hwm_vs_live']
for (const [tag, n, manual] of /** @type {Array<[string, number, boolean]>} */ ([
  ['1m', 1_000_000, false],
  ['10m', 10_000_000, true],
])) {
  for (const sqlite of [false, true]) {
    add({
      name: `restart-${tag}${sqlite ? '-sqlite' : ''}`,
      group: tag === '1m' ? 'restart' : 'restart-10m',
      what: `${n.toLocaleString('en-US')} x 100-byte jobs put (4 connections x 200 in flight) with -b DIR${sqlite ? ' (tsbeanstalkd: --store sqlite; the reference: its binlog)' : ''}, kill -9, start again: time to the first reply, RSS after the replay against the live queue's (rss_mb)`,
      args: ['-s', 'fill', '-c', '4', '-p', '200'],
      quickArgs: ['-s', 'fill', '-c', '4', '-p', '200', '--settle-ms', '300'],
      flags: ['-b', '{DIR}'],
      ...(sqlite ? { tsbFlags: ['--store', 'sqlite'] } : {}),
      n,
      quick: n / 10,
      maxSecs: n > 1_000_000 ? 900 : 180,
      warmup: 0,
      restart: true,
      manual,
      metrics: RESTART_METRICS,
    })
  }
}

/** drain: fill, delete everything, RSS over time against the idle server's */
for (const tubes of [1, 1000]) {
  add({
    name: tubes === 1 ? 'drain-1m' : `drain-1m-${tubes}t`,
    group: 'drain',
    what: `1,000,000 jobs in ${tubes === 1 ? 'one tube' : `${tubes} tubes`}, all deleted by id (4 connections, pipelined); RSS 10 s after the last delete over the idle server's (drain_vs_idle)`,
    args: ['-s', 'drain', '-c', '4', '-p', '100', '-t', `${tubes}`],
    quickArgs: ['-s', 'drain', '-c', '4', '-p', '100', '-t', `${tubes}`, '--drain-secs', '3'],
    n: 1_000_000,
    quick: 100_000,
    maxSecs: 180,
    // the idle figure is the server's before anything ran
    warmup: 0,
    metrics: ['idle_rss_mb', 'full_rss_mb', 'drain_rss_1s_mb', 'drain_rss_5s_mb', 'drain_rss_10s_mb', 'drain_vs_idle', 'drain_s_to_1_5x'],
  })
}

/** durable: put then delete (two binlog records per job) */
const DUR = /** @type {Array<[string, string[], number[]]>} */ ([
  ['F', ['-F'], [1, 10, 100]],
  ['f50', ['-f', '50'], [1, 10, 100]],
  ['f0', ['-f', '0'], [1, 10, 50, 100]],
])
for (const [tag, fl, conns] of DUR) {
  for (const c of conns) {
    const fsync = tag === 'f0'
    add({
      name: `put-delete@${c}-${tag}`,
      group: 'durable',
      what: `put then delete, ${c} connection(s), with -b DIR ${fl.join(' ')}${fsync ? ' (an fsync before each reply; group commit)' : ''}`,
      args: ['-s', 'put-delete', '-c', `${c}`, '-p', '1'],
      flags: ['-b', '{DIR}', ...fl],
      n: fsync ? (c === 1 ? 3000 : c === 10 ? 5000 : 10000) : c === 1 ? 10000 : 30000,
      quick: fsync ? (c === 1 ? 300 : 1000) : c === 1 ? 1000 : 3000,
      // an fsync per write makes the reference's warm-up slow; the JIT needs far fewer cycles than 20,000
      ...(fsync ? { warmup: 3000 } : {}),
    })
  }
}

export const SCENARIOS = list

/**
 * Scenario names from arguments: exact names, groups (core, pipelined,
 * latency, body, tubes, conns, memory, restart, restart-10m, drain,
 * durable), `all` (every one not `manual`), globs with `*`, or a custom one
 * as name='loadgen args' (e.g. put50='-s put -c 50 -n 100000').
 * @param {string[]} words
 * @returns {Scenario[]}
 */
export function select(words) {
  if (words.length === 0) words = ['all']
  /** @type {Scenario[]} */
  const out = []
  for (const w0 of words) {
    const eq = w0.indexOf('=')
    if (eq > 0) {
      const args = w0.slice(eq + 1).trim().split(/\s+/)
      const ni = args.indexOf('-n')
      const n = ni >= 0 ? Number(args[ni + 1]) : 100000
      if (ni >= 0) args.splice(ni, 2)
      out.push({ name: w0.slice(0, eq), group: 'custom', what: `custom: ${w0.slice(eq + 1)}`, args, n, quick: Math.max(100, Math.round(n / 10)) })
      continue
    }
    for (const w of w0.split(',')) {
      if (!w) continue
      let hit = list.filter((s) => (w === 'all' && !s.manual) || s.name === w || s.group === w)
      if (hit.length === 0 && w.includes('*')) {
        const re = new RegExp(`^${w.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`)
        hit = list.filter((s) => re.test(s.name))
      }
      if (hit.length === 0) throw new Error(`unknown scenario '${w}' (try --list)`)
      for (const s of hit) if (!out.includes(s)) out.push(s)
    }
  }
  return out
}

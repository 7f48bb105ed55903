/**
 * Dynamic replies, byte-exact with beanstalkd 1.12 (REFERENCE.md 2.10, and the
 * binary where they differ: in 1.12 `tube`, `name`, `hostname`, `os` and
 * `platform` are unquoted, only `version` is quoted).
 *
 * YAML bodies are built as latin1 strings: stats are rare next to put and
 * reserve, and a template string is the clearest statement of the layout.
 */
import { STATE_NAMES, type Job, JobState } from '../queue/job.js'
import { secs, secsLeft, type QueueTotals, type TubeFigures } from '../queue/snapshot.js'
import type { Tube } from '../queue/tube.js'
import { Op } from './commands.js'

/** `OK <n>\r\n<yaml>\r\n`, n excluding the final CRLF. */
export function okYaml(yaml: string): string {
  return `OK ${Buffer.byteLength(yaml, 'latin1')}\r\n${yaml}\r\n`
}

export function statsJob(j: Job, now: number, file: number): string {
  const timed = j.state === JobState.RESERVED || j.state === JobState.DELAYED
  return okYaml(
    `---\nid: ${j.id}\ntube: ${j.tube.name}\nstate: ${STATE_NAMES[j.state]}\npri: ${j.pri}\n` +
      `age: ${secs(now - j.createdAt)}\ndelay: ${secs(j.delayMs)}\nttr: ${secs(j.ttrMs)}\n` +
      `time-left: ${timed ? secsLeft(j.deadline, now) : 0}\nfile: ${file}\nreserves: ${j.reserves}\n` +
      `timeouts: ${j.timeouts}\nreleases: ${j.releases}\nburies: ${j.buries}\nkicks: ${j.kicks}\n` +
      // --extensions only (no job has an origin without it): a dead-lettered job's source.
      (j.origin === null ? '' : `dead-letter-from: ${j.origin.tube}\ndead-letter-id: ${j.origin.id}\n`),
  )
}

export function statsTube(t: TubeFigures): string {
  return okYaml(
    `---\nname: ${t.name}\ncurrent-jobs-urgent: ${t.urgent}\ncurrent-jobs-ready: ${t.ready}\n` +
      `current-jobs-reserved: ${t.reserved}\ncurrent-jobs-delayed: ${t.delayed}\n` +
      `current-jobs-buried: ${t.buried}\ntotal-jobs: ${t.totalJobs}\ncurrent-using: ${t.using}\n` +
      `current-watching: ${t.watching}\ncurrent-waiting: ${t.waiting}\ncmd-delete: ${t.cmdDelete}\n` +
      `cmd-pause-tube: ${t.cmdPause}\npause: ${t.pause}\npause-time-left: ${t.pauseTimeLeft}\n`,
  )
}

export function tubeList(tubes: readonly Tube[]): string {
  let yaml = '---\n'
  for (const t of tubes) yaml += `- ${t.name}\n`
  return okYaml(yaml)
}

/** Facts about the running process that `stats` reports. */
export interface ProcessInfo {
  readonly pid: number
  readonly version: string
  readonly startedAt: number
  readonly instanceId: string
  readonly hostname: string
  readonly os: string
  readonly platform: string
  readonly maxJobSize: number
  readonly binlogMaxSize: number
  /** CPU time in microseconds. */
  cpuUsage(): { user: number; system: number }
}

/** Binlog figures for `stats`; zeros without a binlog. */
export interface BinlogInfo {
  oldestIndex: number
  currentIndex: number
  recordsMigrated: number
  recordsWritten: number
}

export const NO_BINLOG: BinlogInfo = { oldestIndex: 0, currentIndex: 0, recordsMigrated: 0, recordsWritten: 0 }

/** The cmd-* keys of `stats`, in its order (/metrics labels them by the same names). */
export const STATS_COMMANDS: readonly (readonly [Op, string])[] = [
  [Op.PUT, 'put'],
  [Op.PEEK, 'peek'],
  [Op.PEEK_READY, 'peek-ready'],
  [Op.PEEK_DELAYED, 'peek-delayed'],
  [Op.PEEK_BURIED, 'peek-buried'],
  [Op.RESERVE, 'reserve'],
  [Op.RESERVE_TIMEOUT, 'reserve-with-timeout'],
  [Op.DELETE, 'delete'],
  [Op.RELEASE, 'release'],
  [Op.USE, 'use'],
  [Op.WATCH, 'watch'],
  [Op.IGNORE, 'ignore'],
  [Op.BURY, 'bury'],
  [Op.KICK, 'kick'],
  [Op.TOUCH, 'touch'],
  [Op.STATS, 'stats'],
  [Op.STATS_JOB, 'stats-job'],
  [Op.STATS_TUBE, 'stats-tube'],
  [Op.LIST_TUBES, 'list-tubes'],
  [Op.LIST_TUBE_USED, 'list-tube-used'],
  [Op.LIST_TUBES_WATCHED, 'list-tubes-watched'],
  [Op.PAUSE_TUBE, 'pause-tube'],
]

function cmdLines(cmd: Float64Array): string {
  let s = ''
  for (const [op, name] of STATS_COMMANDS) s += `cmd-${name}: ${cmd[op]}\n`
  return s
}

/** secs.micros with six digits, as the reference prints rusage. */
const cpuTime = (us: number): string => `${Math.floor(us / 1e6)}.${String(Math.floor(us % 1e6)).padStart(6, '0')}`

export function stats(
  r: QueueTotals,
  cmd: Float64Array,
  info: ProcessInfo,
  now: number,
  binlog: BinlogInfo,
): string {
  const cpu = info.cpuUsage()
  return okYaml(
    `---\ncurrent-jobs-urgent: ${r.urgent}\ncurrent-jobs-ready: ${r.ready}\n` +
      `current-jobs-reserved: ${r.reserved}\ncurrent-jobs-delayed: ${r.delayed}\n` +
      `current-jobs-buried: ${r.buried}\n` +
      cmdLines(cmd) +
      `job-timeouts: ${r.timeouts}\ntotal-jobs: ${r.totalJobs}\n` +
      `max-job-size: ${info.maxJobSize}\ncurrent-tubes: ${r.tubes}\n` +
      `current-connections: ${r.connections}\ncurrent-producers: ${r.producers}\n` +
      `current-workers: ${r.workers}\ncurrent-waiting: ${r.waiting}\n` +
      `total-connections: ${r.totalConnections}\npid: ${info.pid}\nversion: "${info.version}"\n` +
      `rusage-utime: ${cpuTime(cpu.user)}\nrusage-stime: ${cpuTime(cpu.system)}\n` +
      `uptime: ${secs(now - info.startedAt)}\nbinlog-oldest-index: ${binlog.oldestIndex}\n` +
      `binlog-current-index: ${binlog.currentIndex}\nbinlog-records-migrated: ${binlog.recordsMigrated}\n` +
      `binlog-records-written: ${binlog.recordsWritten}\nbinlog-max-size: ${info.binlogMaxSize}\n` +
      `draining: ${r.draining}\nid: ${info.instanceId}\nhostname: ${info.hostname}\n` +
      `os: ${info.os}\nplatform: ${info.platform}\n`,
  )
}

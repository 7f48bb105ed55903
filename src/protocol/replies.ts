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
      `timeouts: ${j.timeouts}\nreleases: ${j.releases}\nburies: ${j.buries}\nkicks: ${j.kicks}\n`,
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
      `current-jobs-buried: ${r.buried}\ncmd-put: ${cmd[Op.PUT]}\ncmd-peek: ${cmd[Op.PEEK]}\n` +
      `cmd-peek-ready: ${cmd[Op.PEEK_READY]}\ncmd-peek-delayed: ${cmd[Op.PEEK_DELAYED]}\n` +
      `cmd-peek-buried: ${cmd[Op.PEEK_BURIED]}\ncmd-reserve: ${cmd[Op.RESERVE]}\n` +
      `cmd-reserve-with-timeout: ${cmd[Op.RESERVE_TIMEOUT]}\ncmd-delete: ${cmd[Op.DELETE]}\n` +
      `cmd-release: ${cmd[Op.RELEASE]}\ncmd-use: ${cmd[Op.USE]}\ncmd-watch: ${cmd[Op.WATCH]}\n` +
      `cmd-ignore: ${cmd[Op.IGNORE]}\ncmd-bury: ${cmd[Op.BURY]}\ncmd-kick: ${cmd[Op.KICK]}\n` +
      `cmd-touch: ${cmd[Op.TOUCH]}\ncmd-stats: ${cmd[Op.STATS]}\ncmd-stats-job: ${cmd[Op.STATS_JOB]}\n` +
      `cmd-stats-tube: ${cmd[Op.STATS_TUBE]}\ncmd-list-tubes: ${cmd[Op.LIST_TUBES]}\n` +
      `cmd-list-tube-used: ${cmd[Op.LIST_TUBE_USED]}\ncmd-list-tubes-watched: ${cmd[Op.LIST_TUBES_WATCHED]}\n` +
      `cmd-pause-tube: ${cmd[Op.PAUSE_TUBE]}\njob-timeouts: ${r.timeouts}\ntotal-jobs: ${r.totalJobs}\n` +
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

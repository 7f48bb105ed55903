// @ts-check
/**
 * /proc sampling: server CPU (utime+stime of every thread of the pid), the
 * generator's own CPU (process.cpuUsage covers all its worker threads), and
 * machine-wide idle time, so CPU used by anything else shows as "other".
 */
import { readFileSync } from 'node:fs'
import os from 'node:os'
import { performance } from 'node:perf_hooks'

const HZ = 100 // USER_HZ: the unit of /proc/<pid>/stat and /proc/stat on Linux
export const NCPU = os.availableParallelism ? os.availableParallelism() : os.cpus().length

/** utime+stime of a process in seconds, or -1. @param {number} pid */
export function procCpuS(pid) {
  if (!(pid > 0)) return -1
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1')
    // fields after the ")" that ends the command name: 3=state ... 14=utime 15=stime
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / HZ
  } catch {
    return -1
  }
}

/** A field of /proc/<pid>/status in KiB (VmRSS, VmHWM), or -1. @param {number} pid @param {string} key */
export function procStatusKb(pid, key) {
  if (!(pid > 0)) return -1
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'latin1')
    const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(s)
    return m ? Number(m[1]) : -1
  } catch {
    return -1
  }
}

/** Machine idle (idle+iowait) and steal, seconds of CPU since boot. */
function machineCpu() {
  try {
    const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? ''
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    return { idle: ((v[3] ?? 0) + (v[4] ?? 0)) / HZ, steal: (v[7] ?? 0) / HZ }
  } catch {
    return { idle: 0, steal: 0 }
  }
}

/** @typedef {{t: number, srv: number, gen: number, idle: number, steal: number}} Snap */

/** @param {number} pid @returns {Snap} */
export function snap(pid) {
  const u = process.cpuUsage()
  const m = machineCpu()
  return { t: performance.now(), srv: procCpuS(pid), gen: (u.user + u.system) / 1e6, idle: m.idle, steal: m.steal }
}

/**
 * The CPU part of a report line.
 * @param {Snap} a @param {Snap} b @param {number} ops
 * @returns {Record<string, string | number>}
 */
export function cpuFields(a, b, ops) {
  const secs = Math.max((b.t - a.t) / 1000, 1e-9)
  const scpu = a.srv >= 0 && b.srv >= 0 ? b.srv - a.srv : -1
  const gcpu = b.gen - a.gen
  const busy = Math.max(0, secs * NCPU - (b.idle - a.idle))
  const other = busy - gcpu - (scpu >= 0 ? scpu : 0)
  return {
    server_cpu_s: scpu.toFixed(2),
    gen_cpu_s: gcpu.toFixed(2),
    srv_cpu_pct: scpu >= 0 ? ((100 * scpu) / secs).toFixed(0) : -1,
    gen_cpu_pct: ((100 * gcpu) / secs).toFixed(0),
    srv_us_per_op: scpu >= 0 && ops ? ((1e6 * scpu) / ops).toFixed(2) : -1,
    gen_us_per_op: ops ? ((1e6 * gcpu) / ops).toFixed(2) : -1,
    other_cpu_s: other.toFixed(2),
    other_cpu_pct: ((100 * other) / secs).toFixed(0),
    steal_s: (b.steal - a.steal).toFixed(2),
    machine_busy_pct: ((100 * busy) / secs).toFixed(0),
  }
}

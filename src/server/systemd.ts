/**
 * What systemd hands a service, without a native module:
 *
 * - Socket activation (sd_listen_fds(3)): LISTEN_PID names this process and
 *   LISTEN_FDS counts listening sockets passed from fd 3 up, LISTEN_FDNAMES
 *   names them (`FileDescriptorName=`). Node listens on such an fd directly
 *   (`server.listen({ fd })`), TCP or Unix. The variables are removed once
 *   read, as sd_listen_fds(1) does, so no child inherits them.
 * - Readiness (sd_notify(3)): NOTIFY_SOCKET is a Unix datagram socket, which
 *   Node's dgram cannot send to; `systemd-notify` (run as a child, off the
 *   event loop) sends READY=1, STATUS= and STOPPING=1 for us. systemd accepts
 *   messages from a child only with NotifyAccess=all (the unit sets it), and
 *   systemd-notify waits until systemd has read each one (no --no-block).
 */
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import type { Logger } from 'pino'
import type { ListenAddress } from './server.js'

/** sd_listen_fds: the first passed descriptor. */
export const LISTEN_FDS_START = 3

/** The listening sockets systemd passed this process (none unless LISTEN_PID is ours). */
export function inheritedListeners(env: NodeJS.ProcessEnv = process.env, pid = process.pid): ListenAddress[] {
  const forUs = env['LISTEN_PID'] === String(pid)
  const count = Number(env['LISTEN_FDS'] ?? '0')
  const names = (env['LISTEN_FDNAMES'] ?? '').split(':')
  delete env['LISTEN_PID']
  delete env['LISTEN_FDS']
  delete env['LISTEN_FDNAMES']
  if (!forUs || !Number.isInteger(count) || count <= 0) return []
  return Array.from({ length: count }, (_, i) => {
    const name = names[i]
    return name === undefined || name === '' ? { fd: LISTEN_FDS_START + i } : { fd: LISTEN_FDS_START + i, name }
  })
}

/**
 * The path of an inherited Unix socket (Node knows only the fd): its inode
 * from /proc/self/fd, looked up in /proc/net/unix. Null where unknown.
 */
export function unixSocketPath(fd: number): string | null {
  try {
    const inode = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`))?.[1]
    if (inode === undefined) return null
    for (const line of fs.readFileSync('/proc/net/unix', 'latin1').split('\n')) {
      const f = line.trim().split(/\s+/)
      if (f[6] === inode && f[7] !== undefined) return f[7]
    }
  } catch {
    // not Linux, or /proc hidden
  }
  return null
}

/** Tells systemd about readiness and state, when it asked (NOTIFY_SOCKET); otherwise does nothing. */
export class SystemdNotifier {
  private readonly enabled: boolean
  private readonly log: Logger
  private warned = false

  constructor(log: Logger, env: NodeJS.ProcessEnv = process.env) {
    this.log = log
    this.enabled = (env['NOTIFY_SOCKET'] ?? '') !== ''
  }

  ready(status: string): void {
    this.send(['--ready', `--pid=${process.pid}`, `--status=${status}`])
  }

  status(status: string): void {
    this.send([`--status=${status}`])
  }

  stopping(): void {
    this.send(['STOPPING=1'])
  }

  private send(args: string[]): void {
    if (!this.enabled) return
    execFile('systemd-notify', args, { timeout: 10_000 }, (err) => {
      if (err === null || this.warned) return
      this.warned = true
      this.log.warn({ err }, 'systemd-notify failed (is it installed, and does the unit set NotifyAccess=all?); readiness is not reported')
    })
  }
}

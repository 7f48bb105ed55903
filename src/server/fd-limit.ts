/**
 * The file-descriptor budget for client connections: the soft open-files
 * limit less what the process holds already (store files, listeners, Node's
 * own) less a margin for what it opens later (a new binlog file, the space
 * reserve, SQLite's files, HTTP scrapes). Past it a connection is closed at
 * once (server.ts), so a flood can never take the fd a binlog rotation needs.
 *
 * Linux only (/proc); elsewhere there is no budget and libuv's EMFILE
 * handling applies (it accepts and closes what waits, silently).
 */
import fs from 'node:fs'

/** Descriptors kept free for the store, the HTTP listener and Node itself. */
export const FD_HEADROOM = 32

/** The soft RLIMIT_NOFILE, Infinity when unlimited, null when unknown. */
export function openFilesLimit(): number | null {
  let text: string
  try {
    text = fs.readFileSync('/proc/self/limits', 'latin1')
  } catch {
    return null
  }
  const m = /^Max open files\s+(\S+)/m.exec(text)
  if (m === null) return null
  return m[1] === 'unlimited' ? Infinity : Number(m[1])
}

/** Descriptors open now, or null when unknown. */
export function openFiles(): number | null {
  try {
    return fs.readdirSync('/proc/self/fd').length - 1 // less the one readdir itself held
  } catch {
    return null
  }
}

/** How many client connections fit; Infinity when the limit is unknown or unlimited. */
export function connectionBudget(headroom = FD_HEADROOM): number {
  const limit = openFilesLimit()
  const open = openFiles()
  if (limit === null || open === null || limit === Infinity) return Infinity
  return Math.max(1, limit - open - headroom)
}

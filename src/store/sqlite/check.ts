/**
 * The start-up integrity check of a store file (`PRAGMA quick_check`). It
 * reads the whole file (0.4-0.8 s per 1,000,000 jobs here), so for a large
 * file it runs on a worker thread with its own read-only connection: on the
 * main thread it would stall the event loop that long, and beside the
 * replay it uses the second core. WAL mode lets it read while the store's
 * own connection holds the write lock. A small file is checked in place: a
 * worker costs more to start (tens of ms) than the check.
 */
import fs from 'node:fs'
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type { Db } from './schema.js'

/** Database plus WAL below this is checked and read on the main thread (about 10 ms of quick_check): a worker costs more to start. */
const WORKER_FROM_BYTES = 8 * 1024 * 1024

// The worker is code, not a file, so it runs the same from dist/ and from the TypeScript sources under test.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(workerData.sqlite)
let problems
try {
  const db = new Database(workerData.file, { readonly: true, fileMustExist: true, timeout: workerData.timeoutMs })
  try {
    problems = db.pragma('quick_check(5)').map((r) => r.quick_check)
  } finally {
    db.close()
  }
  parentPort.postMessage({ problems })
} catch (err) {
  parentPort.postMessage({ error: String(err && err.message || err), code: err && err.code })
}
`

const sqliteModule = createRequire(import.meta.url).resolve('better-sqlite3')

export interface CheckResult {
  /** quick_check's findings; empty when the file is sound. */
  readonly problems: string[]
  /** The check could not run (an SQLite error, with its code). */
  readonly error?: { readonly message: string; readonly code: string | undefined }
}

/** quick_check's findings apart from a lone "ok". */
const problemsOf = (found: string[]): string[] => (found.length === 1 && found[0] === 'ok' ? [] : found)

/** Whether `file` (with its WAL) is large enough to be read or checked on a worker thread. */
export function worthAWorker(file: string): boolean {
  const size = (p: string): number => fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0
  return size(file) + size(`${file}-wal`) >= WORKER_FROM_BYTES
}

/** Checks `file` (open as `db`): in place when small, else on a worker; resolves with what it found. */
export function checkFile(db: Db, file: string, timeoutMs: number): Promise<CheckResult> {
  if (!worthAWorker(file)) {
    const rows = db.pragma('quick_check(5)') as { quick_check: string }[]
    return Promise.resolve({ problems: problemsOf(rows.map((r) => r.quick_check)) })
  }
  return checkInWorker(file, timeoutMs)
}

function checkInWorker(file: string, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    const w = new Worker(WORKER, { eval: true, workerData: { sqlite: sqliteModule, file, timeoutMs } })
    let done = false
    const finish = (r: CheckResult): void => {
      if (done) return
      done = true
      resolve(r)
      void w.terminate()
    }
    w.once('message', (m: { problems?: string[]; error?: string; code?: string }) => {
      if (m.error !== undefined) finish({ problems: [], error: { message: m.error, code: m.code } })
      else finish({ problems: problemsOf(m.problems ?? []) })
    })
    w.once('error', (err) => finish({ problems: [], error: { message: err.message, code: undefined } }))
    w.once('exit', (code) => finish({ problems: [], error: { message: `the check's worker exited (${code})`, code: undefined } }))
  })
}

/**
 * The rows of a large store read on a worker thread: it runs PAGE_QUERY on
 * its own read-only connection and posts packed pages (job-pages.ts), each
 * ArrayBuffer transferred, not copied, while this thread builds jobs from
 * the pages before. SQLite's part of a row (stepping, columns, hex) is most
 * of a replay's time, so with it on the second core the replay takes about
 * the longer of the two halves instead of their sum.
 *
 * Invariants:
 * - At most IN_FLIGHT pages wait unread: the worker stops until a page is
 *   done with (the next one is asked for) and its buffer given back to it,
 *   so a few buffers circulate whatever the store's size.
 * - The worker reads one snapshot: the caller's connection holds the write
 *   lock (WAL mode lets this reader in beside it), as the pages read on the
 *   main thread did.
 * - Pages come in id order; after the last (fewer than PAGE_ROWS rows) comes
 *   null (the worker then idles until close()). An SQLite error in the worker rejects next() with its message and
 *   code (storeError maps it); the worker is stopped by close().
 */
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import { PAGE_QUERY, PAGE_ROWS, packRows, type PackedPage } from './job-pages.js'

/** Pages posted and not yet taken, at most. */
const IN_FLIGHT = 4

// Code, not a file, so it runs the same from dist/ and from the TypeScript sources under test.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const Database = require(workerData.sqlite)
${packRows.toString()}
let credits = workerData.inFlight
let wake = null
const spares = []
parentPort.on('message', (buf) => {
  credits++
  spares.push(buf)
  if (wake !== null) { const w = wake; wake = null; w() }
})
async function run() {
  const db = new Database(workerData.file, { readonly: true, fileMustExist: true, timeout: workerData.timeoutMs })
  try {
    const stmt = db.prepare(workerData.query).raw()
    const tubeIndex = new Map()
    let last = 0
    for (;;) {
      while (credits === 0) await new Promise((r) => { wake = r })
      const page = packRows(stmt.all(last), tubeIndex, spares.pop() ?? null)
      credits--
      parentPort.postMessage({ page }, [page.buf])
      if (page.rows < workerData.pageRows) break
      last = page.last
    }
  } finally {
    db.close()
  }
}
run().catch((err) => parentPort.postMessage({ error: String((err && err.message) || err), code: err && err.code }))
`

const sqliteModule = createRequire(import.meta.url).resolve('better-sqlite3')

type Message = { page: PackedPage } | { error: string; code?: string }

/** Pages of `file` read by a worker; next() gives them in order, then null. */
export class WorkerPages {
  private readonly worker: Worker
  private readonly ready: Array<PackedPage> = []
  private failure: Error | null = null
  private ended = false
  /** The last page (fewer than PAGE_ROWS rows) was taken. */
  private done = false
  /** The page next() returned last, its buffer to give back. */
  private taken: PackedPage | null = null
  private waiting: (() => void) | null = null

  constructor(file: string, timeoutMs: number) {
    this.worker = new Worker(WORKER, {
      eval: true,
      workerData: { sqlite: sqliteModule, file, timeoutMs, query: PAGE_QUERY, pageRows: PAGE_ROWS, inFlight: IN_FLIGHT },
    })
    this.worker.on('message', (m: Message) => {
      if ('page' in m) this.ready.push(m.page)
      else this.failure = Object.assign(new Error(m.error), { code: m.code })
      this.wake()
    })
    this.worker.once('error', (err) => {
      this.failure ??= err
      this.wake()
    })
    this.worker.once('exit', (code) => {
      this.ended = true
      if (code !== 0) this.failure ??= new Error(`the reader's worker exited (${code})`)
      this.wake()
    })
  }

  /** The next page, or null after the last; rejects with the worker's error. The page before is done with. */
  async next(): Promise<PackedPage | null> {
    const used = this.taken
    this.taken = null
    // Its buffer goes back for a page to come: room for one more.
    if (used !== null && !this.done) this.worker.postMessage(used.buf, [used.buf])
    for (;;) {
      const page = this.ready.shift()
      if (page !== undefined) {
        if (page.rows < PAGE_ROWS) this.done = true
        this.taken = page
        return page
      }
      if (this.done) return null
      if (this.failure !== null) throw this.failure
      if (this.ended) return null
      await new Promise<void>((resolve) => (this.waiting = resolve))
    }
  }

  /** Stops the worker (at once if it is still reading). */
  close(): Promise<number> {
    return this.worker.terminate()
  }

  private wake(): void {
    const w = this.waiting
    this.waiting = null
    w?.()
  }
}

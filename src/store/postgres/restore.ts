/**
 * The PostgreSQL store's replay: every row of `jobs`, in id order, straight
 * into the registry (the ReplaySink), read as one binary COPY stream.
 *
 * Why COPY ... (FORMAT binary): one statement, no per-page round trips, and
 * no per-row result objects: integers arrive as 8 big-endian bytes, the body
 * as raw bytes that the sink copies straight out of the received message
 * (postgres.js would parse every row's text form, bytea as hex, into an
 * array of values first). Measured in README "PostgreSQL store".
 *
 * Invariants:
 * - The caller is the leader with its epoch raised, so nobody writes
 *   meanwhile; the COPY is one statement, so it is one snapshot anyway.
 * - The event loop runs between the stream's chunks, and the stream is
 *   paused while the meter gives it a turn (ReplayMeter), so the process
 *   answers /readyz while it replays; PostgreSQL waits on its socket then.
 * - A row that breaks the schema's rules (or a COPY format this parser does
 *   not know) is PgRefusedError naming the job; nothing is skipped, and
 *   restoreEnd is the caller's.
 * - Stored wall-clock times become monotonic ones against one
 *   (monoNow, wallNow) pair read at the start.
 */
import type { Readable } from 'node:stream'
import { ReplayMeter, type RestoreOptions } from '../replay-progress.js'
import { toMono, type ReplaySink, type RestoredFields } from '../store.js'
import type { Sql } from './connect.js'
import { PgRefusedError } from './errors.js'

/** Columns per row, in the COPY's order (below). */
const COLUMNS = 15
/** The binary COPY signature (11 bytes), then flags and header-extension length (int32 each). */
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')
const HEADER = SIGNATURE.length + 8
const TWO_32 = 4294967296

/** The stored state names by their length, which tells them apart. */
const STATE_BY_LENGTH: Record<number, [string, number]> = { 5: ['ready', 1], 8: ['reserved', 2], 6: ['buried', 3], 7: ['delayed', 4] }

export interface RestoredRows {
  readonly jobs: number
  readonly maxId: number
  readonly buryKeys: Map<number, number>
  readonly nextBuryKey: number
  /** Buried jobs in bury order. */
  readonly buried: number[]
  readonly oversized: number
  readonly seconds: number
}

/**
 * postgres.js pauses the connection's socket whenever the COPY stream's
 * buffer is full (rows that came before a 'data' listener, or while the
 * replay pauses it), and resumes it only from the stream's read(). When the
 * whole COPY, its end included, arrived while the socket was paused, nothing
 * calls read() again, and every later query on the connection (the store's
 * commits) would wait forever. The stream's read() resumes the socket; on a
 * running socket it does nothing.
 */
function resumeConnection(stream: Readable): void {
  const read = (stream as unknown as { _read?: (n: number) => void })._read
  if (typeof read === 'function') read.call(stream, 0)
}

export async function restoreRows(sql: Sql, schema: string, sink: ReplaySink, o: RestoreOptions): Promise<RestoredRows> {
  const [c] = await sql`SELECT count(*)::int8 AS n FROM jobs`
  const total = Number(c!['n'])
  const meter = new ReplayMeter('postgres store', { filesTotal: 0, bytesTotal: 0, recordsTotal: total }, o.log, o)
  const monoNow = o.clock.now()
  const wallNow = o.wall()
  const f: RestoredFields = { id: 0, state: 0, pri: 0, delayMs: 0, ttrMs: 0, createdAt: 0, deadline: 0, reserves: 0, timeouts: 0, releases: 0, buries: 0, kicks: 0 }
  const buryKeys = new Map<number, number>()
  let nextBuryKey = 1
  let oversized = 0
  let jobs = 0
  let last = 0
  let headerSeen = false
  let ended = false
  // The last tube's name and bytes: consecutive jobs mostly share a tube, so most rows decode none.
  let tubeName = ''
  let tubeBytes = Buffer.alloc(0)

  const refuse = (what: string): never => {
    throw new PgRefusedError(schema, `${what}; the jobs table was changed by hand`)
  }

  /**
   * Parses the complete rows at the start of buf[from..]; returns where the
   * first incomplete one starts (buf.length if none is).
   */
  // The row parser's cursor, outside it so its readers below are not closures made per row.
  let buf: Buffer = Buffer.alloc(0)
  let p = 0
  const int = (): number => {
    const len = buf.readInt32BE(p)
    if (len !== 8) refuse(`job after ${last}: an integer of ${len} bytes`)
    const v = buf.readInt32BE(p + 4) * TWO_32 + buf.readUInt32BE(p + 8)
    p += 12
    return v
  }
  const nullableInt = (): number | null => {
    if (buf.readInt32BE(p) === -1) {
      p += 4
      return null
    }
    return int()
  }
  const rows = (from: Buffer): number => {
    buf = from
    p = 0
    const end = buf.length
    if (!headerSeen) {
      if (end - p < HEADER) return p
      if (buf.compare(SIGNATURE, 0, SIGNATURE.length, p, p + SIGNATURE.length) !== 0) refuse('COPY did not start with the binary signature')
      p += HEADER + buf.readUInt32BE(p + SIGNATURE.length + 4)
      headerSeen = true
    }
    for (;;) {
      const rowStart = p
      if (end - p < 2) return rowStart
      const n = buf.readInt16BE(p)
      p += 2
      if (n === -1) {
        ended = true
        return end
      }
      if (n !== COLUMNS) refuse(`COPY row of ${n} columns`)
      // Every column's extent, or back to rowStart if the row is not all here yet.
      let q = p
      let complete = true
      for (let i = 0; i < COLUMNS; i++) {
        if (end - q < 4) {
          complete = false
          break
        }
        const len = buf.readInt32BE(q)
        q += 4 + (len > 0 ? len : 0)
        if (q > end) {
          complete = false
          break
        }
      }
      if (!complete) return rowStart
      const id = int()
      const tubeLen = buf.readInt32BE(p)
      p += 4
      if (tubeLen !== tubeBytes.length || buf.compare(tubeBytes, 0, tubeLen, p, p + tubeLen) !== 0) {
        tubeName = buf.toString('utf8', p, p + tubeLen)
        tubeBytes = Buffer.from(buf.subarray(p, p + tubeLen))
      }
      p += tubeLen
      const stateLen = buf.readInt32BE(p)
      p += 4
      const known = STATE_BY_LENGTH[stateLen]
      if (known === undefined || buf.toString('latin1', p, p + stateLen) !== known[0]) refuse(`job ${id}: unknown state ${buf.toString('utf8', p, p + Math.max(0, stateLen))}`)
      const state = known![1]
      p += stateLen
      const pri = int()
      const delayMs = int()
      const ttrMs = int()
      const createdAt = int()
      const dueAt = nullableInt()
      const burySeq = nullableInt()
      if (state === 4 && dueAt === null) refuse(`job ${id}: delayed without due_at`)
      if (state === 3 && burySeq === null) refuse(`job ${id}: buried without bury_seq`)
      f.id = id
      f.state = state
      f.pri = pri
      f.delayMs = delayMs
      f.ttrMs = ttrMs
      f.createdAt = toMono(createdAt, monoNow, wallNow)
      f.deadline = state === 4 ? toMono(dueAt!, monoNow, wallNow) : 0
      f.reserves = int()
      f.timeouts = int()
      f.releases = int()
      f.buries = int()
      f.kicks = int()
      const bodyLen = buf.readInt32BE(p)
      p += 4
      if (bodyLen < 0) refuse(`job ${id}: no body`)
      sink.restoreJob(f, tubeName, buf, p, p + bodyLen)
      p += bodyLen
      if (state === 3) {
        buryKeys.set(id, burySeq!)
        if (burySeq! >= nextBuryKey) nextBuryKey = burySeq! + 1
      }
      if (bodyLen > o.maxJobSize) oversized++
      last = id
      jobs++
    }
  }

  const stream: Readable = await sql`
    COPY (SELECT id, tube, state, pri, delay_ms, ttr_ms, created_at, due_at, bury_seq, reserves, timeouts, releases, buries, kicks, body
          FROM jobs ORDER BY id) TO STDOUT (FORMAT binary)`.readable()
  // A row split across messages waits here for the rest (PostgreSQL sends a row per message, the header with the first).
  let rest: Buffer | null = null
  await new Promise<void>((resolve, reject) => {
    const fail = (err: unknown): void => {
      stream.destroy()
      reject(err)
    }
    stream.on('data', (chunk: Buffer) => {
      try {
        const whole = rest === null ? chunk : Buffer.concat([rest, chunk])
        rest = null
        const stop = rows(whole)
        if (stop < whole.length && !ended) rest = Buffer.from(whole.subarray(stop))
      } catch (err) {
        fail(err)
        return
      }
      meter.records = meter.jobs = jobs
      if (meter.due()) {
        stream.pause()
        meter.pause().then(() => stream.resume(), fail)
      }
    })
    stream.once('end', () => {
      resumeConnection(stream)
      if (rest === null) resolve()
      else reject(new PgRefusedError(schema, `COPY of jobs ended inside a row after job ${last}`))
    })
    stream.once('error', reject)
  })
  if (!ended) throw new PgRefusedError(schema, `COPY of jobs ended without its trailer after job ${last}`)
  meter.records = meter.jobs = jobs
  const buried = [...buryKeys].sort((a, b) => a[1] - b[1] || a[0] - b[0]).map(([id]) => id)
  return { jobs, maxId: last, buryKeys, nextBuryKey, buried, oversized, seconds: meter.finish().seconds }
}

/**
 * Writes a Snapshot as a version 7 beanstalkd binlog directory that
 * beanstalkd 1.10-1.13 starts on with every job (export-beanstalkd).
 *
 * What the reference's reader needs (file.c readrec, walg.c walread), and so
 * what is written:
 * - binlog.1, binlog.2, ...: the 4-byte version 7, then one full record per
 *   job; a file ends at its last record (no preallocated zero tail: the
 *   reader stops cleanly at end of file). Mode 0400, as the reference's.
 * - Records in the order the reference should first see the jobs: it
 *   restores buried jobs in that order, so non-buried jobs by id, then
 *   buried ones in bury order. State: ready (reserved jobs too: the
 *   reference brings them back ready anyway), buried, or delayed with the
 *   due time as deadline_at.
 * - The reference refuses, at replay, a job whose body_size (CRLF included)
 *   is above its -z, and with it the rest of that file. So every such job
 *   (above the default -z 65535) gets a file of its own: a beanstalkd started
 *   without a large enough -z loses only those jobs, and the report names
 *   the -z that keeps them all.
 * - The id high-water mark: the reference's next id is 1 + the largest id it
 *   created at replay. When the snapshot's nextId is above every live job's
 *   id, a full record for job nextId - 1 in tube default is written last,
 *   followed by a short record deleting it: the reference creates and drops
 *   it, and so never reuses an id.
 * - No lock file: the reference creates DIR/lock itself.
 */
import fs from 'node:fs'
import path from 'node:path'
import { nodeFs, writeAll } from '../io.js'
import type { Snapshot } from '../snapshot.js'
import type { StoredJob } from '../store.js'
import { fsyncDir } from '../sync.js'
import { RefState, WALVER, encodeJobrec, type RefJobRec } from './format.js'
import { newJob } from './reader.js'

/** The reference's default -z; a body_size above it needs a larger -z on the beanstalkd that reads the export. */
export const REF_DEFAULT_MAX_JOB_SIZE = 65535

export interface ExportResult {
  readonly files: number
  readonly jobs: number
  readonly nextId: number
  /** Largest body_size written (CRLF included): start beanstalkd with at least this -z. */
  readonly maxBodySize: number
}

/** The fields of the high-water-mark job (a 2-byte body, TTR 1 s, in tube default). */
const BLANK: RefJobRec = {
  id: 0,
  pri: 0,
  delayMs: 0,
  ttrMs: 1000,
  bodySize: 2,
  createdAtWall: 0,
  deadlineWall: 0,
  reserves: 0,
  timeouts: 0,
  releases: 0,
  buries: 0,
  kicks: 0,
  state: RefState.READY,
}

const STATE = { ready: RefState.READY, reserved: RefState.READY, buried: RefState.BURIED, delayed: RefState.DELAYED } as const

function record(j: StoredJob, state: number): RefJobRec {
  return {
    id: j.id,
    pri: j.pri,
    delayMs: j.delayMs,
    ttrMs: j.ttrMs,
    bodySize: j.body.length,
    createdAtWall: j.createdAtWall,
    deadlineWall: j.state === 'delayed' ? j.readyAtWall : 0,
    reserves: j.reserves,
    timeouts: j.timeouts,
    releases: j.releases,
    buries: j.buries,
    kicks: j.kicks,
    state,
  }
}

function fullRecord(j: StoredJob, state: number): Buffer[] {
  const name = Buffer.from(j.tube, 'latin1')
  const len = Buffer.alloc(4)
  len.writeInt32LE(name.length, 0)
  return [len, name, encodeJobrec(record(j, state)), j.body]
}

/** Writes `snap` into `out`, which must be an empty (or missing) directory. */
export function writeReferenceDir(out: string, snap: Snapshot, fileSize: number): ExportResult {
  fs.mkdirSync(out, { recursive: true })
  if (fs.readdirSync(out).length > 0) throw new Error(`${out} is not empty; export into a new directory`)
  const plain = snap.jobs.filter((j) => j.state !== 'buried').sort((a, b) => a.id - b.id)
  const buried = snap.jobs.filter((j) => j.state === 'buried').sort((a, b) => a.buryKey - b.buryKey || a.id - b.id)

  let index = 0
  let fd = -1
  let pos = 0
  const open = (): void => {
    close()
    index++
    fd = fs.openSync(path.join(out, `binlog.${index}`), 'wx', 0o400)
    const v = Buffer.alloc(4)
    v.writeInt32LE(WALVER, 0)
    fs.writeSync(fd, v, 0, 4, 0)
    pos = 4
  }
  const close = (): void => {
    if (fd < 0) return
    fs.fsyncSync(fd)
    fs.closeSync(fd)
    fd = -1
  }
  const write = (parts: Buffer[]): void => {
    const n = parts.reduce((s, b) => s + b.length, 0)
    writeAll(nodeFs, fd, parts, n, pos)
    pos += n
  }

  let maxBodySize = 0
  let big = false
  for (const j of [...plain, ...buried]) {
    const parts = fullRecord(j, STATE[j.state])
    const n = parts.reduce((s, b) => s + b.length, 0)
    const isBig = j.body.length > REF_DEFAULT_MAX_JOB_SIZE
    if (j.body.length > maxBodySize) maxBodySize = j.body.length
    if (fd < 0 || isBig || big || pos + n > fileSize) open()
    big = isBig
    write(parts)
  }
  const maxLive = snap.jobs.reduce((m, j) => Math.max(m, j.id), 0)
  if (snap.nextId - 1 > maxLive) {
    // The high-water mark: a job created and deleted at replay (see the header).
    if (fd < 0 || big) open()
    const mark = newJob({ ...BLANK, id: snap.nextId - 1, createdAtWall: Date.now() }, 'default', Buffer.from('\r\n'))
    write(fullRecord(mark, RefState.READY))
    const del = Buffer.alloc(4)
    write([del, encodeJobrec(record(mark, RefState.INVALID))])
  }
  if (fd < 0) open() // an empty store still gets a file, as a stopped beanstalkd leaves one
  close()
  fsyncDir(out)
  return { files: index, jobs: snap.jobs.length, nextId: snap.nextId, maxBodySize }
}

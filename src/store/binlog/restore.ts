/**
 * Replay's visitor for a starting server: every record goes straight into
 * the registry (the ReplaySink) and into the binlog's own bookkeeping (which
 * file holds each job's latest FULL, bury keys), so the only copy of a job
 * is the registry's, its body copied once from the read buffer into the
 * registry's body arena.
 *
 * Invariants:
 * - After a record is visited, the compactor has the job live in the file
 *   of its latest FULL exactly when the sink has the job.
 * - `buryKeys` holds the bury key of every job whose latest record says
 *   buried, and nextBuryKey is above every key seen.
 * - Stored wall-clock times become monotonic ones against one
 *   (monoNow, wallNow) pair read at the start.
 */
import type { BinlogFs } from '../io.js'
import { ReplayMeter, type RestoreOptions } from '../replay-progress.js'
import { noPolicy, toMono, type RestoredFields, type ReplaySink } from '../store.js'
import { Compactor } from './compactor.js'
import { RecState, fullRecordSize, tombRecordSize, type JobFields, type RecordPolicy, type RecordTags, type RecordTomb } from './record.js'
import { listFiles, fileName, replay, type RecordVisitor, type ReplayResult } from './replay.js'

export interface Restored extends ReplayResult {
  readonly live: Compactor
  readonly buryKeys: Map<number, number>
  readonly nextBuryKey: number
  /** Buried jobs in bury order. */
  readonly buried: number[]
  /** Live jobs with a body over the current -z. */
  readonly oversized: number
  /** --extensions: idempotency cooldowns not run out, by the deleted job's id (live in the compactor like jobs). */
  readonly tombs: Map<number, Tomb>
  /** --extensions: the tube policies in force, by tube (the binlog writes them again into new files). */
  readonly policies: Map<string, RecordPolicy>
  readonly seconds: number
}

export interface BinlogRestoreOptions extends RestoreOptions {
  readonly dir: string
  readonly fileSize: number
}

/** A cooldown the binlog keeps live until it runs out (its TOMB record moves with compaction). */
export interface Tomb extends RecordTomb {
  readonly bytes: number
}

/** The size of a live job's FULL record, from the job the sink holds. */
export function fullBytesOf(j: { readonly tube: { readonly name: string }; readonly bodyLen: number }): number {
  return fullRecordSize(j.tube.name.length, j.bodyLen)
}

class RestoreVisitor implements RecordVisitor {
  readonly buryKeys = new Map<number, number>()
  nextBuryKey = 1
  readonly oversized = new Set<number>()
  readonly tombs = new Map<number, Tomb>()
  readonly policies = new Map<string, RecordPolicy>()
  private readonly out: RestoredFields = {
    id: 0,
    state: 0,
    pri: 0,
    delayMs: 0,
    ttrMs: 0,
    createdAt: 0,
    deadline: 0,
    reserves: 0,
    timeouts: 0,
    releases: 0,
    buries: 0,
    kicks: 0,
  }
  private readonly live: Compactor
  private readonly sink: ReplaySink
  private readonly meter: ReplayMeter
  private readonly maxBody: number
  private readonly monoNow: number
  private readonly wallNow: number

  constructor(live: Compactor, sink: ReplaySink, meter: ReplayMeter, o: BinlogRestoreOptions) {
    this.live = live
    this.sink = sink
    this.meter = meter
    this.maxBody = o.maxJobSize + 2
    this.monoNow = o.clock.now()
    this.wallNow = o.wall()
  }

  /** Files enter the compactor as replay reaches them, so a job's file is there when its FULL is. */
  beginFile(index: number): void {
    this.live.fileWritten(index, 0)
  }

  full(f: JobFields, tube: string, buf: Buffer, start: number, end: number, file: number): void {
    const old = this.sink.peek(f.id)
    if (old !== undefined) this.live.remove(f.id, fullBytesOf(old))
    else this.meter.jobs++
    this.sink.restoreJob(this.convert(f), tube, buf, start, end - 2)
    this.live.addPlaced(f.id, file, fullRecordSize(tube.length, end - start))
    this.noteBury(f)
    if (end - start > this.maxBody) this.oversized.add(f.id)
  }

  update(f: JobFields): boolean {
    if (!this.sink.restoreUpdate(this.convert(f))) return false
    this.noteBury(f)
    return true
  }

  delete(id: number): boolean {
    const old = this.sink.peek(id)
    if (old === undefined) return false
    this.live.remove(id, fullBytesOf(old))
    this.sink.restoreDelete(id)
    this.buryKeys.delete(id)
    this.oversized.delete(id)
    this.meter.jobs--
    return true
  }

  tags(id: number, tags: RecordTags): boolean {
    if (this.sink.restoreTags === undefined) return this.sink.peek(id) !== undefined
    return this.sink.restoreTags(id, tags)
  }

  /** A delete that leaves a cooldown: the job goes, the cooldown stays live until it runs out. */
  tomb(id: number, t: RecordTomb, file: number): void {
    this.delete(id)
    const old = this.tombs.get(id)
    if (old !== undefined) {
      this.live.remove(id, old.bytes)
      this.tombs.delete(id)
    }
    if (t.expiresAtWall <= this.wallNow) return
    const bytes = tombRecordSize(t.tube, t.key)
    this.tombs.set(id, { ...t, bytes })
    this.live.addPlaced(id, file, bytes)
    this.sink.restoreTombstone?.({ tube: t.tube, key: t.key, id, ttlSecs: t.ttlSecs, expiresAt: toMono(t.expiresAtWall, this.monoNow, this.wallNow) })
  }

  /** The latest policy of a tube wins; zeros clear it. */
  policy(p: RecordPolicy): void {
    if (noPolicy(p)) this.policies.delete(p.tube)
    else this.policies.set(p.tube, p)
    this.sink.restorePolicy?.(p)
  }

  private noteBury(f: JobFields): void {
    if (f.state !== RecState.BURIED) {
      this.buryKeys.delete(f.id)
      return
    }
    this.buryKeys.set(f.id, f.buryKey)
    if (f.buryKey >= this.nextBuryKey) this.nextBuryKey = f.buryKey + 1
  }

  private convert(f: JobFields): RestoredFields {
    const o = this.out
    o.id = f.id
    o.state = f.state
    o.pri = f.pri
    o.delayMs = f.delayMs
    o.ttrMs = f.ttrMs
    o.createdAt = toMono(f.createdAtWall, this.monoNow, this.wallNow)
    o.deadline = f.state === RecState.DELAYED ? toMono(f.readyAtWall, this.monoNow, this.wallNow) : 0
    o.reserves = f.reserves
    o.timeouts = f.timeouts
    o.releases = f.releases
    o.buries = f.buries
    o.kicks = f.kicks
    return o
  }
}

/** Replays DIR into `sink`; the caller applies the cuts and ends the restore (`sink.restoreEnd`). */
export async function restore(o: BinlogRestoreOptions, io: BinlogFs, sink: ReplaySink): Promise<Restored> {
  const indices = listFiles(o.dir, io)
  let bytesTotal = 0
  for (const i of indices) bytesTotal += Math.max(0, io.sizeOf(fileName(o.dir, i)))
  const meter = new ReplayMeter('binlog', { filesTotal: indices.length, bytesTotal, recordsTotal: 0 }, o.log, o)
  const live = new Compactor(o.fileSize)
  const visit = new RestoreVisitor(live, sink, meter, o)
  const r = await replay(o.dir, io, visit, meter)
  const buried = [...visit.buryKeys].sort((a, b) => a[1] - b[1] || a[0] - b[0]).map(([id]) => id)
  return {
    ...r,
    live,
    buryKeys: visit.buryKeys,
    nextBuryKey: visit.nextBuryKey,
    buried,
    oversized: visit.oversized.size,
    tombs: visit.tombs,
    policies: visit.policies,
    seconds: meter.finish().seconds,
  }
}

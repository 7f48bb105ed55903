/**
 * One exhaustive switch from a parsed command to a registry call and its
 * reply. Counters follow the reference: `cmd-*` is counted once the arguments
 * parse, before the outcome is known (REFERENCE.md 2.10).
 */
import { Op } from '../protocol/commands.js'
import { Reply } from '../protocol/constants.js'
import type { Parser } from '../protocol/parser.js'
import { stats, statsJob, statsTube, tubeList, type BinlogInfo, type ProcessInfo } from '../protocol/replies.js'
import type { Registry } from '../queue/registry.js'
import { queueTotals, tubeFigures } from '../queue/snapshot.js'
import type { Session } from '../queue/session.js'
import type { Slab } from '../queue/body-arena.js'
import { Word, type Output } from './output.js'
import type { QueueExtensions } from '../queue/extensions/queue-extensions.js'
import { dispatchExtension } from './extensions/dispatch.js'
import { AdminReply } from '../protocol/admin-replies.js'
import { putFanOut } from './extensions/admin.js'

/** What every connection shares. */
export interface ServerContext {
  readonly registry: Registry
  /** cmd-* counters indexed by Op. */
  readonly cmd: Float64Array
  readonly info: ProcessInfo
  readonly maxJobSize: number
  /** --extensions: connections parse the extension verbs too (protocol/extensions.ts). */
  readonly extensions: boolean
  /** With --extensions: the queue's side of them (also installed as `registry.ext`); else null. */
  readonly queueExtensions: QueueExtensions | null
  /** Binlog figures for `stats` (zeros without a binlog). */
  binlogStats(): BinlogInfo
  /** Replies of the running connection. */
  readonly out: Output
  /** Replies to a waiting connection, delivered while another one runs. */
  readonly deliveryOut: Output
  /** Journal records queued outside any command (a flush slice): write them this turn. */
  flushSoon(): void
}

/** The per-connection state dispatch needs. */
export interface DispatchTarget {
  readonly session: Session
  readonly parser: Parser
  /** Id taken by the put whose body is being read. */
  putId: number
  /** Where that body is being read to. */
  putSlab: Slab | null
  /** Set by `quit`. */
  quitting: boolean
  /** The client half-closed: a reserve must not wait for more. */
  readonly inputEnded: boolean
}

export function dispatch(ctx: ServerContext, c: DispatchTarget, op: Op): void {
  const { registry: r, out } = ctx
  const p = c.parser
  const s = c.session
  switch (op) {
    case Op.NEED_MORE:
      return
    case Op.ERROR:
      return out.fixed(p.errorReply)
    case Op.PUT:
      count(ctx, op)
      if (p.bytes > ctx.maxJobSize) return p.skip(p.bytes + 2)
      if (p.trailingJunk) return out.fixed(Reply.BAD_FORMAT)
      r.markProducer(s)
      c.putId = r.allocateId()
      // The body is read straight into its place in the job store.
      c.putSlab = r.bodies.slabFor(p.bytes + 2)
      return p.expectBody(p.bytes, c.putSlab.buf, c.putSlab.take(p.bytes + 2))
    case Op.PUT_SKIPPED:
      return out.fixed(Reply.JOB_TOO_BIG)
    case Op.PUT_BODY_BAD:
      r.bodies.release(takeSlab(c), p.bodyEnd - p.bodyOff)
      r.endArriving(c.putId)
      return out.fixed(Reply.EXPECTED_CRLF)
    case Op.PUT_BODY: {
      const slab = takeSlab(c)
      // Drain mode is decided after the body is read (REFERENCE.md 2.4).
      if (r.draining) {
        r.bodies.release(slab, p.bodyEnd - p.bodyOff)
        r.endArriving(c.putId)
        return out.fixed(Reply.DRAINING)
      }
      // A tube policy's max-jobs (--extensions only: without it no tube has a policy).
      if (s.used.policy !== null) {
        if (r.tubeFull(s.used)) {
          r.bodies.release(slab, p.bodyEnd - p.bodyOff)
          r.endArriving(c.putId)
          return out.fixed(AdminReply.TUBE_FULL)
        }
        if (s.used.policy.fanOut.length > 0) return putFanOut(ctx, c, slab)
      }
      const j = r.put(s, c.putId, p.pri, p.delay, p.ttr, slab, p.bodyOff, p.bodyEnd - p.bodyOff)
      // No room in the binlog (disk full): the reference's answer, nothing kept.
      if (j === null) return out.fixed(Reply.OUT_OF_MEMORY)
      return out.numbered(Word.INSERTED, j.id)
    }
    case Op.PEEK: {
      count(ctx, op)
      const j = r.peek(p.id)
      return j === undefined ? out.fixed(Reply.NOT_FOUND) : out.job(Word.FOUND, j)
    }
    case Op.PEEK_READY:
    case Op.PEEK_DELAYED:
    case Op.PEEK_BURIED: {
      count(ctx, op)
      const j = op === Op.PEEK_READY ? r.peekReady(s) : op === Op.PEEK_DELAYED ? r.peekDelayed(s) : r.peekBuried(s)
      return j === undefined ? out.fixed(Reply.NOT_FOUND) : out.job(Word.FOUND, j)
    }
    case Op.RESERVE:
    case Op.RESERVE_TIMEOUT: {
      count(ctx, op)
      const res = r.reserveOrWait(s, op === Op.RESERVE ? -1 : p.timeout)
      if (res === null) {
        // A half-closed client can send nothing more: its wait ends at once.
        if (c.inputEnded && r.cancelWait(s)) out.fixed(Reply.TIMED_OUT)
        return // otherwise waiting: the Waiter answers later
      }
      return Buffer.isBuffer(res) ? out.fixed(res) : out.job(Word.RESERVED, res)
    }
    case Op.RESERVE_JOB: {
      count(ctx, op)
      const j = r.reserveById(s, p.id)
      return j === null ? out.fixed(Reply.NOT_FOUND) : out.job(Word.RESERVED, j)
    }
    case Op.DELETE:
      count(ctx, op)
      return out.fixed(r.delete(s, p.id) ? Reply.DELETED : Reply.NOT_FOUND)
    case Op.RELEASE:
      count(ctx, op)
      return out.fixed(r.release(s, p.id, p.pri, p.delay) ? Reply.RELEASED : Reply.NOT_FOUND)
    case Op.BURY:
      count(ctx, op)
      return out.fixed(r.bury(s, p.id, p.pri) ? Reply.BURIED : Reply.NOT_FOUND)
    case Op.TOUCH:
      count(ctx, op)
      return out.fixed(r.touch(s, p.id) ? Reply.TOUCHED : Reply.NOT_FOUND)
    case Op.KICK:
      count(ctx, op)
      return out.numbered(Word.KICKED, r.kick(s, p.count))
    case Op.KICK_JOB:
      count(ctx, op)
      return out.fixed(r.kickJob(p.id) ? Reply.KICKED : Reply.NOT_FOUND)
    case Op.STATS:
      count(ctx, op)
      return out.text(stats(queueTotals(r), ctx.cmd, ctx.info, r.clock.now(), ctx.binlogStats()))
    case Op.STATS_JOB: {
      count(ctx, op)
      const j = r.peek(p.id)
      return j === undefined ? out.fixed(Reply.NOT_FOUND) : out.text(statsJob(j, r.clock.now(), r.journal?.fileOf(j.id) ?? 0))
    }
    case Op.STATS_TUBE: {
      count(ctx, op)
      const t = r.tubes.get(p.name)
      return t === undefined ? out.fixed(Reply.NOT_FOUND) : out.text(statsTube(tubeFigures(r, t, r.clock.now())))
    }
    case Op.USE:
      count(ctx, op)
      return out.named(Word.USING, r.use(s, p.name).name)
    case Op.WATCH:
      count(ctx, op)
      return out.numbered(Word.WATCHING, r.watch(s, p.name))
    case Op.IGNORE: {
      count(ctx, op)
      const n = r.ignore(s, p.name)
      return n < 0 ? out.fixed(Reply.NOT_IGNORED) : out.numbered(Word.WATCHING, n)
    }
    case Op.LIST_TUBES:
      count(ctx, op)
      return out.text(tubeList(r.tubeList))
    case Op.LIST_TUBE_USED:
      count(ctx, op)
      return out.named(Word.USING, s.used.name)
    case Op.LIST_TUBES_WATCHED:
      count(ctx, op)
      return out.text(tubeList(s.watching))
    case Op.PAUSE_TUBE:
      count(ctx, op)
      if (p.badName) return out.fixed(Reply.BAD_FORMAT)
      return out.fixed(r.pause(p.name, p.delay) ? Reply.PAUSED : Reply.NOT_FOUND)
    case Op.QUIT:
      c.quitting = true
      return
    default:
      // Only a parser made with --extensions yields these (server/extensions/).
      return dispatchExtension(ctx, c, op)
  }
}

function takeSlab(c: DispatchTarget): Slab {
  const slab = c.putSlab!
  c.putSlab = null
  return slab
}

export function count(ctx: ServerContext, op: Op): void {
  ctx.cmd[op] = ctx.cmd[op]! + 1
}

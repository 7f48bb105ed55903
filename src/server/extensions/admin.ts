/**
 * The operator commands of extensions II: list-jobs, flush-tube,
 * delete-tube, tube-policy, stats-tube-policy, reprioritize, redelay
 * (protocol/admin-verbs.ts for the grammar, queue/extensions/ for the work).
 *
 * A flush runs over several turns (queue/extensions/flush.ts): its session
 * is `busy` meanwhile, so its later commands wait as behind a reserve, and
 * the reply goes out through the connection's Waiter once the last slice
 * is gone, with that slice's records in the same journal write.
 */
import { Op } from '../../protocol/commands.js'
import { Reply } from '../../protocol/constants.js'
import { AdminReply, idList, policyYaml } from '../../protocol/admin-replies.js'
import { ListState, PolicyKind } from '../../protocol/admin-verbs.js'
import { listJobs } from '../../queue/extensions/browse.js'
import { TubeFlush } from '../../queue/extensions/flush.js'
import { count, type DispatchTarget, type ServerContext } from '../dispatch.js'
import type { Slab } from '../../queue/body-arena.js'

export function listJobsCommand(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.LIST_JOBS)
  const a = c.parser.ext!.admin!
  const r = ctx.registry
  const t = r.tubes.get(a.tube)
  const page = t === undefined ? null : listJobs(r, c.session, t, a.state, a.id, a.n)
  if (page === null) return ctx.out.fixed(Reply.NOT_FOUND)
  ctx.out.text(idList(page))
}

/** flush-tube (FLUSHED <n>) and delete-tube (DELETED <n>; the tube's policy goes too). */
export function flushTubeCommand(ctx: ServerContext, c: DispatchTarget, op: Op): void {
  count(ctx, op)
  const a = c.parser.ext!.admin!
  const r = ctx.registry
  const t = r.tubes.get(a.tube)
  if (t === undefined) return ctx.out.fixed(Reply.NOT_FOUND)
  const dropping = op === Op.DELETE_TUBE
  const flush = new TubeFlush(r, t, dropping ? ListState.ALL : a.state)
  const word = dropping ? 'DELETED ' : 'FLUSHED '
  const finish = (): void => {
    if (dropping) r.dropPolicy(t.name)
    r.dropTubeIfUnused(t)
  }
  // Most tubes go in one slice: answered in this run, as any command.
  if (!flush.step()) {
    finish()
    return ctx.out.text(`${word}${flush.deleted}\r\n`)
  }
  const s = c.session
  s.busy = true
  const next = (): void => {
    const more = flush.step()
    ctx.flushSoon()
    if (more) return void setImmediate(next)
    finish()
    s.busy = false
    s.waiter.waitEnded(Buffer.from(`${word}${flush.deleted}\r\n`, 'latin1'))
  }
  ctx.flushSoon()
  setImmediate(next)
}

/**
 * A put into a fan-out source (after the body, DRAINING and max-jobs): the
 * copies (INSERTED <first-id> <count>). The id the put line took is not
 * used, so the copies' ids are consecutive.
 */
export function putFanOut(ctx: ServerContext, c: DispatchTarget, slab: Slab): void {
  const r = ctx.registry
  const p = c.parser
  const s = c.session
  r.endArriving(c.putId)
  const res = r.putFanOut(s.used.policy!.fanOut, p.pri, p.delay, p.ttr, slab, p.bodyOff, p.bodyEnd - p.bodyOff)
  if (Buffer.isBuffer(res)) return ctx.out.fixed(res)
  ctx.out.text(`INSERTED ${res[0]!.id} ${res.length}\r\n`)
}

export function tubePolicyCommand(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.TUBE_POLICY)
  const a = c.parser.ext!.admin!
  const r = ctx.registry
  const p = r.policyFor(a.tube)
  if (a.policy === PolicyKind.MAX_JOBS) p.maxJobs = a.n
  else if (a.policy === PolicyKind.FAN_OUT) p.fanOut = [...a.fanOut]
  else {
    p.maxRetries = a.n
    p.deadLetter = a.n === 0 ? null : a.deadLetter
  }
  r.policyChanged(p)
  ctx.out.fixed(AdminReply.POLICY_SET)
}

/** Any tube name, with a policy or not (then all zeros). */
export function statsTubePolicyCommand(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.STATS_TUBE_POLICY)
  const name = c.parser.ext!.admin!.tube
  const p = ctx.registry.policies?.get(name)
  ctx.out.text(
    policyYaml(
      p === undefined
        ? { tube: name, maxRetries: 0, deadLetter: null, maxJobs: 0, fanOut: [], retired: 0, refused: 0 }
        : { tube: name, maxRetries: p.maxRetries, deadLetter: p.deadLetter, maxJobs: p.maxJobs, fanOut: p.fanOut, retired: p.retired, refused: p.refused },
    ),
  )
}

export function reprioritizeCommand(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.REPRIORITIZE)
  const a = c.parser.ext!.admin!
  ctx.out.fixed(ctx.registry.reprioritize(a.id, a.n) ? AdminReply.REPRIORITIZED : Reply.NOT_FOUND)
}

export function redelayCommand(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.REDELAY)
  const a = c.parser.ext!.admin!
  ctx.out.fixed(ctx.registry.redelay(a.id, a.n) ? AdminReply.REDELAYED : Reply.NOT_FOUND)
}

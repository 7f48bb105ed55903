/**
 * Extension commands that hand out and settle jobs: reserve-batch,
 * delete-batch, reserve-mode, and watch with a weight. A batch runs in one
 * call: one event-loop turn, so its journal records go out in the turn's one
 * write and its replies in the run's one reply write.
 */
import { Op } from '../../protocol/commands.js'
import { count, type DispatchTarget, type ServerContext } from '../dispatch.js'
import { Word } from '../output.js'

const RESERVED_BATCH = Buffer.from('RESERVED_BATCH ', 'latin1')

/** reserve-batch <n>: up to n jobs now, never waiting (tuber: RESERVED_BATCH <k> then k RESERVED entries). */
export function reserveBatch(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.RESERVE_BATCH)
  const { registry: r, out } = ctx
  const n = c.parser.ext!.count
  r.markWorker(c.session)
  const jobs = []
  for (let j; jobs.length < n && (j = r.reserveReady(c.session)) !== undefined; ) jobs.push(j)
  out.numbered(RESERVED_BATCH, jobs.length)
  for (const j of jobs) out.job(Word.RESERVED, j)
}

/** delete-batch <id>...: each id as `delete` would (DELETED_BATCH <deleted> <not_found>). */
export function deleteBatch(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.DELETE_BATCH)
  const { registry: r, out } = ctx
  const { ids, idCount } = c.parser.ext!
  let deleted = 0
  for (let i = 0; i < idCount; i++) if (r.delete(c.session, ids![i]!)) deleted++
  out.text(`DELETED_BATCH ${deleted} ${idCount - deleted}\r\n`)
}

/** reserve-mode fifo|weighted: this connection's reserves from now on (USING <mode>). */
export function reserveMode(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.RESERVE_MODE)
  const weighted = c.parser.ext!.weighted
  c.session.weighted = weighted
  ctx.out.text(weighted ? 'USING weighted\r\n' : 'USING fifo\r\n')
}

/** watch <tube> [<weight>]: the reference's watch, and the tube's weight (1 without one). */
export function watchWeighted(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.WATCH)
  const p = c.parser
  const n = ctx.registry.watch(c.session, p.name)
  c.session.setWeight(p.name, p.ext!.weight)
  ctx.out.numbered(Word.WATCHING, n)
}

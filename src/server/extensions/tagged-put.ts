/**
 * Puts with tags (idp:, grp:, aft:, con:) and stats-group. The put line and
 * its body run as the reference's put does (the size check, the id taken
 * when the line is accepted, EXPECTED_CRLF, DRAINING decided after the
 * body), then the queue's extensions decide: a fresh insert, an idempotent
 * duplicate (`INSERTED <id> <STATE>`), or a refusal.
 */
import { Op } from '../../protocol/commands.js'
import { Reply } from '../../protocol/constants.js'
import { AdminReply } from '../../protocol/admin-replies.js'
import { statsGroupYaml } from '../../protocol/extension-replies.js'
import { count, type DispatchTarget, type ServerContext } from '../dispatch.js'
import { Word } from '../output.js'

export function putTagged(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.PUT)
  const p = c.parser
  const r = ctx.registry
  if (p.bytes > ctx.maxJobSize) return p.skip(p.bytes + 2)
  r.markProducer(c.session)
  c.putId = r.allocateId()
  c.putSlab = r.bodies.slabFor(p.bytes + 2)
  p.expectBody(p.bytes, c.putSlab.buf, c.putSlab.take(p.bytes + 2), Op.PUT_BODY_TAGGED)
}

export function putTaggedBody(ctx: ServerContext, c: DispatchTarget): void {
  const { registry: r, out } = ctx
  const p = c.parser
  const slab = c.putSlab!
  c.putSlab = null
  const len = p.bodyEnd - p.bodyOff
  if (r.draining) {
    r.bodies.release(slab, len)
    r.endArriving(c.putId)
    return out.fixed(Reply.DRAINING)
  }
  if (c.session.used.policy !== null && r.tubeFull(c.session.used)) {
    r.bodies.release(slab, len)
    r.endArriving(c.putId)
    return out.fixed(AdminReply.TUBE_FULL)
  }
  const res = ctx.queueExtensions!.put(c.session, c.putId, p.pri, p.delay, p.ttr, slab, p.bodyOff, len, p.ext!.tags!)
  switch (res.kind) {
    case 'inserted':
      return out.numbered(Word.INSERTED, res.job.id)
    case 'duplicate':
      return out.text(`INSERTED ${res.id} ${res.state}\r\n`)
    case 'refused':
      return out.fixed(res.reply)
  }
}

export function statsGroup(ctx: ServerContext, c: DispatchTarget): void {
  count(ctx, Op.STATS_GROUP)
  const g = ctx.queueExtensions!.group(c.parser.name)
  if (g === undefined) return ctx.out.fixed(Reply.NOT_FOUND)
  ctx.out.text(statsGroupYaml(g))
}

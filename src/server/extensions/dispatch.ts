/**
 * The extension commands' dispatch (--extensions, docs/EXTENSIONS.md),
 * reached from dispatch.ts's `default:` only: the reference's commands never
 * come here. One case per extension op, each handled in the file of its
 * feature.
 */
import { Op } from '../../protocol/commands.js'
import type { DispatchTarget, ServerContext } from '../dispatch.js'
import { deleteBatch, reserveBatch, reserveMode, watchWeighted } from './delivery.js'
import { putTagged, putTaggedBody, statsGroup } from './tagged-put.js'

export function dispatchExtension(ctx: ServerContext, c: DispatchTarget, op: Op): void {
  switch (op) {
    case Op.RESERVE_BATCH:
      return reserveBatch(ctx, c)
    case Op.DELETE_BATCH:
      return deleteBatch(ctx, c)
    case Op.RESERVE_MODE:
      return reserveMode(ctx, c)
    case Op.WATCH_WEIGHTED:
      return watchWeighted(ctx, c)
    case Op.PUT_TAGGED:
      return putTagged(ctx, c)
    case Op.PUT_BODY_TAGGED:
      return putTaggedBody(ctx, c)
    case Op.STATS_GROUP:
      return statsGroup(ctx, c)
    default:
      throw new Error(`dispatch: no handler for op ${op}`)
  }
}

/**
 * The extension commands' dispatch (--extensions, docs/EXTENSIONS.md),
 * reached from dispatch.ts's `default:` only: the reference's commands never
 * come here. One case per extension op, each handled in the file of its
 * feature.
 */
import { Op } from '../../protocol/commands.js'
import type { DispatchTarget, ServerContext } from '../dispatch.js'
import { deleteBatch, reserveBatch, reserveMode, watchWeighted } from './delivery.js'
import { flushTubeCommand, listJobsCommand, redelayCommand, reprioritizeCommand, statsTubePolicyCommand, tubePolicyCommand } from './admin.js'
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
    case Op.LIST_JOBS:
      return listJobsCommand(ctx, c)
    case Op.FLUSH_TUBE:
    case Op.DELETE_TUBE:
      return flushTubeCommand(ctx, c, op)
    case Op.TUBE_POLICY:
      return tubePolicyCommand(ctx, c)
    case Op.STATS_TUBE_POLICY:
      return statsTubePolicyCommand(ctx, c)
    case Op.REPRIORITIZE:
      return reprioritizeCommand(ctx, c)
    case Op.REDELAY:
      return redelayCommand(ctx, c)
    default:
      throw new Error(`dispatch: no handler for op ${op}`)
  }
}

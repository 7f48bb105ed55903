/**
 * Replies of the extension commands that carry YAML (tuber's layouts).
 */
import { Op } from './commands.js'
import { okYaml } from './replies.js'

/**
 * Counters of the extension commands with names of their own (/metrics
 * `command` labels; `stats` keeps the reference's keys). A put with tags
 * counts as put, a watch with a weight as watch.
 */
export const EXTENSION_COMMANDS: readonly (readonly [Op, string])[] = [
  [Op.RESERVE_BATCH, 'reserve-batch'],
  [Op.DELETE_BATCH, 'delete-batch'],
  [Op.RESERVE_MODE, 'reserve-mode'],
  [Op.STATS_GROUP, 'stats-group'],
]

/** What stats-group shows of a group. */
export interface GroupFigures {
  readonly name: string
  /** Live members (buried ones included). */
  readonly members: number
  readonly buried: number
  readonly complete: boolean
  /** After-jobs held for the group. */
  readonly held: { readonly size: number }
}

/** stats-group, as tuber prints it: name (quoted), pending, buried, complete, waiting-jobs. */
export function statsGroupYaml(g: GroupFigures): string {
  return okYaml(
    `---\nname: "${g.name}"\npending: ${g.members}\nburied: ${g.buried}\ncomplete: ${g.complete}\nwaiting-jobs: ${g.held.size}\n`,
  )
}

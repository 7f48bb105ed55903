/**
 * Replies of the extension commands that carry YAML (tuber's layouts).
 */
import { okYaml } from './replies.js'

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

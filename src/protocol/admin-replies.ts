/**
 * Replies of the extensions II commands (admin-verbs.ts; docs/EXTENSIONS.md).
 */
import { Op } from './commands.js'
import { okYaml } from './replies.js'

const fixed = (s: string): Buffer => Buffer.from(s, 'latin1')

export const AdminReply = {
  /** A put into a tube at its max-jobs: nothing kept (a client can tell it from OUT_OF_MEMORY). */
  TUBE_FULL: fixed('TUBE_FULL\r\n'),
  REPRIORITIZED: fixed('REPRIORITIZED\r\n'),
  REDELAYED: fixed('REDELAYED\r\n'),
  POLICY_SET: fixed('POLICY_SET\r\n'),
} as const

/** /metrics `command` labels of these commands. */
export const ADMIN_COMMANDS: readonly (readonly [Op, string])[] = [
  [Op.LIST_JOBS, 'list-jobs'],
  [Op.FLUSH_TUBE, 'flush-tube'],
  [Op.DELETE_TUBE, 'delete-tube'],
  [Op.TUBE_POLICY, 'tube-policy'],
  [Op.STATS_TUBE_POLICY, 'stats-tube-policy'],
  [Op.REPRIORITIZE, 'reprioritize'],
  [Op.REDELAY, 'redelay'],
]

/** list-jobs: the ids as a YAML list, as list-tubes lists names. */
export function idList(ids: readonly { readonly id: number }[]): string {
  let yaml = '---\n'
  for (const j of ids) yaml += `- ${j.id}\n`
  return okYaml(yaml)
}

/** What stats-tube-policy shows. */
export interface PolicyFigures {
  readonly tube: string
  readonly maxRetries: number
  readonly deadLetter: string | null
  readonly maxJobs: number
  readonly fanOut: readonly string[]
  readonly retired: number
  readonly refused: number
}

export function policyYaml(p: PolicyFigures): string {
  return okYaml(
    `---\nname: ${p.tube}\nmax-retries: ${p.maxRetries}\ndead-letter: ${p.deadLetter === null ? '""' : p.deadLetter}\nmax-jobs: ${p.maxJobs}\n` +
      `fan-out: ${p.fanOut.length === 0 ? '""' : p.fanOut.join(',')}\n` +
      `retired-jobs: ${p.retired}\nrefused-puts: ${p.refused}\n`,
  )
}

/**
 * Replacing what a directory holds without a moment in which it holds
 * neither the old files nor the new ones complete: convert (one engine to
 * the other) and the beanstalkd import share this.
 *
 * 1. The new files are written into DIR/<staging>/ and fsynced (the caller).
 * 2. `commit` writes the plan (which old names go where) as
 *    DIR/<staging>/COMPLETE, fsynced: from here on the change is decided.
 * 3. `finish` moves each old file named in the plan into DIR/<backup>/,
 *    unchanged, then each new file into DIR, then removes the staging
 *    directory; fsyncing the directories between the steps.
 *
 * Invariants:
 * - Before COMPLETE exists, DIR itself is untouched: an interruption leaves
 *   the old files in place and a staging directory of ours, which the next
 *   attempt removes and writes again.
 * - After it, every step of `finish` can be repeated: a move whose source is
 *   gone and whose target exists is done. So the next attempt finishes.
 * - No move overwrites anything: a file is linked to its new name (which
 *   fails if the name is taken) and only then unlinked from the old one.
 *   A name that is taken by a different file stops with ForeignFileError.
 */
import fs from 'node:fs'
import path from 'node:path'
import { ForeignFileError, StoreIoError } from './errors.js'
import { fsyncDir, fsyncFile } from './sync.js'

export const MARKER = 'COMPLETE'

export interface Plan {
  /** Name of the directory under DIR that receives the old files. */
  readonly backup: string
  /** Names in DIR to move into the backup. */
  readonly moveOut: readonly string[]
}

/** The plan of a staging directory whose new files are complete, or null (none, or still being written). */
export function readPlan<P extends Plan>(staging: string): P | null {
  const file = path.join(staging, MARKER)
  if (!fs.existsSync(file)) return null
  return JSON.parse(fs.readFileSync(file, 'utf8')) as P
}

/** Step 2: the new files in `staging` are complete and fsynced; record the plan. */
export function commit(staging: string, plan: Plan): void {
  const file = path.join(staging, MARKER)
  fs.writeFileSync(file, JSON.stringify(plan))
  fsyncFile(file)
  fsyncDir(staging)
}

/** Step 3 (repeatable): old files into the backup, new files into DIR, staging gone. */
export function finish(dir: string, staging: string, plan: Plan): void {
  const backup = path.join(dir, plan.backup)
  const present = plan.moveOut.filter((n) => fs.existsSync(path.join(dir, n)))
  if (present.length > 0) {
    fs.mkdirSync(backup, { recursive: true })
    for (const name of present) move(path.join(dir, name), path.join(backup, name))
    fsyncDir(backup)
    fsyncDir(dir)
  }
  for (const name of fs.readdirSync(staging)) if (name !== MARKER) move(path.join(staging, name), path.join(dir, name))
  fsyncDir(dir)
  fs.rmSync(path.join(staging, MARKER), { force: true })
  fs.rmdirSync(staging)
  fsyncDir(dir)
}

/** Removes a staging directory left by an attempt that died before COMPLETE (only what such an attempt writes). */
export function discard(staging: string, ours: (name: string) => boolean): void {
  if (!fs.existsSync(staging)) return
  for (const name of fs.readdirSync(staging)) {
    if (!ours(name)) {
      throw new ForeignFileError(path.join(staging, name), 'a file in a staging directory that tsbeanstalkd does not write there', 'Move it away and try again.')
    }
    fs.rmSync(path.join(staging, name))
  }
  fs.rmdirSync(staging)
  fsyncDir(path.dirname(staging))
}

/** Moves a file to a name that must be free (or already be this file: a repeated step). */
export function move(from: string, to: string): void {
  try {
    fs.linkSync(from, to)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && !fs.existsSync(from) && fs.existsSync(to)) return // moved by an earlier attempt
    if (code === 'EEXIST') {
      const a = fs.statSync(from)
      const b = fs.statSync(to)
      if (a.ino !== b.ino || a.dev !== b.dev) {
        throw new ForeignFileError(to, `the name is taken by another file (moving ${from} there)`, 'Move one of the two away and start again.')
      }
    } else if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
      // No hard links here: a rename, after checking the name is free.
      if (fs.existsSync(to)) throw new ForeignFileError(to, `the name is taken (moving ${from} there)`, 'Move it away and start again.')
      fs.renameSync(from, to)
      return
    } else {
      throw new StoreIoError(to, `cannot move ${from} here`, { cause: err })
    }
  }
  fs.unlinkSync(from)
}

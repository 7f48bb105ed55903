/**
 * The PostgreSQL store's errors, with stable codes the CLI maps to exit
 * statuses: fenced (15), refused (16). Both mean "this process must not
 * serve this schema now"; neither changes anything in the database.
 */

/**
 * This process lost the leadership of its schema (its lock session ended,
 * PostgreSQL stopped answering, or another process took over and raised the
 * epoch): it stops serving at once, acknowledging nothing more.
 */
export class PgFencedError extends Error {
  readonly code = 'TSB_ERR_STORE_FENCED'
  constructor(schema: string, detail: string, options?: ErrorOptions) {
    super(`postgres schema ${schema}: fenced: ${detail}`, options)
    this.name = 'PgFencedError'
  }
}

/**
 * The schema is not one this build may use: tables of something else, or a
 * schema version written by a newer tsbeanstalkd. Nothing was written.
 */
export class PgRefusedError extends Error {
  readonly code = 'TSB_ERR_STORE_REFUSED'
  constructor(schema: string, detail: string) {
    super(`postgres schema ${schema}: refused: ${detail}`)
    this.name = 'PgRefusedError'
  }
}

/** A PostgreSQL error's SQLSTATE (postgres.js sets `code`), or ''. */
export function sqlState(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : ''
}

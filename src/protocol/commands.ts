/**
 * What the parser yields. Commands are numeric codes; their arguments are read
 * from the parser's fields (id, pri, delay, ttr, count, name), so a command
 * costs no allocation.
 */
export const Op = {
  /** Not enough bytes buffered for the next command. */
  NEED_MORE: 0,
  /** A client mistake; the reply is in `parser.errorReply`. */
  ERROR: 1,
  PUT: 2,
  /** The body of the put announced by the previous PUT is complete (`parser.body`). */
  PUT_BODY: 3,
  /** The body of the previous PUT did not end in CRLF. */
  PUT_BODY_BAD: 4,
  /** The body of an oversized put has been swallowed. */
  PUT_SKIPPED: 5,
  PEEK: 6,
  PEEK_READY: 7,
  PEEK_DELAYED: 8,
  PEEK_BURIED: 9,
  RESERVE: 10,
  RESERVE_TIMEOUT: 11,
  RESERVE_JOB: 12,
  DELETE: 13,
  RELEASE: 14,
  BURY: 15,
  KICK: 16,
  KICK_JOB: 17,
  TOUCH: 18,
  STATS: 19,
  STATS_JOB: 20,
  STATS_TUBE: 21,
  USE: 22,
  WATCH: 23,
  IGNORE: 24,
  LIST_TUBES: 25,
  LIST_TUBE_USED: 26,
  LIST_TUBES_WATCHED: 27,
  QUIT: 28,
  PAUSE_TUBE: 29,
  // --- extensions (--extensions, docs/EXTENSIONS.md): 40-59 here, 60-79 for extensions II ---
  /** reserve-batch <n>: `parser.ext.count`. */
  RESERVE_BATCH: 40,
  /** delete-batch <id>...: `parser.ext.ids[0, idCount)`. */
  DELETE_BATCH: 41,
  /** reserve-mode fifo|weighted: `parser.ext.weighted`. */
  RESERVE_MODE: 42,
  /** stats-group <name>: `parser.name`. */
  STATS_GROUP: 43,
  /** watch <tube> [<weight>] with the extensions on: `parser.name`, `parser.ext.weight`. */
  WATCH_WEIGHTED: 44,
  /** put with tags (idp:, grp:, aft:, con:): the numbers as for PUT, the tags in `parser.ext.tags`. */
  PUT_TAGGED: 45,
  /** The body of a PUT_TAGGED is complete (the tags are still in `parser.ext.tags`). */
  PUT_BODY_TAGGED: 46,
  // --- extensions II (protocol/admin-verbs.ts): arguments in `parser.ext.admin` ---
  /** list-jobs <tube> <state> <after-id> <limit>. */
  LIST_JOBS: 60,
  /** flush-tube <tube> [<state>]. */
  FLUSH_TUBE: 61,
  /** delete-tube <tube>. */
  DELETE_TUBE: 62,
  /** tube-policy <tube> max-retries <n> [dead-letter <tube>] | max-jobs <n>. */
  TUBE_POLICY: 63,
  /** stats-tube-policy <tube>. */
  STATS_TUBE_POLICY: 64,
  /** reprioritize <id> <pri>. */
  REPRIORITIZE: 65,
  /** redelay <id> <seconds>. */
  REDELAY: 66,
} as const

export type Op = (typeof Op)[keyof typeof Op]

/**
 * The extension verbs, served only with --extensions (docs/EXTENSIONS.md).
 * Without the switch a parser never matches them, so their lines get the
 * reference's replies (UNKNOWN_COMMAND, or BAD_FORMAT where a standard verb
 * is a prefix, e.g. `reserve-batch 5` after `reserve`).
 *
 * A parser made with extensions tries these before the reference's verbs:
 * each has a name of its own, and putting them first keeps a standard verb
 * that is a prefix of one (`reserve` of `reserve-batch`) from taking it.
 */
import type { Verb } from './verbs.js'

export const EXTENSION_VERBS: readonly Verb[] = []

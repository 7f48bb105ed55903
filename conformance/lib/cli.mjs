// @ts-check
// What the conformance runner and the fuzzer share as command-line programs.

/**
 * Parses the arguments, or prints the error with the usage and exits 2.
 * @template T
 * @param {(argv: string[]) => T} parse @param {string} usage @returns {T}
 */
export function argsOrExit(parse, usage) {
  try {
    return parse(process.argv.slice(2));
  } catch (e) {
    console.error(`${/** @type {Error} */ (e).message}\n${usage}`);
    process.exit(2);
  }
}

/**
 * On SIGINT, SIGTERM or SIGHUP: cleanup (it must be synchronous: kill
 * servers, remove directories), then exit 130 / 143.
 * @param {string} program @param {() => void} cleanup
 */
export function onInterrupt(program, cleanup) {
  for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
    process.on(sig, () => {
      cleanup();
      console.error(`${program}: interrupted by ${sig}`);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

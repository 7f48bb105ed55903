// @ts-check
// Small promise helpers whose timers never outlive the race they are in.

/** @param {number} ms */
export const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/**
 * Resolve with the promise's value, or with `fallback` after ms (the timer is cleared either way).
 * @template T, F
 * @param {Promise<T>} p @param {number} ms @param {F} fallback
 * @returns {Promise<T | F>}
 */
export function within(p, ms, fallback) {
  /** @type {NodeJS.Timeout | undefined} */
  let t;
  const timer = new Promise((resolve) => { t = setTimeout(() => resolve(fallback), Math.max(0, ms)); });
  return Promise.race([p, /** @type {Promise<F>} */ (timer)]).finally(() => clearTimeout(t));
}

// @ts-check
/**
 * Delta debugging over steps (Zeller's ddmin, complements only): drop ever
 * smaller runs of steps while the case still diverges. Any subset of a
 * case's steps is a valid case (generate.mjs), so no step needs repair.
 * Bounded by a number of runs and a deadline; returns the smallest case
 * found so far when either runs out.
 */

/**
 * @template S
 * @param {S[]} steps that diverge
 * @param {(steps: S[]) => Promise<boolean>} diverges runs a candidate
 * @param {{maxRuns: number, deadline: number}} budget
 * @returns {Promise<{steps: S[], runs: number}>}
 */
export async function shrinkSteps(steps, diverges, budget) {
  let cur = steps;
  let runs = 0;
  let n = 2;
  const spent = () => runs >= budget.maxRuns || Date.now() >= budget.deadline;
  while (cur.length >= 2 && !spent()) {
    const size = Math.ceil(cur.length / n);
    let reduced = false;
    for (let start = 0; start < cur.length && !spent(); start += size) {
      const candidate = [...cur.slice(0, start), ...cur.slice(start + size)];
      runs++;
      if (candidate.length > 0 && (await diverges(candidate))) {
        cur = candidate;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= cur.length) break;
      n = Math.min(n * 2, cur.length);
    }
  }
  return { steps: cur, runs };
}

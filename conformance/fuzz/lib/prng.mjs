// @ts-check
/** Seeded pseudo-random numbers (mulberry32): one seed, one sequence, on every machine. */
export class Prng {
  /** @param {number} seed */
  constructor(seed) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next() {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 2 ** 32;
  }

  /** Uniform integer in [0, n). @param {number} n */
  int(n) {
    return Math.floor(this.next() * n);
  }

  /** Uniform integer in [a, b]. @param {number} a @param {number} b */
  range(a, b) {
    return a + this.int(b - a + 1);
  }

  /** @param {number} p */
  chance(p) {
    return this.next() < p;
  }

  /** @template T @param {readonly T[]} items @returns {T} */
  pick(items) {
    if (items.length === 0) throw new RangeError('pick from an empty array');
    return /** @type {T} */ (items[this.int(items.length)]);
  }

  /**
   * One of the keys, by weight.
   * @template {string} K @param {Record<K, number>} weights @returns {K}
   */
  weighted(weights) {
    const entries = /** @type {[K, number][]} */ (Object.entries(weights));
    let r = this.next() * entries.reduce((a, [, w]) => a + w, 0);
    for (const [k, w] of entries) {
      r -= w;
      if (r < 0) return k;
    }
    return /** @type {[K, number]} */ (entries[entries.length - 1])[0];
  }
}

/** The seed of case `index` of a run with seed `seed`. @param {number} seed @param {number} index */
export function caseSeed(seed, index) {
  const p = new Prng(seed ^ Math.imul(index + 1, 0x9e3779b1));
  p.next();
  return Math.floor(p.next() * 2 ** 32);
}

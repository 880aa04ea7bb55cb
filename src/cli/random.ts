/**
 * Seeded random data for the CLI's batches, so every run sees the same numbers.
 *
 * @module
 */

/**
 * mulberry32: a small seeded generator of floats in `[0, 1)`.
 *
 * @example
 * ```ts
 * import { seededRandom } from "@lean/attention/cli";
 * const a = seededRandom(7), b = seededRandom(7);
 * console.log(a() === b()); // true
 * ```
 */
export function seededRandom(seed: number): () => number {
  if (typeof seed !== "number") throw new TypeError(`seed must be a number: got ${typeof seed}`);
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Normally distributed values (Box-Muller) with standard deviation `std`.
 *
 * @example
 * ```ts
 * import { gaussian, seededRandom } from "@lean/attention/cli";
 * const xs = gaussian(1000, 1, seededRandom(1));
 * const mean = xs.reduce((a, b) => a + b) / xs.length;
 * console.log(Math.abs(mean) < 0.2); // true
 * ```
 */
export function gaussian(length: number, std: number, rand: () => number): Float32Array {
  if (!Number.isInteger(length) || length < 0) {
    throw new RangeError(`length must be a non-negative integer: got ${length}`);
  }
  const out = new Float32Array(length);
  for (let i = 0; i < length; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand())) * std;
    const t = 2 * Math.PI * rand();
    out[i] = r * Math.cos(t);
    if (i + 1 < length) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/**
 * Sliding-window planning: with `slidingWindow: W`, the row at position `P` sees only the tokens
 * `P - W < t <= P`, so the tiles before the window of a sequence's earliest query row are never
 * scheduled (a 128k context with a 4k window costs about what a 4k context does). Tiles stay
 * aligned to the sequence's first token: the skipped prefix is a whole number of tiles, and the
 * tiles partly outside a row's window are masked per row in the kernel.
 *
 * @module
 */

import type { Problem } from "../core/problem.ts";

/**
 * The whole tiles of each sequence before the window of its earliest query row (none scheduled),
 * or `undefined` without a sliding window.
 *
 * @example
 * ```ts
 * import { skippedTiles, validateShape } from "@lean/attention/plan";
 * const p = validateShape({
 *   seqLens: [1000, 100], numHeads: 1, numKVHeads: 1, headDim: 8, slidingWindow: 256,
 * });
 * // Sequence 0's row sees tokens 744..999: tiles 0..10 of 64 tokens end before 704.
 * console.log(skippedTiles(p, 64)); // Uint32Array(2) [ 11, 0 ]
 * ```
 */
export function skippedTiles(
  problem: Pick<Problem, "numSeqs" | "seqLens" | "qLens" | "variant">,
  tileTokens: number,
): Uint32Array | undefined {
  const W = problem.variant?.slidingWindow;
  if (W === undefined) return undefined;
  const { numSeqs, seqLens, qLens } = problem;
  const skip = new Uint32Array(numSeqs);
  for (let s = 0; s < numSeqs; s++) {
    const first = seqLens[s] - qLens[s] + 1 - W; // the earliest row's first visible token
    skip[s] = first > 0 ? Math.floor(first / tileTokens) : 0;
  }
  return skip;
}

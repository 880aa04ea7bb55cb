/**
 * KV windows: a K or V cache larger than one storage binding (`maxStorageBufferBindingSize`,
 * `maxBufferSize`, or a `maxBindingBytes` option) is cut into windows of whole token rows (all KV
 * heads of a row together, layout `[token][kvHead][dim]`), each small enough for one binding.
 * The planner never lets a tile cross a window boundary and gives every window its own decode
 * dispatch; partial states and the merge stay global.
 *
 * Cuts fall on a sequence boundary or, inside a sequence, on a multiple of `alignTokens` counted
 * from the sequence's first token and at least `qLen` tokens before its end, so the tiles (and,
 * with `batchInvariant`, the chunks) of a sequence are the same whatever window they land in.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { Problem } from "../core/problem.ts";

/**
 * One window of the concatenated K/V and the workgroups of its decode dispatch.
 *
 * @example
 * ```ts
 * import { createPlan, type KVWindow } from "@lean/attention";
 * const plan = createPlan(
 *   { seqLens: [300, 200], numHeads: 2, numKVHeads: 2, headDim: 64 },
 *   { grid: 4, maxBindingBytes: 65536 }, // 128 rows of 512 bytes per binding
 * );
 * for (const w of plan.schedule.windows as readonly KVWindow[]) {
 *   console.log(w.tokenBegin, w.tokenEnd, w.workgroupBegin, w.workgroupEnd);
 * }
 * // 0 128 0 4
 * // 128 256 4 8
 * // 256 364 8 12
 * // 364 492 12 16
 * // 492 500 16 18
 * ```
 */
export interface KVWindow {
  /** First token row of the window in the concatenated K/V. */
  readonly tokenBegin: number;
  /** One past the last token row. */
  readonly tokenEnd: number;
  /** First workgroup (in the schedule's numbering) that reads this window. */
  readonly workgroupBegin: number;
  /** One past the last workgroup that reads this window. */
  readonly workgroupEnd: number;
}

/**
 * Bytes of one K (or V) token row: all KV heads of the token.
 *
 * @example
 * ```ts
 * import { kvRowBytes, validateShape } from "@lean/attention/plan";
 * const p = validateShape({ seqLens: [4], numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype: "f16" });
 * console.log(kvRowBytes(p)); // 2048
 * ```
 */
export function kvRowBytes(
  problem: Pick<Problem, "numKVHeads" | "headDim" | "kvDtype"> & { headDimV?: number },
): number {
  // K's row, or V's when MLA-style V rows are longer: the larger binding decides.
  const dim = Math.max(problem.headDim, problem.headDimV ?? 0);
  return problem.numKVHeads * dim * KV_DTYPE_INFO[problem.kvDtype].bytes;
}

/**
 * Options for {@linkcode kvWindowBounds}.
 *
 * @example
 * ```ts
 * import { kvWindowBounds, type KVWindowOptions, validateShape } from "@lean/attention/plan";
 * const p = validateShape({ seqLens: [1000], numHeads: 2, numKVHeads: 2, headDim: 64 });
 * const options: KVWindowOptions = { maxBindingBytes: 262144, tileTokens: 64, alignTokens: 64 };
 * console.log(Array.from(kvWindowBounds(p, options))); // [0, 512, 1000]
 * ```
 */
export interface KVWindowOptions {
  /** Largest K (or V) binding in bytes. */
  maxBindingBytes: number;
  /** Tokens of one tile: the smallest window allowed. */
  tileTokens: number;
  /** Cuts inside a sequence fall on multiples of this many tokens from its start. */
  alignTokens: number;
}

/**
 * Token boundaries of the KV windows: `windows + 1` ascending entries from 0 to the total token
 * count; one window when the whole cache fits. O(sequences + windows).
 *
 * Throws `RangeError` when a binding cannot hold one tile of token rows.
 *
 * @example
 * ```ts
 * import { kvWindowBounds, validateShape } from "@lean/attention/plan";
 * const p = validateShape({ seqLens: [300, 200], numHeads: 2, numKVHeads: 2, headDim: 64 });
 * // 512-byte rows, 64 KiB bindings: 128 rows per window, cut on 64-token tiles.
 * const b = kvWindowBounds(p, { maxBindingBytes: 65536, tileTokens: 64, alignTokens: 64 });
 * console.log(Array.from(b)); // [0, 128, 256, 364, 492, 500]
 * ```
 */
export function kvWindowBounds(problem: Problem, options: KVWindowOptions): Float64Array {
  const { maxBindingBytes, tileTokens, alignTokens } = options;
  const total = problem.totalTokens;
  const rowBytes = kvRowBytes(problem);
  const perWindow = Math.floor(maxBindingBytes / rowBytes);
  if (perWindow >= total) return Float64Array.of(0, total);
  if (perWindow < tileTokens) {
    throw new RangeError(
      `maxBindingBytes must hold one tile of K rows (${tileTokens} tokens x ${rowBytes} bytes = ${
        tileTokens * rowBytes
      } bytes): got ${maxBindingBytes}`,
    );
  }
  const { kvStarts, qLens } = problem;
  const bounds: number[] = [0];
  let s = 0;
  let j = 0; // the sequence holding token `end`
  while (total - s > perWindow) {
    const end = s + perWindow;
    while (kvStarts[j + 1] <= end) j++;
    const start = kvStarts[j];
    let cut = end;
    if (end > start) {
      // Inside sequence j: the last aligned token that leaves at least qLen tokens after it.
      const last = Math.min(end, kvStarts[j + 1] - qLens[j]) - start;
      const aligned = start + Math.max(0, Math.floor(last / alignTokens) * alignTokens);
      if (aligned > s) cut = aligned;
      else if (start > s) cut = start;
      else cut = start + Math.max(0, Math.floor(last / tileTokens) * tileTokens);
      if (cut <= s) cut = Math.min(end, kvStarts[j + 1] - qLens[j]);
    }
    bounds.push(cut);
    s = cut;
  }
  bounds.push(total);
  return Float64Array.from(bounds);
}

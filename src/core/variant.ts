/**
 * Attention variants: which tokens a query row sees (the mask) and how a scaled score becomes a
 * logit. Each variant is a small hook with a TypeScript twin here, used by the CPU backend and
 * the float64 reference, and its WGSL in `src/kernels/variant_wgsl.ts`, selected by the kernel
 * spec's variant flags (part of the pipeline key). The causal mask with plain scaling is the
 * base; the parameterised variants of `variant_options.ts` (sliding window, logit soft-cap,
 * ALiBi, sinks) refine it per query row through {@linkcode rowHooks}.
 *
 * @module
 */

import type { Variant } from "./variant_options.ts";

/** The variants the library has. */
export type VariantName = "causal";

/** A variant's host hooks. */
export interface AttentionVariant {
  readonly name: VariantName;
  /**
   * Tokens `0 .. visible - 1` of a sequence of `seqLen` tokens that the query at position `pos`
   * of the last `qLen` sees.
   */
  visibleTokens(seqLen: number, qLen: number, pos: number): number;
  /**
   * The logit of a scaled score (natural units), or `undefined` for plain softmax scaling (no
   * transform, so the hot loops skip the call).
   */
  readonly logit?: (score: number) => number;
}

/**
 * Causal decoding: the query at position `pos` of the last `qLen` tokens sees every token up to
 * its own; scores are only scaled.
 *
 * @example
 * ```ts
 * import { CAUSAL } from "./variant.ts";
 * // 10 tokens, 2 queries: the first sees 9 tokens, the second all 10.
 * console.log(CAUSAL.visibleTokens(10, 2, 0), CAUSAL.visibleTokens(10, 2, 1)); // 9 10
 * ```
 */
export const CAUSAL: AttentionVariant = {
  name: "causal",
  visibleTokens: (seqLen, qLen, pos) => seqLen - qLen + pos + 1,
};

/** Every variant by name. */
export const VARIANTS: Readonly<Record<VariantName, AttentionVariant>> = { causal: CAUSAL };

/**
 * The host hooks of one query row under a variant (the TypeScript twin of the kernels' variant
 * code, shared by the CPU backend and the float64 reference). Token indices may be counted from
 * any origin, as long as `seqLen` is counted from the same one (the ALiBi bias and the window
 * depend on `t - P` only).
 */
export interface RowHooks {
  /** First token the row sees (the sliding window's start, clamped to the origin). */
  readonly begin: number;
  /** One past the last token the row sees: its own position plus one (causal). */
  readonly end: number;
  /**
   * The logit of a scaled score `s` (natural units) of token `t`: soft-capped, then the ALiBi
   * bias added; `undefined` when neither is on (plain scaling, the hot loops skip the call).
   */
  readonly logit?: (s: number, t: number) => number;
  /** The row's sink logit (natural units), added once to the final softmax denominator. */
  readonly sink?: number;
}

/**
 * The hooks of the row at query position `pos` of query head `head`, in a sequence of `seqLen`
 * tokens whose last `qLen` are the queries.
 *
 * @example
 * ```ts
 * import { rowHooks } from "./variant.ts";
 * // 10 tokens, 1 query (P = 9), a window of 4: tokens 6..9; ALiBi slope 0.5.
 * const h = rowHooks({ slidingWindow: 4, alibiSlopes: new Float32Array([0.5]) }, 10, 1, 0, 0);
 * console.log(h.begin, h.end, h.logit?.(1, 7)); // 6 10 0
 * ```
 */
export function rowHooks(
  variant: Variant | undefined,
  seqLen: number,
  qLen: number,
  pos: number,
  head: number,
): RowHooks {
  const P = seqLen - qLen + pos;
  const W = variant?.slidingWindow;
  const cap = variant?.logitsSoftCap;
  const slope = variant?.alibiSlopes?.[head];
  let logit: ((s: number, t: number) => number) | undefined;
  if (cap !== undefined && slope !== undefined) {
    logit = (s, t) => cap * Math.tanh(s / cap) + slope * (t - P);
  } else if (cap !== undefined) {
    logit = (s) => cap * Math.tanh(s / cap);
  } else if (slope !== undefined) {
    logit = (s, t) => s + slope * (t - P);
  }
  return {
    begin: W === undefined ? 0 : Math.max(0, P + 1 - W),
    end: CAUSAL.visibleTokens(seqLen, qLen, pos),
    logit,
    sink: variant?.sinks?.[head],
  };
}

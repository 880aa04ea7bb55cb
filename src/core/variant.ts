/**
 * Attention variants: which tokens a query row sees (the mask) and how a scaled score becomes a
 * logit. Each variant is a small hook with a TypeScript twin here, used by the CPU backend and
 * the float64 reference, and its WGSL in `src/kernels/variant_wgsl.ts`, selected by the kernel
 * spec's `variant` (part of the pipeline key). The causal mask with plain scaling is the one
 * variant today.
 *
 * @module
 */

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

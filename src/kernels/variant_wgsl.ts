/**
 * The WGSL twins of the attention variants (`src/core/variant.ts`): the visible-token limit of a
 * query row, and the logit transform of a score, spliced into the decode kernel.
 *
 * @module
 */

import type { VariantName } from "../core/variant.ts";

/** A variant's WGSL hooks. */
export interface VariantWGSL {
  /**
   * WGSL expression of the tokens a query row sees, given WGSL expressions of the sequence
   * length, the query length and the row's query position.
   */
  visible(seqLen: string, qLen: string, pos: string): string;
  /**
   * WGSL statement transforming a score variable in place (log2 units, pre-scaled), or
   * `undefined` for plain scaling (no code).
   */
  logit?: (score: string) => string;
}

/**
 * The WGSL hooks of each variant.
 *
 * @example
 * ```ts
 * import { VARIANT_WGSL } from "./variant_wgsl.ts";
 * console.log(VARIANT_WGSL.causal.visible("n", "q", "p")); // n - q + p + 1u
 * ```
 */
export const VARIANT_WGSL: Readonly<Record<VariantName, VariantWGSL>> = {
  causal: {
    visible: (seqLen, qLen, pos) => `${seqLen} - ${qLen} + ${pos} + 1u`,
  },
};

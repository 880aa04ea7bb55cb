/**
 * The attention variants' parameters: the options a caller passes (on `DecodeShape`, so on
 * `DecodeInput`, `createPlan`'s shape and the runner's planning options alike), validated once
 * into the {@linkcode Variant} record that the `Problem` carries. What each parameter does is
 * written once, in the host hooks of `variant.ts`; the kernels' twins are in
 * `src/kernels/variant_wgsl.ts`.
 *
 * @module
 */

/**
 * Attention variants of a decode (all optional, all combinable). `P = seqLen - qLen + pos` is the
 * absolute position of query position `pos`.
 *
 * @example
 * ```ts
 * import type { VariantOptions } from "@lean/attention";
 * // Gemma 2's local layers: a 4096-token window, logits capped at 50.
 * const local: VariantOptions = { slidingWindow: 4096, logitsSoftCap: 50 };
 * console.log(local.slidingWindow); // 4096
 * ```
 */
export interface VariantOptions {
  /**
   * Sliding-window attention (Mistral, Gemma 2/3, gpt-oss): the row at position `P` attends the
   * tokens `t` with `P - slidingWindow < t <= P` (Hugging Face's `sliding_window`). An integer
   * >= 1. Only the tiles inside some row's window are scheduled.
   */
  slidingWindow?: number;
  /** Logit soft-capping (Gemma 2): after scaling, `s = c * tanh(s / c)`. A finite number > 0. */
  logitsSoftCap?: number;
  /**
   * ALiBi: one slope per query head, `s += slope[h] * (t - P)` (after any soft-cap). Finite.
   */
  alibiSlopes?: Float32Array;
  /**
   * Attention sinks (gpt-oss): one logit per query head that joins the softmax denominator with
   * no value, `out = sum_t e^(s_t) v_t / (e^(sink) + sum_t e^(s_t))`; the returned LSE includes
   * it. Finite.
   */
  sinks?: Float32Array;
}

/**
 * The validated variant of a problem: the caller's parameters, the per-head tables copied (a
 * caller changing its arrays later changes nothing planned). An absent field is off.
 *
 * @example
 * ```ts
 * import { validateShape } from "@lean/attention/plan";
 * const p = validateShape({
 *   seqLens: [10], numHeads: 2, numKVHeads: 1, headDim: 8, slidingWindow: 4,
 * });
 * console.log(p.variant?.slidingWindow, p.variant?.sinks); // 4 undefined
 * ```
 */
export interface Variant {
  /** The sliding window in tokens (see {@linkcode VariantOptions.slidingWindow}). */
  readonly slidingWindow?: number;
  /** The logit soft-cap (see {@linkcode VariantOptions.logitsSoftCap}). */
  readonly logitsSoftCap?: number;
  /** A copy of the ALiBi slopes, one per query head. */
  readonly alibiSlopes?: Float32Array;
  /** A copy of the sink logits, one per query head. */
  readonly sinks?: Float32Array;
}

/**
 * Which variants are on: the kernels' compile-time flags (part of the pipeline key; a flag that
 * is off adds no code).
 *
 * @example
 * ```ts
 * import { variantFlags } from "@lean/attention/plan";
 * console.log(variantFlags({ sinks: new Float32Array(2) }));
 * // { window: false, softCap: false, alibi: false, sinks: true }
 * ```
 */
export interface VariantFlags {
  /** A sliding window masks the tokens before each row's window. */
  readonly window: boolean;
  /** Scores are soft-capped. */
  readonly softCap: boolean;
  /** Scores get the ALiBi bias. */
  readonly alibi: boolean;
  /** Sinks join the final denominators. */
  readonly sinks: boolean;
}

/** The plain variant: causal softmax attention, nothing else. */
export const PLAIN_VARIANT: Variant = Object.freeze({});

/**
 * The flags of a variant (all false for `undefined`).
 *
 * @example
 * ```ts
 * import { variantFlags } from "@lean/attention/plan";
 * console.log(variantFlags({ slidingWindow: 8, logitsSoftCap: 30 }).window); // true
 * ```
 */
export function variantFlags(variant: Variant | undefined): VariantFlags {
  return {
    window: variant?.slidingWindow !== undefined,
    softCap: variant?.logitsSoftCap !== undefined,
    alibi: variant?.alibiSlopes !== undefined,
    sinks: variant?.sinks !== undefined,
  };
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return JSON.stringify(value);
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  if (Array.isArray(value)) return "Array";
  if (typeof value === "object") return "object";
  return String(value);
}

function headTable(name: string, value: unknown, numHeads: number): Float32Array {
  if (!(value instanceof Float32Array)) {
    throw new TypeError(
      `${name} must be a Float32Array (one value per query head): got ${describe(value)}`,
    );
  }
  if (value.length !== numHeads) {
    throw new RangeError(
      `${name} must hold one value per query head (${numHeads}): got ${value.length}`,
    );
  }
  for (let h = 0; h < numHeads; h++) {
    if (!Number.isFinite(value[h])) {
      throw new RangeError(`${name}[${h}] must be finite: got ${value[h]}`);
    }
  }
  return value.slice();
}

/**
 * Validates the variant options of a shape with `numHeads` query heads and returns its
 * {@linkcode Variant} ({@linkcode PLAIN_VARIANT} when none is set). Throws `TypeError` for wrong
 * types and `RangeError` for wrong values, naming the field and the value.
 *
 * @example
 * ```ts
 * import { validateVariant } from "@lean/attention/plan";
 * const v = validateVariant({ logitsSoftCap: 50, sinks: new Float32Array([0.5, -1]) }, 2);
 * console.log(v.logitsSoftCap, v.sinks); // 50 Float32Array(2) [ 0.5, -1 ]
 * try {
 *   validateVariant({ slidingWindow: 0 }, 2);
 * } catch (e) {
 *   console.log((e as Error).message); // slidingWindow must be an integer >= 1: got 0
 * }
 * ```
 */
export function validateVariant(options: VariantOptions, numHeads: number): Variant {
  const { slidingWindow, logitsSoftCap, alibiSlopes, sinks } = options;
  if (
    slidingWindow === undefined && logitsSoftCap === undefined && alibiSlopes === undefined &&
    sinks === undefined
  ) return PLAIN_VARIANT;
  const variant: {
    -readonly [K in keyof Variant]: Variant[K];
  } = {};
  if (slidingWindow !== undefined) {
    if (typeof slidingWindow !== "number") {
      throw new TypeError(`slidingWindow must be a number: got ${describe(slidingWindow)}`);
    }
    if (!Number.isSafeInteger(slidingWindow) || slidingWindow < 1) {
      throw new RangeError(`slidingWindow must be an integer >= 1: got ${slidingWindow}`);
    }
    variant.slidingWindow = slidingWindow;
  }
  if (logitsSoftCap !== undefined) {
    if (typeof logitsSoftCap !== "number") {
      throw new TypeError(`logitsSoftCap must be a number: got ${describe(logitsSoftCap)}`);
    }
    if (!Number.isFinite(logitsSoftCap) || logitsSoftCap <= 0) {
      throw new RangeError(`logitsSoftCap must be a finite number > 0: got ${logitsSoftCap}`);
    }
    variant.logitsSoftCap = logitsSoftCap;
  }
  if (alibiSlopes !== undefined) {
    variant.alibiSlopes = headTable("alibiSlopes", alibiSlopes, numHeads);
  }
  if (sinks !== undefined) variant.sinks = headTable("sinks", sinks, numHeads);
  return Object.freeze(variant);
}

/**
 * Whether two variants are the same (same parameters and per-head values).
 *
 * @example
 * ```ts
 * import { sameVariant } from "@lean/attention/plan";
 * console.log(sameVariant({ slidingWindow: 4 }, { slidingWindow: 4 }), sameVariant({}, undefined)); // true true
 * ```
 */
export function sameVariant(a: Variant | undefined, b: Variant | undefined): boolean {
  const table = (x?: Float32Array, y?: Float32Array) =>
    x === y || (x !== undefined && y !== undefined && x.length === y.length &&
      x.every((v, i) => Object.is(v, y[i])));
  return a?.slidingWindow === b?.slidingWindow && a?.logitsSoftCap === b?.logitsSoftCap &&
    table(a?.alibiSlopes, b?.alibiSlopes) && table(a?.sinks, b?.sinks);
}

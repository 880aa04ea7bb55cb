/**
 * The decode problem: the caller's input, its validation, and the normalised shape every later
 * stage (planner, scheduler, kernels, reducer) works from.
 *
 * @module
 */

import { validateVariant, type Variant, type VariantOptions } from "./variant_options.ts";
import type { KVScale } from "./kv8.ts";
import { describe, headDimOf, positiveInt, queryLengths, vFromKOf } from "./field_checks.ts";
import { checkInputData } from "./input_checks.ts";

/**
 * Storage type of K and V. `f16` and `bf16` are passed as `Uint16Array` bit patterns; the 8-bit
 * formats as codes with a scale (`kScale` / `vScale`): `int8` (symmetric) as `Int8Array`, the
 * OCP FP8 formats `fp8e4m3` and `fp8e5m2` as `Uint8Array`.
 *
 * @example
 * ```ts
 * import { encodeKV, type KVDtype } from "@lean/attention";
 * const dtype: KVDtype = "bf16";
 * console.log(encodeKV(new Float32Array([1]), dtype)); // Uint16Array [16256]
 * ```
 */
export type KVDtype = "f32" | "f16" | "bf16" | "int8" | "fp8e4m3" | "fp8e5m2";

/**
 * K or V data in its dtype's host array: `Float32Array` (f32), `Uint16Array` bit patterns
 * (f16, bf16), `Int8Array` (int8) or `Uint8Array` codes (fp8e4m3, fp8e5m2).
 *
 * @example
 * ```ts
 * import { encodeKV, type KVArray } from "@lean/attention";
 * const k: KVArray = encodeKV(new Float32Array([0.5]), "fp8e4m3");
 * console.log(k); // Uint8Array [ 48 ]
 * ```
 */
export type KVArray = Float32Array | Uint16Array | Int8Array | Uint8Array;

/**
 * How the work is partitioned over workgroups.
 *
 * @example
 * ```ts
 * import type { Strategy } from "@lean/attention";
 * const strategy: Strategy = "lean";
 * ```
 */
export type Strategy = "lean" | "split" | "single";

/**
 * The KV dtypes this library accepts.
 *
 * @example
 * ```ts
 * import { KV_DTYPES } from "@lean/attention";
 * console.log(KV_DTYPES); // [ "f32", "f16", "bf16", "int8", "fp8e4m3", "fp8e5m2" ]
 * ```
 */
export const KV_DTYPES: readonly KVDtype[] = ["f32", "f16", "bf16", "int8", "fp8e4m3", "fp8e5m2"];
/**
 * The partition strategies this library accepts.
 *
 * @example
 * ```ts
 * import { STRATEGIES } from "@lean/attention";
 * console.log(STRATEGIES); // [ "lean", "split", "single" ]
 * ```
 */
export const STRATEGIES: readonly Strategy[] = ["lean", "split", "single"];
/**
 * Largest number of query tokens per sequence (speculative decoding).
 *
 * @example
 * ```ts
 * import { MAX_Q_LEN } from "@lean/attention";
 * console.log(MAX_Q_LEN); // 16
 * ```
 */
export const MAX_Q_LEN = 16;
/**
 * Largest supported head dimension of K (and of V, see `headDimV`): 576 covers MLA's latent
 * K rows (DeepSeek-V2/V3, Kimi K2: 512 latent + 64 rotary dims).
 *
 * @example
 * ```ts
 * import { MAX_HEAD_DIM } from "@lean/attention";
 * console.log(MAX_HEAD_DIM); // 576
 * ```
 */
export const MAX_HEAD_DIM = 576;

/**
 * Shape of one decode batch: everything that decides the plan, nothing that holds data.
 *
 * @example
 * ```ts
 * import type { DecodeShape } from "@lean/attention";
 * const shape: DecodeShape = { seqLens: [4096, 17], numHeads: 32, numKVHeads: 8, headDim: 128 };
 * ```
 */
export interface DecodeShape extends VariantOptions {
  /**
   * Tokens in each sequence's context: each an integer >= its query length, or 0 for an empty
   * request (no context: its query rows get `out = 0` and `lse = -Infinity`, the merge identity).
   */
  seqLens: ArrayLike<number>;
  /** Query heads. */
  numHeads: number;
  /** KV heads; `numHeads` must be a multiple of it (GQA/MQA). */
  numKVHeads: number;
  /** Head dimension of Q and K: a multiple of 8 from 8 to 576. */
  headDim: number;
  /**
   * Head dimension of V and of the output: a multiple of 8 from 8 to 576 (default `headDim`).
   * MLA decode (DeepSeek-V2/V3) has K rows of 576 and V rows of 512.
   */
  headDimV?: number;
  /**
   * V is the first `headDimV` dims of each K row, as MLA's latent cache holds it (DeepSeek-V2/V3:
   * K rows of 576 dims, 512 latent then 64 rotary; V the 512 latent ones, which is how FlashMLA
   * reads it): no `v` is given, the kernels read V from K's rows, and K's scales are V's (default
   * false). `headDimV` must be at most `headDim`.
   */
  vFromK?: boolean;
  /** Query tokens per sequence, 1 to 16 (default 1). The new tokens are the last `qLen` of the context. */
  qLen?: number;
  /**
   * Query tokens of each sequence (1 to 16 each), for batches mixing decode and speculative
   * verification (FlashInfer's `qo_indptr`): `q`'s rows are the sequences' query tokens
   * concatenated. Instead of `qLen`; given both, every entry must equal `qLen`.
   */
  qLens?: ArrayLike<number>;
  /** Storage type of K and V (default `"f32"`). */
  kvDtype?: KVDtype;
}

/**
 * One decode call: the shape plus the data.
 *
 * @example
 * ```ts
 * import type { DecodeInput } from "@lean/attention";
 * const input: DecodeInput = {
 *   q: new Float32Array(2 * 8), k: new Float32Array(3 * 8), v: new Float32Array(3 * 8),
 *   seqLens: [1, 2], numHeads: 1, numKVHeads: 1, headDim: 8,
 * };
 * ```
 */
export interface DecodeInput extends DecodeShape {
  /** Queries, layout `[seq][qpos][head][dim]` (each sequence's `qLens[seq]` positions). */
  q: Float32Array;
  /** Keys, layout `[token][kvHead][dim]`, the sequences' tokens concatenated in order. */
  k: KVArray;
  /**
   * Values, layout `[token][kvHead][headDimV]`, same dtype as `k`; absent with `vFromK` (V is
   * then the first `headDimV` dims of `k`'s rows).
   */
  v?: KVArray;
  /**
   * 8-bit kvDtypes: the scale of `k` (key = stored value x scale), a finite number > 0 for the
   * whole tensor (default 1) or a `Float32Array` with one per (token, KV head), `[token][kvHead]`.
   */
  kScale?: KVScale;
  /** 8-bit kvDtypes: the scale of `v`, like `kScale` (absent with `vFromK`: `kScale` is V's too). */
  vScale?: KVScale;
  /** Softmax scale (default `1 / sqrt(headDim)`). */
  scale?: number;
  /** Partition strategy (default `"lean"`). */
  strategy?: Strategy;
}

/**
 * Result of a decode call.
 *
 * @example
 * ```ts
 * import { createDecoder, type DecodeOutput } from "@lean/attention";
 * const decoder = await createDecoder({ backend: "cpu" });
 * const result: DecodeOutput = await decoder.decode({
 *   q: new Float32Array(8), k: new Float32Array(24), v: new Float32Array(24),
 *   seqLens: [3], numHeads: 1, numKVHeads: 1, headDim: 8,
 * });
 * console.log(result.out.length, result.lse.length); // 8 1
 * await decoder.dispose();
 * ```
 */
export interface DecodeOutput {
  /** Attention output, `[seq][qpos][head][headDimV]` (shaped like `q` unless `headDimV` differs). */
  out: Float32Array;
  /** Natural log of the softmax denominator, `[seq][qpos][head]`. */
  lse: Float32Array;
}

/**
 * A validated, normalised shape: the single source of truth for index arithmetic.
 *
 * @example
 * ```ts
 * import { validateShape } from "@lean/attention/plan";
 * const p = validateShape({ seqLens: [5, 9], numHeads: 8, numKVHeads: 2, headDim: 64 });
 * console.log(p.totalTokens, p.groupSize, p.rowsPerGroup); // 14 4 4
 * ```
 */
export interface Problem {
  /** Number of sequences. */
  readonly numSeqs: number;
  /** Context length of each sequence. */
  readonly seqLens: Uint32Array;
  /** First token of each sequence in the concatenated K/V (length `numSeqs + 1`). */
  readonly kvStarts: Float64Array;
  /** Tokens of all sequences: the rows of K and V. */
  readonly totalTokens: number;
  /** Query heads. */
  readonly numHeads: number;
  /** KV heads. */
  readonly numKVHeads: number;
  /** Query heads per KV head. */
  readonly groupSize: number;
  /** Head dimension of Q and K. */
  readonly headDim: number;
  /** Head dimension of V and the output (`headDim` unless MLA-style). */
  readonly headDimV: number;
  /** V is the first `headDimV` dims of each K row (MLA's latent cache); absent otherwise. */
  readonly vFromK?: true;
  /** The largest query length of the batch (every sequence's when uniform). */
  readonly qLen: number;
  /** Query tokens of each sequence. */
  readonly qLens: Uint32Array;
  /** First query token of each sequence in `q`'s rows (length `numSeqs + 1`). */
  readonly qStarts: Uint32Array;
  /** Query tokens of all sequences: `q` holds `totalQueries * numHeads` rows. */
  readonly totalQueries: number;
  /**
   * Query rows of the largest sequence served by one read of a KV head: `groupSize * qLen`.
   * Sequence `s` has `groupSize * qLens[s]` of them: row `r` is head `r / qLens[s]` of the group
   * at query position `r % qLens[s]`.
   */
  readonly rowsPerGroup: number;
  /** Storage type of K and V. */
  readonly kvDtype: KVDtype;
  /**
   * The attention variant (sliding window, soft-cap, ALiBi, sinks; see `variant_options.ts`);
   * absent or empty for plain causal attention.
   */
  readonly variant?: Variant;
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== "string") {
    throw new TypeError(`${name} must be a string: got ${describe(value)}`);
  }
  if (!allowed.includes(value as T)) {
    throw new RangeError(
      `${name} must be one of ${allowed.map((a) => `"${a}"`).join(", ")}: got ${describe(value)}`,
    );
  }
  return value as T;
}

/**
 * Checks a strategy name and returns it typed.
 *
 * @example
 * ```ts
 * import { validateStrategy } from "@lean/attention/plan";
 * console.log(validateStrategy("split")); // split
 * console.log(validateStrategy(undefined)); // lean
 * ```
 */
export function validateStrategy(value: unknown): Strategy {
  return oneOf("strategy", value ?? "lean", STRATEGIES);
}

/**
 * Validates a shape and returns the normalised {@linkcode Problem}.
 * Throws `TypeError` for wrong types and `RangeError` for wrong values; the message names the
 * field and the value.
 *
 * @example
 * ```ts
 * import { validateShape } from "@lean/attention/plan";
 * const p = validateShape({ seqLens: [5, 9], numHeads: 8, numKVHeads: 2, headDim: 64 });
 * console.log(p.groupSize, p.totalTokens); // 4 14
 * ```
 */
export function validateShape(shape: DecodeShape): Problem {
  if (typeof shape !== "object" || shape === null) {
    throw new TypeError(`input must be an object: got ${describe(shape)}`);
  }
  const numHeads = positiveInt("numHeads", shape.numHeads);
  const numKVHeads = positiveInt("numKVHeads", shape.numKVHeads);
  if (numHeads % numKVHeads !== 0) {
    throw new RangeError(
      `numHeads (${numHeads}) must be a multiple of numKVHeads: got ${numKVHeads}`,
    );
  }
  const headDim = headDimOf("headDim", shape.headDim, MAX_HEAD_DIM);
  const headDimV = shape.headDimV === undefined
    ? headDim
    : headDimOf("headDimV", shape.headDimV, MAX_HEAD_DIM);
  const vFromK = vFromKOf(shape.vFromK, headDim, headDimV);
  const qLen = shape.qLen === undefined ? undefined : positiveInt("qLen", shape.qLen);
  if (qLen !== undefined && qLen > MAX_Q_LEN) {
    throw new RangeError(`qLen must be an integer from 1 to ${MAX_Q_LEN}: got ${qLen}`);
  }
  const kvDtype = oneOf("kvDtype", shape.kvDtype ?? "f32", KV_DTYPES);
  const lens = shape.seqLens;
  if (
    lens === null || typeof lens !== "object" ||
    typeof (lens as ArrayLike<number>).length !== "number"
  ) {
    throw new TypeError(`seqLens must be an array of numbers: got ${describe(lens)}`);
  }
  const numSeqs = lens.length;
  if (numSeqs === 0) throw new RangeError("seqLens must not be empty: got 0 sequences");
  const qLens = queryLengths(shape.qLens, qLen, numSeqs, MAX_Q_LEN);
  const seqLens = new Uint32Array(numSeqs);
  const kvStarts = new Float64Array(numSeqs + 1);
  const qStarts = new Uint32Array(numSeqs + 1);
  let maxQLen = 1;
  for (let i = 0; i < numSeqs; i++) {
    const len = lens[i];
    if (typeof len !== "number") {
      throw new TypeError(`seqLens[${i}] must be a number: got ${describe(len)}`);
    }
    const need = qLens[i];
    if (!Number.isInteger(len) || (len < need && len !== 0) || len > 0xffffffff) {
      const of = shape.qLens === undefined ? `qLen (${need})` : `qLens[${i}] (${need})`;
      throw new RangeError(`seqLens[${i}] must be 0 or an integer >= ${of}: got ${len}`);
    }
    seqLens[i] = len;
    kvStarts[i + 1] = kvStarts[i] + len;
    qStarts[i + 1] = qStarts[i] + need;
    if (need > maxQLen) maxQLen = need;
  }
  const groupSize = numHeads / numKVHeads;
  const variant = validateVariant(shape, numHeads);
  return {
    numSeqs,
    seqLens,
    kvStarts,
    totalTokens: kvStarts[numSeqs],
    numHeads,
    numKVHeads,
    groupSize,
    headDim,
    headDimV,
    ...(vFromK ? { vFromK: true as const } : {}),
    qLen: maxQLen,
    qLens,
    qStarts,
    totalQueries: qStarts[numSeqs],
    rowsPerGroup: groupSize * maxQLen,
    kvDtype,
    variant,
  };
}

/**
 * Validates a full decode input (shape, data arrays, scale) and returns the normalised problem.
 *
 * @example
 * ```ts
 * import { validateInput } from "@lean/attention/plan";
 * const p = validateInput({
 *   q: new Float32Array(8), k: new Float32Array(16), v: new Float32Array(16),
 *   seqLens: [2], numHeads: 1, numKVHeads: 1, headDim: 8,
 * });
 * console.log(p.totalTokens); // 2
 * ```
 */
export function validateInput(input: DecodeInput): Problem {
  const p = validateShape(input);
  checkInputData(input, p);
  validateStrategy(input.strategy);
  return p;
}

/**
 * The softmax scale of an input: its own, or `1 / sqrt(headDim)`.
 *
 * @example
 * ```ts
 * import { resolveScale } from "@lean/attention/plan";
 * console.log(resolveScale({ headDim: 64 })); // 0.125
 * ```
 */
export function resolveScale(input: { scale?: number; headDim: number }): number {
  return input.scale ?? 1 / Math.sqrt(input.headDim);
}

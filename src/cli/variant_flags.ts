/**
 * The CLI's attention-variant flags, shared by `bench` and `demo`: `--sliding-window`,
 * `--soft-cap`, `--sinks` and `--alibi`, the decode fields they make and how reports show them.
 *
 * @module
 */

/**
 * The variant flags (`bench` and `demo` take them).
 *
 * @example
 * ```ts
 * import { parseFlags, VARIANT_FLAGS } from "@lean/attention/cli";
 * console.log(parseFlags(["--sliding-window=128", "--sinks"], VARIANT_FLAGS).flags); // { "sliding-window": 128, sinks: true }
 * ```
 */
export const VARIANT_FLAGS = {
  "sliding-window": {
    kind: "integer",
    min: 1,
    max: 1 << 22,
    help: "each query row attends its last N tokens (Mistral, Gemma, gpt-oss's sliding layers)",
  },
  "soft-cap": {
    kind: "integer",
    min: 1,
    max: 100000,
    help: "logits soft-capped at N: N tanh(s / N) (Gemma 2: 50)",
  },
  sinks: { kind: "boolean", help: "an attention-sink logit per query head (gpt-oss)" },
  alibi: { kind: "boolean", help: "ALiBi biases, the standard slopes 2^(-8 (h + 1) / heads)" },
} as const;

/**
 * The variant as a report shows it: the window and soft-cap as given, whether sinks and ALiBi
 * were on.
 *
 * @example
 * ```ts
 * import type { VariantShape } from "@lean/attention/cli";
 * const v: VariantShape = { slidingWindow: 128, sinks: true };
 * ```
 */
export interface VariantShape {
  /** `--sliding-window`: each query row attends its last N tokens. */
  slidingWindow?: number;
  /** `--soft-cap`: logits soft-capped at N. */
  logitsSoftCap?: number;
  /** `--sinks`: a sink logit per query head. */
  sinks?: boolean;
  /** `--alibi`: ALiBi's standard slopes. */
  alibi?: boolean;
}

/**
 * The variant flags' values as `parseFlags` gives them.
 *
 * @example
 * ```ts
 * import type { VariantFlagValues } from "@lean/attention/cli";
 * const f: VariantFlagValues = { "sliding-window": 128, sinks: true };
 * ```
 */
export type VariantFlagValues = {
  "sliding-window"?: number;
  "soft-cap"?: number;
  sinks?: boolean;
  alibi?: boolean;
};

/**
 * The report's view of the variant flags.
 *
 * @example
 * ```ts
 * import { variantShape } from "@lean/attention/cli";
 * console.log(variantShape({ "soft-cap": 50, alibi: true })); // { logitsSoftCap: 50, alibi: true }
 * ```
 */
export function variantShape(flags: VariantFlagValues): VariantShape {
  return {
    ...(flags["sliding-window"] === undefined ? {} : { slidingWindow: flags["sliding-window"] }),
    ...(flags["soft-cap"] === undefined ? {} : { logitsSoftCap: flags["soft-cap"] }),
    ...(flags.sinks ? { sinks: true } : {}),
    ...(flags.alibi ? { alibi: true } : {}),
  };
}

/**
 * The variant's words in a report's header line ("" for plain attention).
 *
 * @example
 * ```ts
 * import { variantText } from "@lean/attention/cli";
 * console.log(variantText({ slidingWindow: 128, sinks: true })); // , window 128, sinks
 * ```
 */
export function variantText(shape: VariantShape): string {
  const parts = [
    ...(shape.slidingWindow === undefined ? [] : [`window ${shape.slidingWindow}`]),
    ...(shape.logitsSoftCap === undefined ? [] : [`soft-cap ${shape.logitsSoftCap}`]),
    ...(shape.sinks ? ["sinks"] : []),
    ...(shape.alibi ? ["ALiBi"] : []),
  ];
  return parts.length === 0 ? "" : `, ${parts.join(", ")}`;
}

/**
 * The decode fields of the variant flags: the window and soft-cap as given, sink logits of a
 * fixed pattern from -1 to 3 by query head (the kernels' work does not depend on their values;
 * `demo` checks them against the reference), ALiBi's standard slopes `2^(-8 (h + 1) / heads)`.
 *
 * @example
 * ```ts
 * import { variantFields } from "@lean/attention/cli";
 * const v = variantFields({ sinks: true, alibi: true }, 4);
 * console.log(Array.from(v.sinks!), v.alibiSlopes![3]); // [ -1, 0, 1, 2 ] 0.00390625
 * ```
 */
export function variantFields(
  flags: VariantFlagValues,
  numHeads: number,
): {
  slidingWindow?: number;
  logitsSoftCap?: number;
  sinks?: Float32Array;
  alibiSlopes?: Float32Array;
} {
  return {
    ...(flags["sliding-window"] === undefined ? {} : { slidingWindow: flags["sliding-window"] }),
    ...(flags["soft-cap"] === undefined ? {} : { logitsSoftCap: flags["soft-cap"] }),
    ...(flags.sinks
      ? { sinks: Float32Array.from({ length: numHeads }, (_, h) => (h % 5) - 1) }
      : {}),
    ...(flags.alibi
      ? {
        alibiSlopes: Float32Array.from({ length: numHeads }, (_, h) =>
          2 ** (-8 * (h + 1) / numHeads)),
      }
      : {}),
  };
}

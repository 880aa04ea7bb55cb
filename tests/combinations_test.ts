/**
 * Issue 16's features where they meet: the attention variants (sliding window, soft-cap, ALiBi,
 * sinks) in every subset, with each KV dtype (8-bit with per-tensor and per-token scales),
 * uniform and ragged query lengths with empty requests, V rows of their own head dim, GQA / MQA /
 * MHA, every strategy, batch invariance and small KV windows. The CPU backend against the float64
 * reference on the whole space; the reference against an independent definition; paged plans
 * (explicit tables and runner page tables in NHD and HND) against dense plans, bit for bit; and
 * the GPU backends on the kernel set's families (tests/kernel_set.ts).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createDecoder,
  createPlan,
  type DecodeInput,
  type Decoder,
  KV_DTYPES,
  type KVDtype,
  referenceAttention,
  STRATEGIES,
  type Strategy,
  type VariantOptions,
} from "../mod.ts";
import { executePlanOnCpu, skippedTiles, validateShape } from "../plan.ts";
import { decodeInputKV, KV_DTYPE_INFO } from "../src/core/dtypes.ts";
import { backendTest, propertyParams } from "./backends.ts";
import {
  assertMatchesReference,
  type CaseSpec,
  describeSpec,
  fcParams,
  makeInput,
  maxAbsError,
} from "./helpers.ts";

/** Multiply-adds the reference may spend on a CPU case. */
const BUDGET = 1_600_000;

/** A variant: each field on or off, values in model-like ranges. */
export function variantArb(numHeads: number, all = false): fc.Arbitrary<VariantOptions> {
  // Each field on in about half the cases, so every subset is drawn.
  const field = <T>(arb: fc.Arbitrary<T>) =>
    all ? arb : fc.option(arb, { nil: undefined, freq: 2 });
  const table = (lo: number, hi: number) =>
    fc.array(fc.double({ min: lo, max: hi, noNaN: true }), {
      minLength: numHeads,
      maxLength: numHeads,
    }).map((a) => Float32Array.from(a));
  return fc.record({
    slidingWindow: field(
      fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 300 })),
    ),
    logitsSoftCap: field(fc.double({ min: 0.5, max: 50, noNaN: true })),
    alibiSlopes: field(table(0, 0.5)),
    sinks: field(table(-4, 4)),
  }).map((v) =>
    Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) as VariantOptions
  );
}

/** A case of the whole space: shape, data, variant and decoder options. */
export interface ComboCase {
  spec: CaseSpec;
  variant: VariantOptions;
  batchInvariant: boolean;
  grid: number;
  tileTokens: number;
  /** KV windows: a binding limit of this many tiles' rows (undefined: none). */
  windowTiles?: number;
}

export const comboArb: fc.Arbitrary<ComboCase> = fc.record({
  kv: fc.integer({ min: 1, max: 3 }),
  group: fc.constantFrom(1, 2, 4, 8),
  headDim: fc.constantFrom(8, 16, 32, 64),
  headDimV: fc.option(fc.constantFrom(8, 16, 24, 40), { nil: undefined, freq: 2 }),
  kvDtype: fc.constantFrom(...KV_DTYPES),
  kvScales: fc.constantFrom<"tensor" | "token">("tensor", "token"),
  ragged: fc.boolean(),
  uniformQLen: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 16 })),
  seqs: fc.array(
    fc.record({
      qLen: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 16 })),
      // -1: an empty request; otherwise the context beyond the query tokens.
      extra: fc.oneof(
        fc.constant(-1),
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 500 }),
      ),
    }),
    { minLength: 1, maxLength: 5 },
  ),
  strategy: fc.constantFrom(...STRATEGIES),
  batchInvariant: fc.boolean(),
  grid: fc.constantFrom(1, 3, 7, 16, 40),
  tileTokens: fc.constantFrom(16, 32, 64),
  windowTiles: fc.option(fc.constantFrom(1, 3), { nil: undefined, freq: 2 }),
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
}).chain((r) =>
  variantArb(r.kv * r.group).map((variant): ComboCase => {
    const qLens = r.seqs.map((s) => (r.ragged ? s.qLen : r.uniformQLen));
    return {
      spec: {
        numHeads: r.kv * r.group,
        numKVHeads: r.kv,
        headDim: r.headDim,
        headDimV: r.headDimV,
        kvDtype: r.kvDtype,
        kvScales: r.kvScales,
        ...(r.ragged ? { qLens } : { qLen: r.uniformQLen }),
        seqLens: r.seqs.map((s, i) => (s.extra < 0 ? 0 : qLens[i] + s.extra)),
        strategy: r.strategy,
        seed: r.seed,
        qAmplitude: 2,
      },
      variant,
      batchInvariant: r.batchInvariant,
      grid: r.grid,
      tileTokens: r.tileTokens,
      windowTiles: r.windowTiles,
    };
  })
).filter(({ spec }) => work(spec) <= BUDGET);

/** Query lengths of a spec, one per sequence. */
function specQLens(spec: CaseSpec): number[] {
  return spec.qLens ?? spec.seqLens.map(() => spec.qLen ?? 1);
}

/** The reference's multiply-adds for a spec. */
function work(spec: CaseSpec): number {
  const qLens = specQLens(spec);
  let w = 0;
  spec.seqLens.forEach((len, i) => (w += len * qLens[i] * spec.numHeads));
  return w * (spec.headDim + (spec.headDimV ?? spec.headDim));
}

/** The case's decode input. */
export function comboInput(c: { spec: CaseSpec; variant: VariantOptions }): DecodeInput {
  return { ...makeInput(c.spec), ...c.variant };
}

/** A case in words, for failure messages. */
export function describeCombo(c: ComboCase): string {
  const v = c.variant;
  return `${describeSpec(c.spec)} scales=${c.spec.kvScales} ${
    JSON.stringify({
      ...v,
      alibiSlopes: v.alibiSlopes && Array.from(v.alibiSlopes),
      sinks: v.sinks && Array.from(v.sinks),
    })
  } grid=${c.grid} tile=${c.tileTokens} invariant=${c.batchInvariant} windowTiles=${c.windowTiles}`;
}

/** Bytes of one token's K and V rows (the larger), for a binding limit of `tokens` tokens. */
function bindingBytes(spec: CaseSpec, tokens: number): number {
  const bytes = KV_DTYPE_INFO[spec.kvDtype ?? "f32"].bytes;
  const row = spec.numKVHeads * Math.max(spec.headDim, spec.headDimV ?? spec.headDim) * bytes;
  // At least a 256-byte multiple, as a device's limit is.
  return Math.ceil((tokens * row) / 256) * 256;
}

/**
 * The features straight from their definitions, in float64, independent of the library's hooks
 * and of `referenceAttention`: each sequence's own query length gives its rows' positions
 * `P = seqLen - qLen + p`, the row sees `P - W < t <= P`, its logits are soft-capped then biased
 * by `slope * (t - P)`, the sink joins the denominator; an empty request is out 0, lse -Infinity.
 */
export function definition(input: DecodeInput): { out: Float64Array; lse: Float64Array } {
  const { numHeads: H, numKVHeads: KH, headDim: D } = input;
  const DV = input.headDimV ?? D;
  const lens = Array.from(input.seqLens);
  const qLens = input.qLens ? Array.from(input.qLens) : lens.map(() => input.qLen ?? 1);
  const scale = input.scale ?? 1 / Math.sqrt(D);
  const { k, v } = decodeInputKV(input, input.kvDtype ?? "f32");
  const rows = qLens.reduce((a, b) => a + b, 0);
  const out = new Float64Array(rows * H * DV);
  const lse = new Float64Array(rows * H);
  let start = 0;
  let qRow = 0;
  for (let seq = 0; seq < lens.length; seq++) {
    const L = lens[seq];
    for (let p = 0; p < qLens[seq]; p++, qRow++) {
      const P = L - qLens[seq] + p;
      for (let h = 0; h < H; h++) {
        const kvh = Math.floor(h / (H / KH));
        const row = qRow * H + h;
        if (L === 0) {
          lse[row] = -Infinity;
          continue;
        }
        const logits: number[] = [];
        const tokens: number[] = [];
        for (let t = 0; t < L; t++) {
          const W = input.slidingWindow;
          if (t > P || (W !== undefined && t <= P - W)) continue;
          let s = 0;
          for (let d = 0; d < D; d++) {
            s += input.q[row * D + d] * k[((start + t) * KH + kvh) * D + d];
          }
          s *= scale;
          const c = input.logitsSoftCap;
          if (c !== undefined) s = c * Math.tanh(s / c);
          if (input.alibiSlopes) s += input.alibiSlopes[h] * (t - P);
          logits.push(s);
          tokens.push(t);
        }
        const sink = input.sinks?.[h];
        const max = Math.max(...logits, sink ?? -Infinity);
        let sum = sink === undefined ? 0 : Math.exp(sink - max);
        for (const s of logits) sum += Math.exp(s - max);
        for (let d = 0; d < DV; d++) {
          let acc = 0;
          tokens.forEach((t, i) => {
            acc += Math.exp(logits[i] - max) * v[((start + t) * KH + kvh) * DV + d];
          });
          out[row * DV + d] = acc / sum;
        }
        lse[row] = max + Math.log(sum);
      }
    }
    start += L;
  }
  return { out, lse };
}

/** Whether two float64 results agree to `tol`, with -Infinity rows equal exactly. */
function assertClose(
  got: { out: ArrayLike<number>; lse: ArrayLike<number> },
  want: { out: ArrayLike<number>; lse: ArrayLike<number> },
  tol: number,
  label: string,
): void {
  assert.equal(got.lse.length, want.lse.length, `${label}: lse length`);
  for (let i = 0; i < want.lse.length; i++) {
    if (want.lse[i] === -Infinity) assert.equal(got.lse[i], -Infinity, `${label}: lse[${i}]`);
  }
  const finite = (a: ArrayLike<number>) => Array.from(a, (x) => (x === -Infinity ? 0 : x));
  assert.ok(maxAbsError(got.out, want.out) < tol, `${label}: out`);
  assert.ok(maxAbsError(finite(got.lse), finite(want.lse)) < tol, `${label}: lse`);
}

Deno.test("the reference follows the definitions of every feature combined (ragged, empty, headDimV, 8-bit)", () => {
  fc.assert(
    fc.property(comboArb.filter(({ spec }) => work(spec) <= 200_000), (c) => {
      const input = comboInput(c);
      assertClose(referenceAttention(input), definition(input), 1e-10, describeCombo(c));
    }),
    fcParams(150),
  );
});

/** CPU decoders by their options, shared by the cases of a property run. */
class Decoders {
  #decoders = new Map<string, Decoder>();
  async get(c: ComboCase): Promise<Decoder> {
    const options = {
      grid: c.grid,
      tileTokens: c.tileTokens,
      batchInvariant: c.batchInvariant,
      ...(c.windowTiles === undefined
        ? {}
        : { maxBindingBytes: bindingBytes(c.spec, c.windowTiles * c.tileTokens) }),
    };
    const key = JSON.stringify(options);
    let decoder = this.#decoders.get(key);
    if (!decoder) {
      decoder = await createDecoder({ backend: "cpu", ...options });
      this.#decoders.set(key, decoder);
    }
    return decoder;
  }
  async [Symbol.asyncDispose](): Promise<void> {
    for (const d of this.#decoders.values()) await d.dispose();
  }
}

Deno.test("CPU decode matches the reference on every combination of issue 16's features", async () => {
  await using decoders = new Decoders();
  await fc.assert(
    fc.asyncProperty(comboArb, async (c) => {
      const input = comboInput(c);
      const decoder = await decoders.get(c);
      assertMatchesReference(input, await decoder.decode(input), describeCombo(c));
    }),
    fcParams(200),
  );
});

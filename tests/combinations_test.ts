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
  type DecodeShape,
  type KernelTuning,
  KV_DTYPES,
  type KVArray,
  type KVDtype,
  type KVScale,
  mergeStates,
  referenceAttention,
  STRATEGIES,
  type VariantOptions,
} from "../mod.ts";
import {
  executePlanOnCpu,
  PIECE,
  PIECE_STRIDE,
  resolveScale,
  skippedTiles,
  validateShape,
} from "../plan.ts";
import { decodeInputKV, KV_DTYPE_INFO } from "../src/core/dtypes.ts";
import {
  createAttentionEncoder,
  createIndptrPageTable,
  createKVCache,
  createPagedPlan,
  executePagedPlanOnCpu,
  type PageLayout,
  planForCache,
} from "../runner.ts";
import { backendTest, propertyParams } from "./backends.ts";
import { gpuBuffer, type GpuUnderTest, openGpu, readF32, STORAGE } from "./gpu_device.ts";
import {
  guardKernelSet,
  type KernelFamily,
  KV8_FAMILIES,
  MLA_WIDE,
  RAGGED_GQA,
  softwareSkip,
  VARIANTS_GQA_Q2,
  VARIANTS_KV8,
} from "./kernel_set.ts";
import {
  assertMatchesReference,
  type CaseSpec,
  describeSpec,
  fcParams,
  makeInput,
  maxAbsError,
  sameBits,
  seededRng,
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

Deno.test("an empty request with sinks is the merge identity: out 0, lse -Infinity, every strategy [cpu]", async () => {
  // The sink is a logit with no value: with no context there is no query row to attend, so the
  // row stays the merge identity (the reference's choice; README, empty requests).
  const shape = { numHeads: 4, numKVHeads: 2, headDim: 16 };
  const variant = { sinks: Float32Array.of(3, -1, 0, 8), alibiSlopes: Float32Array.of(1, 1, 1, 1) };
  for (const strategy of STRATEGIES) {
    for (const batchInvariant of [false, true]) {
      await using decoder = await createDecoder({ backend: "cpu", grid: 5, batchInvariant });
      const input = {
        ...makeInput({ ...shape, seqLens: [0, 70, 0], qLens: [2, 1, 3], strategy, seed: 4 }),
        ...variant,
      };
      const ref = referenceAttention(input);
      const got = await decoder.decode(input);
      // Rows of sequence 0 (2 queries) and 2 (3 queries) of 4 heads: empty.
      for (const rows of [[0, 2], [3, 6]]) {
        for (let r = rows[0]; r < rows[1]; r++) {
          for (let h = 0; h < 4; h++) {
            assert.equal(ref.lse[r * 4 + h], -Infinity);
            assert.equal(got.lse[r * 4 + h], -Infinity, `${strategy} row ${r} head ${h}`);
            for (let d = 0; d < 16; d++) assert.ok(Object.is(got.out[(r * 4 + h) * 16 + d], 0));
          }
        }
      }
      assertMatchesReference(input, got, strategy);
    }
  }
});

Deno.test("a sliding window with ragged qLens skips tiles per sequence's own earliest row", () => {
  // W = 16 and 16-token tiles over 1000 tokens: a sequence decoding 1 token sees 985..999 and
  // skips tiles 0..60 (61 tiles, tokens 0..975); one verifying 16 tokens has its earliest row at
  // P = 984, seeing 969..984: it skips 60 tiles. Each sequence skips by its own query length,
  // not the batch's largest.
  const shape = {
    seqLens: [1000, 1000, 0, 40],
    qLens: [1, 16, 5, 3],
    numHeads: 2,
    numKVHeads: 1,
    headDim: 8,
    slidingWindow: 16,
  };
  const p = validateShape(shape);
  assert.deepEqual(Array.from(skippedTiles(p, 16)!), [61, 60, 0, 1]);
  for (const strategy of STRATEGIES) {
    const plan = createPlan(shape, { grid: 7, tileTokens: 16, strategy });
    const first = [Infinity, Infinity, Infinity, Infinity];
    const tokens = [0, 0, 0, 0];
    const s = plan.schedule;
    for (let o = 0; o < s.pieces.length; o += PIECE_STRIDE) {
      const seq = s.pieces[o + PIECE.seq];
      first[seq] = Math.min(first[seq], s.pieces[o + PIECE.tokenBegin]);
      tokens[seq] += s.pieces[o + PIECE.tokenEnd] - s.pieces[o + PIECE.tokenBegin];
    }
    // Each row block of a sequence reads from its first unskipped tile to its end: with 2 rows
    // per qLen-1 block and up to 32 rows per qLen-16 block (blocks of the largest qLen).
    assert.equal(first[0], 61 * 16, strategy);
    assert.equal(first[1], 60 * 16, strategy);
    assert.equal(first[2], Infinity, `${strategy}: no work for the empty request`);
    assert.equal(first[3], 16, strategy);
    assert.equal(tokens[0] % (1000 - 976), 0, strategy);
    assert.equal(tokens[1] % (1000 - 960), 0, strategy);
  }
});

Deno.test("ALiBi biases ragged rows by their own positions (by hand)", async () => {
  // q = 0: every score is 0, so a row's logits are its ALiBi biases slope * (t - P) alone, and
  // its output the softmax average of V's rows under them. Sequence 0 has 3 tokens and 1 query
  // (P = 2); sequence 1 has 3 tokens and 2 queries (P = 1 and 2); sequence 2 is empty.
  const slope = Math.log(2); // weights 2^(t - P)
  const v = Float32Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0);
  const input: DecodeInput = {
    q: new Float32Array(4 * 8),
    k: Float32Array.from({ length: 48 }, (_, i) => i % 7),
    v: Float32Array.from([...v, ...v]),
    seqLens: [3, 3, 0],
    qLens: [1, 2, 1],
    numHeads: 1,
    numKVHeads: 1,
    headDim: 8,
    alibiSlopes: Float32Array.of(slope),
  };
  // Row P = 2 over tokens 0..2: weights 1/4, 1/2, 1 (sum 7/4); P = 1 over 0..1: 1/2, 1.
  const wantOut = [[1 / 7, 2 / 7, 4 / 7], [1 / 3, 2 / 3, 0], [1 / 7, 2 / 7, 4 / 7], [0, 0, 0]];
  const wantLse = [Math.log(7 / 4), Math.log(3 / 2), Math.log(7 / 4), -Infinity];
  await using decoder = await createDecoder({ backend: "cpu", grid: 3 });
  for (const result of [referenceAttention(input), await decoder.decode(input)]) {
    for (let r = 0; r < 4; r++) {
      for (let d = 0; d < 3; d++) {
        assert.ok(Math.abs(result.out[r * 8 + d] - wantOut[r][d]) < 1e-6, `row ${r} dim ${d}`);
      }
      if (r === 3) assert.equal(result.lse[r], -Infinity);
      else assert.ok(Math.abs(result.lse[r] - wantLse[r]) < 1e-6, `lse row ${r}`);
    }
  }
});

/** A runner's page pool holding a dense input's tokens (codes and, for 8-bit, the scale table). */
export interface ScatteredPages {
  k: KVArray;
  v: KVArray;
  /** 8-bit: `[row][kvHead][2]` (K's scale, V's scale), rows of all pages. */
  scales?: Float32Array;
  pageSize: number;
  numPages: number;
  layout: PageLayout;
  /** Each sequence's pages, in order. */
  pageTables: number[][];
}

/**
 * Scatters a dense input's K/V rows into pages of `pageSize` tokens in a shuffled page order, in
 * NHD or HND layout, with two spare pages; unused rows are poison (NaN, or the codes of NaN or
 * the largest value), so a read outside a sequence's pages shows up.
 */
export function scatterPages(
  input: DecodeInput,
  pageSize: number,
  layout: PageLayout,
  seed: number,
): ScatteredPages {
  const H = input.numKVHeads;
  const D = input.headDim;
  const DV = input.headDimV ?? D;
  const dtype: KVDtype = input.kvDtype ?? "f32";
  const info = KV_DTYPE_INFO[dtype];
  const lens = Array.from(input.seqLens);
  const numPages = lens.reduce((a, n) => a + Math.ceil(n / pageSize), 0) + 2;
  const rng = seededRng(seed);
  const order = Array.from({ length: numPages }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const poison = dtype === "f32" ? NaN : info.scaled ? 0x7f : 0x7e00;
  const k = new info.HostArray(numPages * pageSize * H * D).fill(poison);
  const v = new info.HostArray(numPages * pageSize * H * DV).fill(poison);
  const scales = info.scaled ? new Float32Array(numPages * pageSize * H * 2).fill(NaN) : undefined;
  const scaleAt = (s: KVScale | undefined, i: number) =>
    typeof s === "number" ? s : s === undefined ? 1 : s[i];
  const pageTables: number[][] = [];
  let next = 0;
  let start = 0;
  for (const len of lens) {
    const table: number[] = [];
    for (let t = 0; t < len; t++) {
      if (t % pageSize === 0) table.push(order[next++]);
      const page = table[table.length - 1];
      const inPage = t % pageSize;
      for (let h = 0; h < H; h++) {
        const at = (dim: number) =>
          layout === "HND"
            ? ((page * H + h) * pageSize + inPage) * dim
            : ((page * pageSize + inPage) * H + h) * dim;
        const src = (start + t) * H + h;
        k.set(input.k.subarray(src * D, src * D + D) as never, at(D));
        v.set(input.v.subarray(src * DV, src * DV + DV) as never, at(DV));
        if (scales) {
          const row = (page * pageSize + inPage) * H + h;
          scales[2 * row] = scaleAt(input.kScale, src);
          scales[2 * row + 1] = scaleAt(input.vScale, src);
        }
      }
    }
    pageTables.push(table);
    start += len;
  }
  return { k, v, scales, pageSize, numPages, layout, pageTables };
}

/** The decode shape of an input (no data). */
function shapeOf(input: DecodeInput): DecodeShape {
  const { q: _q, k: _k, v: _v, kScale: _ks, vScale: _vs, ...shape } = input;
  return shape;
}

const pagedArb = fc.tuple(
  comboArb.filter(({ spec }) => work(spec) <= 400_000),
  fc.integer({ min: 0, max: 8 }),
  fc.constantFrom<PageLayout>("NHD", "HND"),
);

Deno.test("paged plans (explicit tables, NHD and HND) equal dense plans bit for bit on every combination", () => {
  fc.assert(
    fc.property(pagedArb, ([c, pageShift, layout]) => {
      const input = comboInput(c);
      const label = `${describeCombo(c)} page ${1 << pageShift} ${layout}`;
      const pages = scatterPages(input, 1 << pageShift, layout, c.spec.seed);
      const options = {
        grid: c.grid,
        tileTokens: c.tileTokens,
        strategy: c.spec.strategy,
        batchInvariant: c.batchInvariant,
      };
      const shape = shapeOf(input);
      const paged = createPagedPlan(shape, pages, options);
      const got = executePagedPlanOnCpu(paged, { q: input.q, ...pages });
      // Paged plans are the dense plans (no KV windows: a page table has no binding limit).
      const dense = executePlanOnCpu(createPlan(shape, options), input, resolveScale(input));
      assert.ok(sameBits(got.out, dense.out), `${label}: out`);
      assert.ok(sameBits(got.lse, dense.lse), `${label}: lse`);
      assertMatchesReference(input, got, label);
    }),
    fcParams(150),
  );
});

Deno.test("runner page tables (createIndptrPageTable) with planForCache equal dense plans bit for bit on every combination", () => {
  fc.assert(
    fc.property(
      pagedArb.filter(([c]) => c.spec.headDimV === undefined),
      ([c, pageShift, layout]) => {
        const input = comboInput(c);
        const label = `${describeCombo(c)} page ${1 << pageShift} ${layout}`;
        const pages = scatterPages(input, 1 << pageShift, layout, c.spec.seed);
        const indptr = [0];
        for (const t of pages.pageTables) indptr.push(indptr[indptr.length - 1] + t.length);
        const table = createIndptrPageTable({
          indptr,
          indices: pages.pageTables.flat(),
          lastPageLen: Array.from(
            input.seqLens,
            (n) => n === 0 ? 0 : n - (Math.ceil(n / pages.pageSize) - 1) * pages.pageSize,
          ),
          pageSize: pages.pageSize,
          numPages: pages.numPages,
          numKVHeads: input.numKVHeads,
          headDim: input.headDim,
          kvDtype: input.kvDtype,
          layout,
        });
        const step = {
          seqs: table.seqs,
          numHeads: input.numHeads,
          ...(input.qLens === undefined ? { qLen: input.qLen } : { qLens: input.qLens }),
          strategy: c.spec.strategy,
          ...c.variant,
        };
        const options = {
          grid: c.grid,
          tileTokens: c.tileTokens,
          batchInvariant: c.batchInvariant,
        };
        const plan = planForCache(table, step, options);
        const got = executePagedPlanOnCpu(plan, { q: input.q, ...pages });
        const dense = executePlanOnCpu(
          createPlan(shapeOf(input), { ...options, strategy: c.spec.strategy }),
          input,
          resolveScale(input),
        );
        assert.ok(sameBits(got.out, dense.out), `${label}: out`);
        assert.ok(sameBits(got.lse, dense.lse), `${label}: lse`);
      },
    ),
    fcParams(100),
  );
});

// GPU backends (and the CPU) on the kernel set's families (tests/kernel_set.ts): each family's
// kernel class is fixed, and what varies is what the class leaves to runtime values (lengths,
// ragged query lengths up to the family's, empty requests, variant values, scales, strategies),
// once on a plain decoder and once batch-invariant over KV windows of 3 tiles.

/** The tile size of the GPU cases: the families' own (their kernel class). */
const GPU_TILE = 64;

/**
 * One case of a family: ragged query lengths up to the family's `qLen` (the first sequence at
 * it, so the kernel is the family's) with empty requests, every strategy, optionally every
 * variant field on.
 */
function familyCaseArb(family: KernelFamily, variants: boolean): fc.Arbitrary<ComboCase> {
  return fc.record({
    seqs: fc.array(
      fc.record({
        qLen: fc.integer({ min: 1, max: family.qLen }),
        extra: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 300 })),
      }),
      { minLength: 1, maxLength: 4 },
    ),
    firstExtra: fc.integer({ min: 0, max: 300 }),
    kvScales: fc.constantFrom<"tensor" | "token">("tensor", "token"),
    strategy: fc.constantFrom(...STRATEGIES),
    variant: variants ? variantArb(family.numHeads, true) : fc.constant({}),
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
  }).map((r): ComboCase => {
    const qLens = r.seqs.map((s, i) => (i === 0 ? family.qLen : s.qLen));
    return {
      spec: {
        numHeads: family.numHeads,
        numKVHeads: family.numKVHeads,
        headDim: family.headDim,
        headDimV: family.headDimV,
        kvDtype: family.kvDtype,
        kvScales: r.kvScales,
        qLens,
        seqLens: r.seqs.map((s, i) =>
          i === 0 ? qLens[0] + r.firstExtra : s.extra < 0 ? 0 : qLens[i] + s.extra
        ),
        strategy: r.strategy,
        seed: r.seed,
        qAmplitude: 2,
      },
      variant: r.variant,
      batchInvariant: false,
      grid: 7,
      tileTokens: GPU_TILE,
    };
  });
}

/**
 * Registers a family's property test twice: on a plain decoder, and on a batch-invariant one
 * whose KV bindings hold 3 tiles (windows cut every case of more than 192 tokens).
 */
function familyTest(
  name: string,
  family: KernelFamily,
  variants: boolean,
  gpuRuns: number,
  kernel?: KernelTuning,
): void {
  const windowBytes = bindingBytes({ ...family, seqLens: [], seed: 0 }, 3 * GPU_TILE);
  for (const invariant of [false, true]) {
    backendTest(
      `${name}${invariant ? " (batch-invariant, KV windows)" : ""}`,
      async (decoder, backend, context) => {
        await fc.assert(
          fc.asyncProperty(familyCaseArb(family, variants), async (c) => {
            const input = comboInput(c);
            const label = `${describeCombo(c)}${invariant ? " invariant+windows" : ""}`;
            assertMatchesReference(input, await decoder.decode(input), label);
          }),
          propertyParams(backend, 3 * gpuRuns, gpuRuns, context),
        );
      },
      {
        decoder: {
          grid: 7,
          tileTokens: GPU_TILE,
          ...(invariant ? { batchInvariant: true, maxBindingBytes: windowBytes } : {}),
          ...(kernel ? { kernel } : {}),
        },
      },
    );
  }
}

familyTest(
  "every variant with ragged qLens 1 and 2 and empty requests (variants' family)",
  VARIANTS_GQA_Q2,
  true,
  6,
);
familyTest(
  "every variant over FP8 K/V with ragged qLens, empty requests and both scale modes",
  VARIANTS_KV8,
  true,
  6,
);
familyTest("ragged qLens with empty requests (ragged family)", RAGGED_GQA, false, 4);
for (const family of KV8_FAMILIES) {
  familyTest(
    `8-bit ${family.kvDtype} d${family.headDim} with empty requests, per-tensor and per-token scales`,
    family,
    false,
    4,
  );
}
familyTest("MLA-wide rows with empty requests", MLA_WIDE, false, 3, { subgroups: false });

// Storage buffers: the plain kernels bind 7; the page list, the variants' per-head table (ALiBi
// slopes, sinks) and the 8-bit scale table one more each. A device at WebGPU's default limit of
// 8 (a runner's device requested without limits) must get a RangeError saying so, not a
// pipeline that fails validation and leaves the outputs unwritten.
for (const name of ["webgpu", "dawn"] as const) {
  const gpu = await openGpu(name);
  const ok = typeof gpu !== "string";
  const skip = ok ? softwareSkip(gpu, {}) : undefined;
  Deno.test({
    name: `a default-limits device: variants and 8-bit paged need more storage buffers [${name}]`,
    ignore: !ok || skip !== undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const adapter = await ((gpu as GpuUnderTest).keepAlive[0] as GPU).requestAdapter();
      (gpu as GpuUnderTest).keepAlive.push(adapter);
      const device = await adapter!.requestDevice(); // WebGPU's default limits
      try {
        assert.equal(device.limits.maxStorageBuffersPerShaderStage, 8);
        // The runner's encoder: paged kernels with sinks (9), with int8 too (10).
        const attention = await createAttentionEncoder(device, { grid: 7 });
        for (const [kvDtype, need] of [["f32", 9], ["int8", 10]] as const) {
          const input = {
            ...makeInput({ ...VARIANTS_GQA_Q2, kvDtype, seqLens: [40, 0], seed: 1 }),
            sinks: Float32Array.of(1, 2, 3, 4),
          };
          const pages = scatterPages(input, 16, "HND", 1);
          const plan = attention.planPages(shapeOf(input), pages);
          const buffer = (bytes: number) =>
            device.createBuffer({ size: Math.max(256, bytes), usage: STORAGE });
          const used = [buffer(pages.k.byteLength), buffer(pages.v.byteLength), buffer(4096)];
          const [k, v, scratch] = used;
          assert.throws(
            () =>
              attention.encode(device.createCommandEncoder(), {
                plan,
                k,
                v,
                ...(kvDtype === "int8" ? { kvScales: scratch } : {}),
                q: scratch,
                out: buffer(4096),
              }),
            (e: Error) =>
              e instanceof RangeError &&
              e.message.includes(
                `paged attention with ALiBi slopes or sinks needs ${need} storage buffers per shader stage: the device allows 8`,
              ),
          );
        }
        attention.dispose();
        // The decoder on that device: dense kernels with the per-head table and per-token
        // 8-bit scales (9); the decoder stays usable (the variants' family, 8 buffers, after).
        const decoder = await createDecoder({ backend: name, device, grid: 7, tileTokens: 64 });
        try {
          const kv8 = {
            ...makeInput({ ...KV8_FAMILIES[0], kvScales: "token", seqLens: [50], seed: 2 }),
            sinks: Float32Array.of(0, 1, 2, 3),
          };
          // Unguarded: its class is outside the set, but the call is refused before any compile.
          await assert.rejects(
            () => decoder.decode(kv8),
            (e: Error) =>
              e instanceof RangeError &&
              /ALiBi slopes \/ sinks table, the 8-bit scale table needs 9 storage buffers per shader stage: the device allows 8/
                .test(e.message),
          );
          assert.equal(decoder.stats().buffersLive, 0, "the failed call's buffers are released");
          const input = {
            ...makeInput({ ...VARIANTS_GQA_Q2, qLens: [2, 1], seqLens: [90, 0], seed: 3 }),
            slidingWindow: 30,
            logitsSoftCap: 10,
            alibiSlopes: Float32Array.of(0.1, 0.2, 0.3, 0.4),
            sinks: Float32Array.of(0, 1, 2, 3),
          };
          assertMatchesReference(
            input,
            await guardKernelSet(decoder, { tileTokens: 64 }).decode(input),
            "after the refused call",
          );
        } finally {
          await decoder.dispose();
        }
      } finally {
        device.destroy();
      }
    },
  });
}

Deno.test("runner steps planned from the previous plan equal fresh plans with windows, ragged qLens and empty requests", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          len: fc.oneof(fc.constant(0), fc.integer({ min: 16, max: 600 })),
          qLen: fc.integer({ min: 1, max: 16 }),
        }),
        { minLength: 1, maxLength: 5 },
      ),
      fc.option(fc.integer({ min: 1, max: 200 }), { nil: undefined, freq: 3 }),
      fc.constantFrom(1, 3, 8, 40),
      fc.constantFrom(...STRATEGIES),
      fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 6 }),
      (seqSpecs, slidingWindow, grid, strategy, steps) => {
        const cache = createKVCache({
          numLayers: 1,
          numKVHeads: 2,
          headDim: 8,
          pageSize: 16,
          numPages: 4096,
        });
        const seqs = seqSpecs.map(({ len }) => {
          const s = cache.addSequence();
          if (len > 0) cache.extend([s], len);
          return s;
        });
        const live = seqs.filter((_, i) => seqSpecs[i].len > 0);
        const step = {
          seqs,
          numHeads: 4,
          qLens: seqSpecs.map((s) => s.qLen),
          slidingWindow,
          sinks: Float32Array.of(1, 2, 3, 4),
        };
        const options = { grid, strategy, tileTokens: 16 };
        let previous = planForCache(cache, step, options);
        for (const grow of steps) {
          // The empty requests stay empty; the others gain tokens.
          if (live.length > 0) { for (let g = 0; g < grow; g++) cache.extend(live, 1); }
          const derived = planForCache(cache, step, { ...options, previous });
          const fresh = planForCache(cache, step, options);
          const { cache: _a, ...a } = derived as unknown as { cache?: unknown };
          const { cache: _b, ...b } = fresh as unknown as { cache?: unknown };
          assert.deepStrictEqual(a, b);
          previous = derived;
        }
      },
    ),
    fcParams(150),
  );
});

// The runner's encoder over a runner page table with empty requests (no pages, lastPageLen 0):
// the runner-format tests' paged class (f16 KV, 8/2 heads, d64, HND pages; tests/kernel_set.ts).
for (const name of ["webgpu", "dawn"] as const) {
  const gpu = await openGpu(name);
  const ok = typeof gpu !== "string";
  const skip = ok ? softwareSkip(gpu, {}) : undefined;
  Deno.test({
    name: `a runner page table with empty requests through the encoder, every strategy [${name}]`,
    ignore: !ok || skip !== undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const { device } = gpu as GpuUnderTest;
      const attention = await createAttentionEncoder(device, { grid: 8 });
      const seqLens = [0, 150, 0, 9];
      const input = makeInput({
        seqLens,
        numHeads: 8,
        numKVHeads: 2,
        headDim: 64,
        kvDtype: "f16",
        seed: 12,
      });
      const pages = scatterPages(input, 16, "HND", 12);
      const indptr = [0];
      for (const t of pages.pageTables) indptr.push(indptr[indptr.length - 1] + t.length);
      const table = createIndptrPageTable({
        indptr,
        indices: pages.pageTables.flat(),
        lastPageLen: seqLens.map((n) => (n === 0 ? 0 : ((n - 1) % 16) + 1)),
        pageSize: 16,
        numPages: pages.numPages,
        numKVHeads: 2,
        headDim: 64,
        kvDtype: "f16",
        layout: "HND",
      });
      const k = bytesBuffer(device, pages.k);
      const v = bytesBuffer(device, pages.v);
      const q = gpuBuffer(device, input.q);
      const rows = seqLens.length * 8;
      try {
        for (const strategy of STRATEGIES) {
          const out = gpuBuffer(device, new Float32Array(rows * 64).fill(NaN));
          const lse = gpuBuffer(device, new Float32Array(rows).fill(NaN));
          const plan = attention.plan(table, { seqs: table.seqs, numHeads: 8, strategy });
          const enc = device.createCommandEncoder();
          attention.encode(enc, { plan, k, v, q, out, lse });
          device.queue.submit([enc.finish()]);
          const got = {
            out: await readF32(device, out, rows * 64),
            lse: await readF32(device, lse, rows),
          };
          assertMatchesReference(input, got, strategy);
          out.destroy();
          lse.destroy();
        }
      } finally {
        for (const b of [k, v, q]) b.destroy();
        attention.dispose();
      }
    },
  });
}

/** A storage buffer holding any array's bytes (padded to 4). */
function bytesBuffer(device: GPUDevice, data: ArrayBufferView): GPUBuffer {
  const size = Math.max(16, Math.ceil(data.byteLength / 4) * 4);
  const b = device.createBuffer({ size, usage: STORAGE });
  const padded = new Uint8Array(size);
  padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  device.queue.writeBuffer(b, 0, padded);
  return b;
}

backendTest(
  "warmup with an 8-bit input compiles the kernels of its scale mode (per-tensor or per-token)",
  async (decoder, backend) => {
    for (const kvScales of ["tensor", "token"] as const) {
      const input = makeInput({
        ...KV8_FAMILIES[1],
        kvScales,
        qLens: [1, 1],
        seqLens: [120, 0],
        strategy: "lean",
        seed: 5,
      });
      await decoder.warmup(input, { strategies: ["lean"] });
      const before = decoder.stats().pipelinesCreated;
      assertMatchesReference(input, await decoder.decode(input), kvScales);
      // The first decode after warmup compiles nothing (the CPU compiles nothing at all).
      assert.equal(decoder.stats().pipelinesCreated, before, `${backend} ${kvScales}`);
    }
  },
  { decoder: { grid: 7, tileTokens: GPU_TILE } },
);

Deno.test("merging states of a split context: exact with soft-cap and sinks in one part [cpu]", async () => {
  // A prefix of 200 tokens and a suffix of 100, decoded apart and merged, against the whole.
  await using decoder = await createDecoder({ backend: "cpu", grid: 5 });
  const whole = makeInput({ seqLens: [300], numHeads: 4, numKVHeads: 2, headDim: 16, seed: 8 });
  const row = 2 * 16;
  const part = (from: number, to: number): DecodeInput => ({
    ...whole,
    seqLens: [to - from],
    k: (whole.k as Float32Array).subarray(from * row, to * row),
    v: (whole.v as Float32Array).subarray(from * row, to * row),
  });
  const sinks = Float32Array.of(1, -2, 0.5, 3);
  const logitsSoftCap = 3;
  const full = await decoder.decode({ ...whole, logitsSoftCap, sinks });
  const merged = mergeStates([
    await decoder.decode({ ...part(0, 200), logitsSoftCap, sinks }),
    await decoder.decode({ ...part(200, 300), logitsSoftCap }),
  ]);
  assert.ok(maxAbsError(merged.out, full.out) < 1e-5);
  assert.ok(maxAbsError(merged.lse, full.lse) < 1e-5);
  // Sinks in both parts count twice; ALiBi biases a part by its own last position: neither
  // merges to the whole (README, merging attention states).
  const twice = mergeStates([
    await decoder.decode({ ...part(0, 200), sinks }),
    await decoder.decode({ ...part(200, 300), sinks }),
  ]);
  assert.ok(maxAbsError(twice.lse, (await decoder.decode({ ...whole, sinks })).lse) > 1e-3);
  const alibiSlopes = Float32Array.of(0.05, 0.05, 0.05, 0.05);
  const alibi = mergeStates([
    await decoder.decode({ ...part(0, 200), alibiSlopes }),
    await decoder.decode({ ...part(200, 300), alibiSlopes }),
  ]);
  assert.ok(maxAbsError(alibi.lse, (await decoder.decode({ ...whole, alibiSlopes })).lse) > 1e-3);
});

/** Sequence `i` of a dense input alone: its query rows, K/V rows and per-token scales. */
function sequenceAlone(input: DecodeInput, i: number): { alone: DecodeInput; rows: number } {
  const lens = Array.from(input.seqLens);
  const qLens = input.qLens ? Array.from(input.qLens) : lens.map(() => input.qLen ?? 1);
  const H = input.numHeads;
  const KH = input.numKVHeads;
  const D = input.headDim;
  const DV = input.headDimV ?? D;
  const t0 = lens.slice(0, i).reduce((a, b) => a + b, 0);
  const t1 = t0 + lens[i];
  const r0 = qLens.slice(0, i).reduce((a, b) => a + b, 0);
  const slice = <T extends KVScale | undefined>(s: T, per: number): T =>
    (s instanceof Float32Array ? s.slice(t0 * per, t1 * per) : s) as T;
  const alone: DecodeInput = {
    ...input,
    q: input.q.slice(r0 * H * D, (r0 + qLens[i]) * H * D),
    k: input.k.slice(t0 * KH * D, t1 * KH * D),
    v: input.v.slice(t0 * KH * DV, t1 * KH * DV),
    kScale: slice(input.kScale, KH),
    vScale: slice(input.vScale, KH),
    seqLens: [lens[i]],
    ...(input.qLens ? { qLens: [qLens[i]] } : { qLen: input.qLen }),
  };
  return { alone, rows: r0 };
}

Deno.test("batch-invariant decoding: a sequence's rows are bitwise the same alone and in any batch, every combination [cpu]", async () => {
  await using decoders = new Decoders();
  await fc.assert(
    fc.asyncProperty(
      comboArb.filter(({ spec }) => spec.seqLens.some((n) => n > 0)),
      fc.nat(),
      async (c0, pick) => {
        // Batch invariance with KV windows holds for windows of at least a chunk; none here.
        const c: ComboCase = { ...c0, batchInvariant: true, windowTiles: undefined };
        const input = comboInput(c);
        const decoder = await decoders.get(c);
        const batch = await decoder.decode(input);
        const live = c.spec.seqLens.flatMap((n, i) => (n > 0 ? [i] : []));
        const i = live[pick % live.length];
        const { alone, rows } = sequenceAlone(input, i);
        const one = await decoder.decode(alone);
        const H = input.numHeads;
        const DV = input.headDimV ?? input.headDim;
        const n = one.lse.length;
        const label = `${describeCombo(c)} sequence ${i}`;
        assert.ok(sameBits(batch.lse.subarray(rows * H, rows * H + n), one.lse), `${label}: lse`);
        assert.ok(
          sameBits(batch.out.subarray(rows * H * DV, (rows * H + n) * DV), one.out),
          `${label}: out`,
        );
      },
    ),
    fcParams(150),
  );
});

for (const family of [VARIANTS_GQA_Q2, VARIANTS_KV8]) {
  backendTest(
    `batch-invariant decoding with every variant, ${family.kvDtype} K/V: the first sequence alone and in its batch, bit for bit`,
    async (decoder, backend, context) => {
      await fc.assert(
        fc.asyncProperty(familyCaseArb(family, true), async (c) => {
          // The first sequence has the family's qLen: alone, its kernel is the batch's (the
          // GPU's guarantee holds among batches of the same largest qLens entry).
          const input = comboInput(c);
          const batch = await decoder.decode(input);
          const { alone } = sequenceAlone(input, 0);
          const one = await decoder.decode(alone);
          const DV = input.headDimV ?? input.headDim;
          const n = one.lse.length;
          const label = describeCombo(c);
          assert.ok(sameBits(batch.lse.subarray(0, n), one.lse), `${label}: lse`);
          assert.ok(sameBits(batch.out.subarray(0, n * DV), one.out), `${label}: out`);
        }),
        propertyParams(backend, 30, 4, context),
      );
    },
    { decoder: { grid: 7, tileTokens: GPU_TILE, batchInvariant: true } },
  );
}

/**
 * Shared cases of tests/combinations_*_test.ts: issue 16's features drawn together (the variants
 * in every subset, each KV dtype and 8-bit scale mode, uniform or ragged query lengths with empty
 * requests, V rows of their own head dim, GQA / MQA / MHA, strategies, batch invariance, KV
 * windows), an independent definition of their semantics, and the runner's page pools.
 *
 * @module
 */

import fc from "fast-check";
import {
  type DecodeInput,
  type DecodeShape,
  KV_DTYPES,
  type KVArray,
  type KVDtype,
  type KVScale,
  STRATEGIES,
  type VariantOptions,
} from "../mod.ts";
import { decodeInputKV, KV_DTYPE_INFO } from "../src/core/dtypes.ts";
import type { IndptrPageTableOptions, PageLayout } from "../runner.ts";
import type { KernelFamily } from "./kernel_set.ts";
import { type CaseSpec, describeSpec, makeInput, seededRng } from "./helpers.ts";

/** Multiply-adds the reference may spend on a CPU case. */
export const BUDGET = 1_600_000;

/** A variant: each field on or off, values in model-like ranges. */
export function variantArb(
  numHeads: number,
  all = false,
  maxWindow = 300,
): fc.Arbitrary<VariantOptions> {
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
      fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: maxWindow })),
    ),
    logitsSoftCap: field(fc.double({ min: 0.5, max: 50, noNaN: true })),
    alibiSlopes: field(table(0, 0.5)),
    sinks: field(table(-4, 4)),
  }).map((v) =>
    Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined)) as VariantOptions
  );
}

/** A case of the whole space: shape, data, variant and decoder options. */
/** One request of a batch: its tokens (0: an empty request) and query tokens. */
export interface Request {
  len: number;
  qLen: number;
}

/**
 * A batch of 1 to `maxSeqs` requests: empty ones, short ones and ones of a few hundred tokens, each
 * with up to `maxQLen` query tokens (the MLA-shaped property tests).
 */
export function requestsArb(maxQLen: number, maxSeqs: number): fc.Arbitrary<Request[]> {
  return fc.array(
    fc.record({
      len: fc.oneof(
        fc.constant(0),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 300 }),
      ),
      qLen: fc.integer({ min: 1, max: maxQLen }),
    }),
    { minLength: 1, maxLength: maxSeqs },
  );
}

/** Each request's query length, at most its tokens (an empty request keeps its own). */
export function requestQLens(seqs: readonly Request[]): number[] {
  return seqs.map((s) => s.len === 0 ? s.qLen : Math.min(s.qLen, s.len));
}

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
export function specQLens(spec: CaseSpec): number[] {
  return spec.qLens ?? spec.seqLens.map(() => spec.qLen ?? 1);
}

/** The reference's multiply-adds for a spec. */
export function work(spec: CaseSpec): number {
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
export function bindingBytes(spec: CaseSpec, tokens: number): number {
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
  // With vFromK, V's element (t, h, d) is K's: the same rows, read with K's stride.
  const { k, v: given } = decodeInputKV(
    {
      ...input,
      v: input.vFromK ? input.k : input.v!,
      vScale: input.vFromK ? input.kScale : input.vScale,
    },
    input.kvDtype ?? "f32",
  );
  const v = input.vFromK ? k : given;
  const VS = input.vFromK ? D : DV;
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
            acc += Math.exp(logits[i] - max) * v[((start + t) * KH + kvh) * VS + d];
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
        v.set(input.v!.subarray(src * DV, src * DV + DV) as never, at(DV));
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
export function shapeOf(input: DecodeInput): DecodeShape {
  const { q: _q, k: _k, v: _v, kScale: _ks, vScale: _vs, ...shape } = input;
  return shape;
}

/** Sequence `i` of a dense input alone: its query rows, K/V rows and per-token scales. */
export function sequenceAlone(input: DecodeInput, i: number): { alone: DecodeInput; rows: number } {
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
    v: input.v!.slice(t0 * KH * DV, t1 * KH * DV),
    kScale: slice(input.kScale, KH),
    vScale: slice(input.vScale, KH),
    seqLens: [lens[i]],
    ...(input.qLens ? { qLens: [qLens[i]] } : { qLen: input.qLen }),
  };
  return { alone, rows: r0 };
}

/** The tile size of the GPU cases: the families' own (their kernel class). */
export const GPU_TILE = 64;

/**
 * One case of a family: ragged query lengths up to the family's `qLen` (the first sequence at
 * it, so the kernel is the family's) with empty requests, every strategy, optionally every
 * variant field on.
 */
export function familyCaseArb(family: KernelFamily, variants: boolean): fc.Arbitrary<ComboCase> {
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

/** The FlashInfer-style table of scattered pages (`headDimV` given only when V's rows differ). */
export function indptrOptions(input: DecodeInput, pages: ScatteredPages): IndptrPageTableOptions {
  const indptr = [0];
  for (const t of pages.pageTables) indptr.push(indptr[indptr.length - 1] + t.length);
  return {
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
    ...(input.headDimV === undefined ? {} : { headDimV: input.headDimV }),
    kvDtype: input.kvDtype,
    layout: pages.layout,
  };
}

/**
 * Prototype for issue 13 (written in session 22, run on the H200 in session 23; it lost, and
 * was not built into the library: bench/notes.md, "Issues 13 and 16, session 23"): a GQA decode
 * step where a thread takes whole tokens for the scores and output dims for the weighted sum, to
 * test whether far fewer registers per thread (so many more resident warps) let the 4-row loop's
 * arithmetic hide behind its reads. Session 22's diagnostic found the library's 4-row loop
 * computing for 91 us (71 us bare) against 123 us of reads at GQA 32/8 128k, on two resident
 * workgroups per multiprocessor.
 *
 * The kernel (one workgroup of 128 threads per KV head and split of the context; f16 or int8 K/V
 * packed in `u32`, int8 with per-tensor scales, d128, `R` query rows per KV head): the block's
 * query rows sit in workgroup memory; per tile of 256 tokens each thread scores two tokens
 * against all rows (its K rows read whole, each query vector read once for both tokens), the
 * tile's row maxima and sums come from subgroup and workgroup reductions, the probabilities go to
 * workgroup memory, then each thread adds one `u32` word's output dims (2 for f16, 4 for int8) of
 * every row over every 2nd or 4th token of the tile (V read as coalesced `u32` columns). It
 * writes each split's unnormalised output, max and sum (log2 units), merged here on the CPU.
 * `--variants` leaves parts out or scores with four threads per token (`ProtoVariant`).
 *
 * `--check` (any adapter, e.g. lavapipe): small shapes against a float64 reference. Otherwise
 * (a GPU): GQA 32/8 d128, f16 and int8, at 32k and 128k tokens, the prototype at several split
 * counts beside the library's lean decode with and without its merge dispatch, each alone and
 * back to back after 400 ms of warm passes (`timeWarm`).
 *
 * Usage: deno run -A --unstable-webgpu bench/proto_token_lanes.ts [--check] [--out=FILE]
 *        [--contexts=32768,131072] [--variants=full,k-lanes4,no-pv,...]
 *        [--dtypes=f16,int8]
 */

import { type DecodeInput, referenceAttention, toF16Bits } from "../mod.ts";
import { fromF16Bits } from "../src/core/half.ts";
import { acceptsSubgroupsDirective, requestDevice } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";
import { installDispatchFilter } from "./diag_lib.ts";
import { mulberry32 } from "./random.ts";
import { protoKernel, relativeL2, runOnce, timeLeanTwins } from "./proto_lib.ts";
import { D, type ProtoDtype, type ProtoVariant, tokenLanesWGSL } from "./proto_token_lanes_wgsl.ts";

/** One GQA problem: one sequence, `hkv` KV heads of `rows` query rows. */
interface Shape {
  n: number;
  hkv: number;
  rows: number;
  dtype: ProtoDtype;
}

/** int8 scales of the prototype's inputs (per tensor). */
const K_SCALE = 1 / 127, V_SCALE = 1 / 100;

/** Inputs of a shape: queries in f32, K and V ([token][kv head][dim]) as f16 bits or int8. */
interface ProtoData {
  q: Float32Array;
  k: Uint16Array | Int8Array;
  v: Uint16Array | Int8Array;
  /** K and V as the values they stand for. */
  kf: Float32Array;
  vf: Float32Array;
}

/** int8 values times a scale (a loop: `Float32Array.from` with a map function fails at 2^27). */
function scaled(x: Int8Array, scale: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * scale;
  return out;
}

function makeData(s: Shape, seed: number): ProtoData {
  const rand = mulberry32(seed);
  const q = new Float32Array(s.hkv * s.rows * D).map(() => rand() * 2 - 1);
  const count = s.n * s.hkv * D;
  if (s.dtype === "f16") {
    const k = toF16Bits(new Float32Array(count).map(() => rand() * 2 - 1));
    const v = toF16Bits(new Float32Array(count).map(() => rand() * 2 - 1));
    return { q, k, v, kf: fromF16Bits(k), vf: fromF16Bits(v) };
  }
  const k = new Int8Array(count).map(() => Math.round(rand() * 254) - 127);
  const v = new Int8Array(count).map(() => Math.round(rand() * 254) - 127);
  return {
    q,
    k,
    v,
    kf: scaled(k, K_SCALE),
    vf: scaled(v, V_SCALE),
  };
}

/** The prototype on the device: a compiled pipeline and its bound buffers for one shape. */
async function build(
  device: GPUDevice,
  s: Shape,
  splits: number,
  data: ProtoData,
  variant: ProtoVariant = "full",
) {
  const code = tokenLanesWGSL(s.rows, s.dtype, await acceptsSubgroupsDirective(device), variant);
  const chunk = Math.ceil(s.n / splits);
  const params = new ArrayBuffer(32);
  new Uint32Array(params, 0, 3).set([s.n, chunk, s.hkv]);
  const int8 = s.dtype === "int8";
  new Float32Array(params, 12, 2).set([
    (Math.LOG2E / Math.sqrt(D)) * (int8 ? K_SCALE : 1),
    int8 ? V_SCALE : 1,
  ]);
  const workgroups = s.hkv * splits;
  const outBytes = workgroups * (s.rows * D + 2 * s.rows) * 4;
  return protoKernel(device, code, params, [data.q, data.k, data.v], outBytes, workgroups);
}

/** The splits' states merged on the CPU: each row's output (log2-unit maxima and sums). */
function mergeSplits(parts: Float32Array, s: Shape, splits: number): Float64Array {
  const stride = s.rows * D + 2 * s.rows;
  const out = new Float64Array(s.hkv * s.rows * D);
  for (let h = 0; h < s.hkv; h++) {
    for (let r = 0; r < s.rows; r++) {
      const base = (sp: number) => (sp * s.hkv + h) * stride;
      let mMax = -Infinity;
      for (let sp = 0; sp < splits; sp++) mMax = Math.max(mMax, parts[base(sp) + s.rows * D + r]);
      let l = 0;
      const o = new Float64Array(D);
      for (let sp = 0; sp < splits; sp++) {
        const w = 2 ** (parts[base(sp) + s.rows * D + r] - mMax);
        l += parts[base(sp) + s.rows * D + s.rows + r] * w;
        for (let d = 0; d < D; d++) o[d] += parts[base(sp) + r * D + d] * w;
      }
      for (let d = 0; d < D; d++) out[(h * s.rows + r) * D + d] = o[d] / l;
    }
  }
  return out;
}

/** Float64 attention of the shape's rows over all its tokens: the library's reference over the
 * values K and V stand for (the rows of a KV head are that head's group of query heads). */
function reference(s: Shape, data: ProtoData): Float64Array {
  return referenceAttention({
    q: data.q,
    k: data.kf,
    v: data.vf,
    seqLens: [s.n],
    numHeads: s.hkv * s.rows,
    numKVHeads: s.hkv,
    headDim: D,
  }).out;
}

const filter = installDispatchFilter();
const adapter = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
const device = await requestDevice(adapter);
const out = Deno.args.find((a) => a.startsWith("--out="))?.slice(6);

if (Deno.args.includes("--check")) {
  const shapes: [Shape, number][] = [
    [{ n: 700, hkv: 2, rows: 4, dtype: "f16" }, 3],
    [{ n: 1000, hkv: 3, rows: 4, dtype: "f16" }, 1],
    [{ n: 300, hkv: 1, rows: 8, dtype: "f16" }, 2],
    [{ n: 900, hkv: 2, rows: 4, dtype: "int8" }, 3],
    [{ n: 257, hkv: 1, rows: 4, dtype: "int8" }, 1],
  ];
  for (const [s, splits] of shapes) {
    for (const variant of ["full", "k-lanes4"] as const) {
      const data = makeData(s, s.n);
      const p = await build(device, s, splits, data, variant);
      const got = mergeSplits(await runOnce(device, p), s, splits);
      const want = reference(s, data);
      const err = relativeL2(got, want);
      console.log(
        `${variant} ${s.dtype} n ${s.n} kv heads ${s.hkv} rows ${s.rows} splits ${splits}: relative L2 error ${
          err.toExponential(2)
        }`,
      );
      if (!(err < 1e-5)) throw new Error(`prototype off the float64 reference by ${err}`);
    }
  }
} else {
  const results = [];
  const contexts = Deno.args.find((a) => a.startsWith("--contexts="))?.slice(11).split(",").map(
    Number,
  ) ?? [32 * 1024, 128 * 1024];
  const dtypes = (Deno.args.find((a) => a.startsWith("--dtypes="))?.slice(9).split(",") ??
    ["f16", "int8"]) as ProtoDtype[];
  const variants = (Deno.args.find((a) => a.startsWith("--variants="))?.slice(11).split(",") ??
    ["full", "k-lanes4", "no-pv", "no-scores", "no-k-dots"]) as ProtoVariant[];
  for (const dtype of dtypes) {
    for (const n of contexts) {
      const s: Shape = { n, hkv: 8, rows: 4, dtype };
      const data = makeData(s, 7);
      const cells: string[] = [];
      // The library's lean decode of the same problem, with and without its merge dispatch.
      const input: DecodeInput = {
        q: data.q,
        k: data.k,
        v: data.v,
        kvDtype: dtype,
        ...(dtype === "int8" ? { kScale: K_SCALE, vScale: V_SCALE } : {}),
        seqLens: [n],
        numHeads: s.hkv * s.rows,
        numKVHeads: s.hkv,
        headDim: D,
      };
      for (const t of await timeLeanTwins(device, input, filter)) {
        cells.push(`${t.what} ${t.aloneMs.toFixed(4)}/${t.streamMs.toFixed(4)}`);
        results.push({ dtype, n, ...t });
      }
      for (const variant of variants) {
        for (const splits of variant === "full" || variant === "k-lanes4" ? [33, 66, 132] : [66]) {
          const p = await build(device, s, splits, data, variant);
          const t = await timeWarm(device, p.record, { runs: 25, warmupMs: 400, streamMs: 2 });
          const alone = median(t.samplesMs), stream = median(t.streamSamplesMs!);
          const what = `proto${variant === "full" ? "" : ` ${variant}`} ${p.workgroups} wgs`;
          cells.push(`${what} ${alone.toFixed(4)}/${stream.toFixed(4)}`);
          results.push({ dtype, n, what, aloneMs: alone, streamMs: stream });
        }
      }
      const bytes = 2 * n * s.hkv * D * (dtype === "f16" ? 2 : 1);
      console.log(
        `gqa32/8 ${n / 1024}k ${dtype} (read at 4.4 TB/s: ${
          (bytes / 4.4e9).toFixed(4)
        } ms; alone/back to back ms): ${cells.join(", ")}`,
      );
    }
  }
  if (out) await Deno.writeTextFile(out, JSON.stringify(results, null, 1));
}
device.destroy();

/**
 * Prototype for issues 13 and 16 (session 24): decode of many query rows per KV head (MLA's 128
 * heads on one latent KV head, MQA, GQA with several query tokens) as two small matrix products
 * per tile through workgroup memory (`bench/proto_tiled_wgsl.ts`), against the library's lean
 * decode, which gives each block of at most 8 rows (4 for MLA) its own pass over K and V and adds
 * each score's partial dot products across 8-32 lanes with shuffles. Session 22 measured MLA at
 * 21% and MQA at 37-41% of the FMA roofline (bench/notes.md).
 *
 * The prototype reads f16 K/V (`[seq][token][kv head][dim]`, K and V of their own head dims) and
 * f32 queries (`[seq][kv head][row][dim]`), splits each sequence's context into `splits` equal
 * pieces, and writes each piece's unnormalised output, max and sum, merged here on the CPU. It has
 * no causal mask (every row sees every token), no variants and no paging: it measures the
 * arithmetic's layout, nothing else.
 *
 * `--check` (any adapter, e.g. lavapipe): every kernel configuration of the timing runs on small
 * shapes against a float64 reference. Otherwise (a GPU): each case's configurations at a few
 * split counts beside the library's lean decode of the same problem (with and without its merge
 * dispatch), alone and back to back after 400 ms of warm passes (`timeWarm`).
 *
 * Usage: deno run -A --unstable-webgpu bench/proto_tiled.ts [--check] [--out=FILE]
 *        [--only=REGEX]
 */

import { type DecodeInput, referenceAttention } from "../mod.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";
import { installDispatchFilter } from "./diag_lib.ts";
import { mulberry32 } from "./random.ts";
import { protoKernel, relativeL2, runOnce, timeLeanTwins } from "./proto_lib.ts";
import { type TiledConfig, tiledLayout, tiledWGSL } from "./proto_tiled_wgsl.ts";

/** One problem: `seqs` sequences of `n` tokens, `hkv` KV heads of `rows` query rows each. */
interface Shape {
  seqs: number;
  n: number;
  hkv: number;
  rows: number;
  D: number;
  DV: number;
  /** Query tokens per sequence of the library's twin (its rows are heads x qLen; default 1). */
  qLen?: number;
}

interface ProtoData {
  q: Float32Array;
  k: Uint16Array;
  v: Uint16Array;
}

/** Random f16 bits of magnitude below 1 (exponent field at most 14), any sign. */
function randomHalves(count: number, rand: () => number): Uint16Array {
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.floor(rand() * 65536) & 0xbbff;
  return out;
}

function makeData(s: Shape, seed: number): ProtoData {
  const rand = mulberry32(seed);
  const q = new Float32Array(s.seqs * s.hkv * s.rows * s.D).map(() => rand() * 2 - 1);
  const k = randomHalves(s.seqs * s.n * s.hkv * s.D, rand);
  const v = randomHalves(s.seqs * s.n * s.hkv * s.DV, rand);
  return { q, k, v };
}

function build(device: GPUDevice, s: Shape, c: TiledConfig, splits: number, data: ProtoData) {
  const chunk = Math.ceil(s.n / splits);
  const params = new ArrayBuffer(32);
  new Uint32Array(params, 0, 5).set([s.n, chunk, s.hkv, s.rows, splits]);
  new Float32Array(params, 20, 1).set([Math.LOG2E / Math.sqrt(s.D)]);
  const workgroups = s.seqs * s.hkv * splits * (s.rows / c.RB);
  const outBytes = workgroups * (c.RB * s.DV + 2 * c.RB) * 4;
  return protoKernel(device, tiledWGSL(c), params, [data.q, data.k, data.v], outBytes, workgroups);
}

/** The pieces' states merged on the CPU: each row's output. */
function mergePieces(parts: Float32Array, s: Shape, c: TiledConfig, splits: number): Float64Array {
  const RB = c.RB, nrb = s.rows / RB, stride = RB * s.DV + 2 * RB;
  const out = new Float64Array(s.seqs * s.hkv * s.rows * s.DV);
  for (let sq = 0; sq < s.seqs; sq++) {
    for (let h = 0; h < s.hkv; h++) {
      for (let row = 0; row < s.rows; row++) {
        const rb = Math.floor(row / RB), r = row % RB;
        const base = (sp: number) => (((sq * s.hkv + h) * splits + sp) * nrb + rb) * stride;
        let mMax = -Infinity;
        for (let sp = 0; sp < splits; sp++) mMax = Math.max(mMax, parts[base(sp) + RB * s.DV + r]);
        let l = 0;
        const o = new Float64Array(s.DV);
        for (let sp = 0; sp < splits; sp++) {
          const w = 2 ** (parts[base(sp) + RB * s.DV + r] - mMax);
          l += parts[base(sp) + RB * s.DV + RB + r] * w;
          for (let d = 0; d < s.DV; d++) o[d] += parts[base(sp) + r * s.DV + d] * w;
        }
        const at = ((sq * s.hkv + h) * s.rows + row) * s.DV;
        for (let d = 0; d < s.DV; d++) out[at + d] = o[d] / l;
      }
    }
  }
  return out;
}

/** Float64 attention of every row over all its sequence's tokens: the library's reference (the
 * prototype's query rows of a KV head are that head's group of query heads). */
function reference(s: Shape, data: ProtoData): Float64Array {
  return referenceAttention({
    q: data.q,
    k: data.k,
    v: data.v,
    kvDtype: "f16",
    seqLens: Array(s.seqs).fill(s.n),
    numHeads: s.hkv * s.rows,
    numKVHeads: s.hkv,
    headDim: s.D,
    ...(s.DV !== s.D ? { headDimV: s.DV } : {}),
  }).out;
}

const cfgName = (c: TiledConfig) =>
  `RB${c.RB} TS${c.TS} DC${c.DC} MBR${c.MB_R} U${c.U} (TG${tiledLayout(c).TG})`;

/** The timed cases: a shape, its kernel configurations and split counts. */
const CASES: { name: string; shape: Shape; configs: TiledConfig[]; splits: number[] }[] = [
  {
    name: "mla b1 32k",
    shape: { seqs: 1, n: 32768, hkv: 1, rows: 128, D: 576, DV: 512 },
    configs: [
      { D: 576, DV: 512, RB: 64, TS: 64, DC: 32, MB_R: 16, U: 4 },
      { D: 576, DV: 512, RB: 32, TS: 128, DC: 32, MB_R: 8, U: 4 },
      { D: 576, DV: 512, RB: 32, TS: 64, DC: 64, MB_R: 8, U: 4 },
    ],
    splits: [33, 66, 132],
  },
  {
    name: "mla b8 32k",
    shape: { seqs: 8, n: 32768, hkv: 1, rows: 128, D: 576, DV: 512 },
    configs: [
      { D: 576, DV: 512, RB: 64, TS: 64, DC: 32, MB_R: 16, U: 4 },
      { D: 576, DV: 512, RB: 32, TS: 128, DC: 32, MB_R: 8, U: 4 },
    ],
    splits: [8, 17],
  },
  {
    name: "mqa h128/1 b1 32k",
    shape: { seqs: 1, n: 32768, hkv: 1, rows: 128, D: 128, DV: 128 },
    configs: [
      { D: 128, DV: 128, RB: 64, TS: 64, DC: 32, MB_R: 16, U: 4 },
      { D: 128, DV: 128, RB: 64, TS: 64, DC: 32, MB_R: 4, U: 4 },
      { D: 128, DV: 128, RB: 32, TS: 128, DC: 32, MB_R: 8, U: 4 },
    ],
    splits: [66, 132],
  },
  {
    name: "qLen4 gqa 16k",
    shape: { seqs: 1, n: 16384, hkv: 8, rows: 16, D: 128, DV: 128, qLen: 4 },
    configs: [
      { D: 128, DV: 128, RB: 16, TS: 128, DC: 32, MB_R: 8, U: 4 },
      { D: 128, DV: 128, RB: 16, TS: 256, DC: 16, MB_R: 16, U: 4 },
    ],
    splits: [16, 33],
  },
];

const filter = installDispatchFilter();
const adapter = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
const device = await requestDevice(adapter);
const out = Deno.args.find((a) => a.startsWith("--out="))?.slice(6);
const only = new RegExp(Deno.args.find((a) => a.startsWith("--only="))?.slice(7) ?? ".");

if (Deno.args.includes("--check")) {
  for (const { name, shape, configs } of CASES.filter((c) => only.test(c.name))) {
    for (const c of configs) {
      // Small twins of the case: two sequences, ragged last tiles, 1-3 pieces.
      const s: Shape = { ...shape, seqs: 2, n: 333, hkv: Math.min(shape.hkv, 2) };
      for (const splits of [1, 3]) {
        const data = makeData(s, splits * 7 + c.RB);
        const p = await build(device, s, c, splits, data);
        const got = mergePieces(await runOnce(device, p), s, c, splits);
        const want = reference(s, data);
        const err = relativeL2(got, want);
        console.log(
          `${name} ${cfgName(c)} splits ${splits}: relative L2 error ${err.toExponential(2)}`,
        );
        if (!(err < 1e-5)) throw new Error(`prototype off the float64 reference by ${err}`);
      }
    }
  }
} else {
  const results = [];
  for (const { name, shape: s, configs, splits } of CASES.filter((c) => only.test(c.name))) {
    const data = makeData(s, 7);
    const cells: string[] = [];
    const qLen = s.qLen ?? 1;
    const input: DecodeInput = {
      q: data.q,
      k: data.k,
      v: data.v,
      kvDtype: "f16",
      seqLens: Array(s.seqs).fill(s.n),
      qLen,
      numHeads: (s.hkv * s.rows) / qLen,
      numKVHeads: s.hkv,
      headDim: s.D,
      ...(s.DV !== s.D ? { headDimV: s.DV } : {}),
    };
    for (const t of await timeLeanTwins(device, input, filter)) {
      cells.push(`${t.what} ${t.aloneMs.toFixed(4)}/${t.streamMs.toFixed(4)}`);
      results.push({ name, ...t });
    }
    for (const c of configs) {
      for (const sp of splits) {
        const p = await build(device, s, c, sp, data);
        const t = await timeWarm(device, p.record, { runs: 25, warmupMs: 400, streamMs: 2 });
        const alone = median(t.samplesMs), stream = median(t.streamSamplesMs!);
        const what = `tiled ${cfgName(c)} ${p.workgroups} wgs`;
        cells.push(`${what} ${alone.toFixed(4)}/${stream.toFixed(4)}`);
        results.push({ name, what, aloneMs: alone, streamMs: stream });
      }
    }
    const flops = 2 * s.seqs * s.n * s.hkv * s.rows * (s.D + s.DV);
    console.log(
      `${name} (${(flops / 1e9).toFixed(2)} GFLOP: ${
        (flops / 51.6e9).toFixed(4)
      } ms at 51.6 TFLOP/s; alone/back to back ms):\n  ${cells.join("\n  ")}`,
    );
  }
  if (out) await Deno.writeTextFile(out, JSON.stringify(results, null, 1));
}
device.destroy();

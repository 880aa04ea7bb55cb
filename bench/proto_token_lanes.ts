/**
 * Prototype for issue 13 (session 22, not yet run on a GPU): a GQA decode step where a thread
 * takes whole tokens for the scores and output dims for the weighted sum, to test whether far
 * fewer registers per thread (so many more resident warps) let the 4-row loop's arithmetic hide
 * behind its reads. Session 22's diagnostic found the library's 4-row loop computing for 91 us
 * (71 us bare) against 123 us of reads at GQA 32/8 128k, on two resident workgroups per
 * multiprocessor (bench/notes.md).
 *
 * The kernel (one workgroup of 128 threads per KV head and split of the context; f16 or int8 K/V
 * packed in `u32`, int8 with per-tensor scales, d128, `R` query rows per KV head): the block's query rows sit in workgroup memory;
 * per tile of 256 tokens each thread scores two tokens against all rows (its K rows read whole,
 * each query vector read once for both tokens), the tile's row maxima and sums come from subgroup
 * and workgroup reductions, the probabilities go to workgroup memory, then each thread adds one
 * `u32` word's output dims (2 for f16, 4 for int8) of every row over every 2nd or 4th token of the
 * tile (V read as coalesced `u32` columns). It
 * writes each split's unnormalised output, max and sum (log2 units), merged here on the CPU.
 *
 * `--check` (any adapter, e.g. lavapipe): small shapes against a float64 reference. Otherwise
 * (a GPU): GQA 32/8 d128, f16 and int8, at 32k and 128k tokens, the prototype at several split
 * counts beside
 * the library's lean decode with and without its merge dispatch, each alone and back to back
 * after 400 ms of warm passes (`timeWarm`).
 *
 * Usage: deno run -A --unstable-webgpu bench/proto_token_lanes.ts [--check] [--out=FILE]
 *        [--contexts=32768,131072]
 */

import { createDecoder, type DecodeInput, toF16Bits } from "../mod.ts";
import { fromF16Bits } from "../src/core/half.ts";
import { acceptsSubgroupsDirective, requestDevice } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";
import { installDispatchFilter } from "./diag_lib.ts";
import { mulberry32 } from "./random.ts";

const D = 128;
const W = 128;
const TILE = 256;

/** K/V formats of the prototype: f16 pairs or int8 quads in each `u32` (int8 per-tensor scales). */
export type ProtoDtype = "f16" | "int8";

/** Elements per `u32` of a format. */
const perWord = (dtype: ProtoDtype) => (dtype === "f16" ? 2 : 4);

/** The prototype's WGSL for `rows` query rows per KV head and a K/V format. */
export function tokenLanesWGSL(rows: number, dtype: ProtoDtype, enableSubgroups: boolean): string {
  const R = rows;
  const EW = perWord(dtype); // elements per u32
  const EC = 4 * EW; // elements per 16-byte K chunk
  const CH = D / EC; // K chunks per row
  const COLS = D / EW; // V words per row: one per thread of a phase
  const PH = W / COLS; // token phases of the weighted sum
  const rowsOf = (f: (r: number) => string) => Array.from({ length: R }, (_, r) => f(r)).join("\n");
  const elems = (f: (e: number) => string) => Array.from({ length: EW }, (_, e) => f(e)).join("\n");
  // A word's elements as f32 (int8: sign-extended bytes; the scales are applied outside).
  const unpackWord = dtype === "f16"
    ? "fn unpack_word(w: u32) -> vec2<f32> { return unpack2x16float(w); }"
    : `fn unpack_word(w: u32) -> vec4<f32> {
  let i = bitcast<i32>(w);
  return vec4<f32>(
    f32(extractBits(i, 0u, 8u)), f32(extractBits(i, 8u, 8u)),
    f32(extractBits(i, 16u, 8u)), f32(extractBits(i, 24u, 8u)),
  );
}`;
  // A K chunk as vec4s of elements, in dim order.
  const chunkVecs = dtype === "f16"
    ? `array<vec4<f32>, 2>(
    vec4<f32>(unpack_word(w.x), unpack_word(w.y)),
    vec4<f32>(unpack_word(w.z), unpack_word(w.w)),
  )`
    : "array<vec4<f32>, 4>(unpack_word(w.x), unpack_word(w.y), unpack_word(w.z), unpack_word(w.w))";
  const VPC = EC / 4; // vec4s per chunk
  const UQ = Math.min(4, CH); // K chunks loaded ahead of the scores' arithmetic
  const UV = 8; // V words loaded ahead of the weighted sum's arithmetic
  return `${enableSubgroups ? "enable subgroups;\n" : ""}
struct Params { n: u32, chunk: u32, hkv: u32, scale: f32, vscale: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kc: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> vc: array<u32>;
@group(0) @binding(4) var<storage, read_write> outp: array<f32>;
const NEG = -3.0e38;
var<workgroup> qs: array<vec4<f32>, ${R * D / 4}>;
var<workgroup> ps: array<array<f32, ${R}>, ${TILE}>;
var<workgroup> redm: array<array<f32, ${R}>, 32>;
var<workgroup> redl: array<array<f32, ${R}>, 32>;
var<workgroup> phase_acc: array<array<f32, ${EW * R}>, ${W}>;

${unpackWord}
fn unpack_chunk(w: vec4<u32>) -> array<vec4<f32>, ${VPC}> {
  return ${chunkVecs};
}

@compute @workgroup_size(${W})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_invocation_id) sl: u32,
  @builtin(subgroup_size) ss: u32,
) {
  let h = wid.x % params.hkv;
  let split = wid.x / params.hkv;
  let t0 = split * params.chunk;
  let t1 = min(t0 + params.chunk, params.n);
  for (var i = lid; i < ${R * D / 4}u; i += ${W}u) {
    qs[i] = q[h * ${R * D / 4}u + i] * params.scale;
  }
  workgroupBarrier();
  var m = array<f32, ${R}>();
  var l = array<f32, ${R}>();
  var acc = array<f32, ${EW * R}>();
${rowsOf((r) => `  m[${r}] = NEG;`)}
  let c = lid % ${COLS}u;
  let th = lid / ${COLS}u;
  let nsg = ${W}u / ss;
  for (var base = t0; base < t1; base += ${TILE}u) {
    // Scores of two tokens per thread against every row.
    let va = base + lid < t1;
    let vb = base + lid + ${W}u < t1;
    let ka = (min(base + lid, t1 - 1u) * params.hkv + h) * ${CH}u;
    let kb = (min(base + lid + ${W}u, t1 - 1u) * params.hkv + h) * ${CH}u;
    var sa = array<f32, ${R}>();
    var sb = array<f32, ${R}>();
    // Chunks in groups of ${UQ}: a group's loads are all issued before its arithmetic.
    for (var i0 = 0u; i0 < ${CH}u; i0 += ${UQ}u) {
${
    Array.from({ length: UQ }, (_, u) =>
      `      let wa${u} = kc[ka + i0 + ${u}u];
      let wb${u} = kc[kb + i0 + ${u}u];`).join("\n")
  }
${
    Array.from({ length: UQ }, (_, u) =>
      `      {
        let a = unpack_chunk(wa${u});
        let b = unpack_chunk(wb${u});
${
        rowsOf((r) =>
          `        for (var j = 0u; j < ${VPC}u; j++) {
          let qv = qs[${r * D / 4}u + ${VPC}u * (i0 + ${u}u) + j];
          sa[${r}] += dot(a[j], qv);
          sb[${r}] += dot(b[j], qv);
        }`
        )
      }
      }`).join("\n")
  }
    }
    // The tile's maxima: subgroups, then their partials in workgroup memory.
${
    rowsOf((r) =>
      `    sa[${r}] = select(NEG, sa[${r}], va);
    sb[${r}] = select(NEG, sb[${r}], vb);
    let mx${r} = subgroupMax(max(sa[${r}], sb[${r}]));
    if (sl == 0u) { redm[lid / ss][${r}] = mx${r}; }`
    )
  }
    workgroupBarrier();
    var alpha = array<f32, ${R}>();
${
    rowsOf((r) =>
      `    {
      var tm = redm[0][${r}];
      for (var j = 1u; j < nsg; j++) { tm = max(tm, redm[j][${r}]); }
      let mn = max(m[${r}], tm);
      alpha[${r}] = exp2(m[${r}] - mn);
      m[${r}] = mn;
      let pa = select(0.0, exp2(sa[${r}] - mn), va);
      let pb = select(0.0, exp2(sb[${r}] - mn), vb);
      ps[lid][${r}] = pa;
      ps[lid + ${W}u][${r}] = pb;
      let ls = subgroupAdd(pa + pb);
      if (sl == 0u) { redl[lid / ss][${r}] = ls; }
    }`
    )
  }
    workgroupBarrier();
${
    rowsOf((r) =>
      `    {
      var tl = redl[0][${r}];
      for (var j = 1u; j < nsg; j++) { tl += redl[j][${r}]; }
      l[${r}] = l[${r}] * alpha[${r}] + tl;
${elems((e) => `      acc[${EW * r + e}] *= alpha[${r}];`)}
    }`
    )
  }
    // Weighted sum: one word's dims of every row over every ${PH}th token of the tile, ${UV}
    // tokens' words requested before their arithmetic (tokens past the piece have p = 0 and
    // re-read its last token).
    for (var k0 = th; k0 < ${TILE}u; k0 += ${PH * UV}u) {
${
    Array.from({ length: UV }, (_, u) =>
      `      let w${u} = vc[(min(base + k0 + ${
        u * PH
      }u, t1 - 1u) * params.hkv + h) * ${COLS}u + c];`)
      .join("\n")
  }
${
    Array.from({ length: UV }, (_, u) =>
      `      {
        let v = unpack_word(w${u});
        let pk = ps[k0 + ${u * PH}u];
${
        rowsOf((r) =>
          elems((e) => `        acc[${EW * r + e}] = fma(pk[${r}], v[${e}], acc[${EW * r + e}]);`)
        )
      }
      }`).join("\n")
  }
    }
    workgroupBarrier();
  }
  // The phases' sums, added in phase order by the first phase's threads.
  phase_acc[lid] = acc;
  workgroupBarrier();
  let ob = wid.x * ${R * D + 2 * R}u;
  if (th == 0u) {
    for (var x = 0u; x < ${EW * R}u; x++) {
      var sum = phase_acc[c][x];
      for (var ph = 1u; ph < ${PH}u; ph++) { sum += phase_acc[ph * ${COLS}u + c][x]; }
      // x = row * ${EW} + element: the output dim is the word's element.
      outp[ob + (x / ${EW}u) * ${D}u + ${EW}u * c + x % ${EW}u] = sum * params.vscale;
    }
  }
  if (lid == 0u) {
${
    rowsOf((r) =>
      `    outp[ob + ${R * D + r}u] = m[${r}];
    outp[ob + ${R * D + R + r}u] = l[${r}];`
    )
  }
  }
}
`;
}

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
    kf: Float32Array.from(k, (x) => x * K_SCALE),
    vf: Float32Array.from(v, (x) => x * V_SCALE),
  };
}

/** The prototype on the device: a compiled pipeline and its bound buffers for one shape. */
async function build(device: GPUDevice, s: Shape, splits: number, data: ProtoData) {
  const code = tokenLanesWGSL(s.rows, s.dtype, await acceptsSubgroupsDirective(device));
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length) throw new Error(errors.map((e) => e.message).join("\n"));
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const buffer = (bytes: ArrayBufferView, usage: number) => {
    const b = device.createBuffer({ size: Math.max(16, bytes.byteLength), usage });
    device.queue.writeBuffer(b, 0, bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
    return b;
  };
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
  const out = device.createBuffer({
    size: outBytes,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const uniform = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: buffer(new Uint8Array(params), uniform) } },
      { binding: 1, resource: { buffer: buffer(data.q, storage) } },
      { binding: 2, resource: { buffer: buffer(data.k, storage) } },
      { binding: 3, resource: { buffer: buffer(data.v, storage) } },
      { binding: 4, resource: { buffer: out } },
    ],
  });
  const record = (pass: GPUComputePassEncoder) => {
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups);
  };
  return { record, out, outBytes, workgroups };
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

/** Float64 attention of the shape's rows over all its tokens. */
function reference(s: Shape, data: ProtoData): Float64Array {
  const { kf: k, vf: v } = data;
  const out = new Float64Array(s.hkv * s.rows * D);
  const scale = 1 / Math.sqrt(D);
  for (let h = 0; h < s.hkv; h++) {
    for (let r = 0; r < s.rows; r++) {
      const qr = (h * s.rows + r) * D;
      const scores = new Float64Array(s.n);
      let mx = -Infinity;
      for (let t = 0; t < s.n; t++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += data.q[qr + d] * k[(t * s.hkv + h) * D + d];
        scores[t] = dot * scale;
        mx = Math.max(mx, scores[t]);
      }
      let l = 0;
      for (let t = 0; t < s.n; t++) {
        const p = Math.exp(scores[t] - mx);
        l += p;
        for (let d = 0; d < D; d++) out[qr + d] += p * v[(t * s.hkv + h) * D + d];
      }
      for (let d = 0; d < D; d++) out[qr + d] /= l;
    }
  }
  return out;
}

async function readBack(
  device: GPUDevice,
  buffer: GPUBuffer,
  bytes: number,
): Promise<Float32Array> {
  const read = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, read, 0, bytes);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(read.getMappedRange().slice(0));
  read.destroy();
  return out;
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
    const data = makeData(s, s.n);
    const p = await build(device, s, splits, data);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    p.record(pass);
    pass.end();
    device.queue.submit([enc.finish()]);
    const got = mergeSplits(await readBack(device, p.out, p.outBytes), s, splits);
    const want = reference(s, data);
    let num = 0, den = 0;
    for (let i = 0; i < want.length; i++) {
      num += (got[i] - want[i]) ** 2;
      den += want[i] ** 2;
    }
    const err = Math.sqrt(num / den);
    console.log(
      `${s.dtype} n ${s.n} kv heads ${s.hkv} rows ${s.rows} splits ${splits}: relative L2 error ${
        err.toExponential(2)
      }`,
    );
    if (!(err < 1e-5)) throw new Error(`prototype off the float64 reference by ${err}`);
  }
} else {
  const results = [];
  const contexts = Deno.args.find((a) => a.startsWith("--contexts="))?.slice(11).split(",").map(
    Number,
  ) ?? [32 * 1024, 128 * 1024];
  for (const dtype of ["f16", "int8"] as const) {
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
      const decoder = await createDecoder({ backend: "webgpu", device });
      for (const skip of [undefined, "merge"] as const) {
        filter.skip = skip;
        const t = await decoder.timeKernels({ ...input, strategy: "lean" }, {
          runs: 25,
          warmupMs: 400,
          streamMs: 2,
        });
        filter.skip = undefined;
        const what = `lean${skip ? " no merge" : ""}`;
        cells.push(`${what} ${t.medianMs.toFixed(4)}/${t.stream!.medianMs.toFixed(4)}`);
        results.push({ dtype, n, what, aloneMs: t.medianMs, streamMs: t.stream!.medianMs });
      }
      await decoder.dispose();
      for (const splits of [33, 66, 132, 264]) {
        const p = await build(device, s, splits, data);
        const t = await timeWarm(device, p.record, { runs: 25, warmupMs: 400, streamMs: 2 });
        const alone = median(t.samplesMs), stream = median(t.streamSamplesMs!);
        cells.push(`proto ${p.workgroups} wgs ${alone.toFixed(4)}/${stream.toFixed(4)}`);
        const what = `proto ${p.workgroups} workgroups`;
        results.push({ dtype, n, what, aloneMs: alone, streamMs: stream });
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

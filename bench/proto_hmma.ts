/**
 * Prototype for issues 13 and 16 (session 45): f16 K/V decode on the GPU's matrix units through
 * Dawn's `chromium-experimental-subgroup-matrix` (f16 x f16 -> f32, 16 x 16 x 16), which the
 * H200's Dawn offers once `shader-f16` is on (bench/proto_hmma_wgsl.ts). The library's kernels
 * are bound by f32 multiply-adds wherever a KV head serves 16 or more query rows (qLen 4 over
 * GQA 4 at 33% of the f32 FMA roofline, MLA and MQA h128/1 at 3.5-4% of the read ceiling); here
 * the products move to the matrix units.
 *
 * The prototype reads f16 K/V (`[seq][token][kv head][dim]`, a tile of zero padding at the end)
 * and f32 queries (`[seq][kv head][row][dim]`), splits each sequence into `splits` pieces per
 * block of 16 rows and writes each piece's unnormalised output, maxima and sums, merged here on
 * the CPU. No causal mask, variants or paging. Each configuration is checked against float64 on
 * small shapes, then each case timed (after 400 ms of warm passes; alone and back to back) beside
 * the library's lean decode of the benchmark case of the same shape on the same device.
 *
 * State (session 45, H200, bench/notes.md): every variant is 1.5-5x slower than the library's f32
 * kernels on the same Dawn device (qLen 4 GQA 16k 0.095 against 0.061 ms, MLA b1 32k 1.99 against
 * 0.43); the f16 variants match their emulation (about 2e-4), the split ones do not (the weights'
 * remainders computed in the kernel add nothing on the GPU).
 *
 * `--emulate`: the kernel's arithmetic on the CPU (pieces, tiles, f16 rounding of queries and
 * weights, split or not) against float64, on the check shapes: what each variant's error should be.
 *
 * Usage: deno run -A --unstable-webgpu --v8-flags=--expose-gc bench/proto_hmma.ts
 *        [--emulate] [--only=REGEX] [--out=FILE] [--print] [--no-twins]
 *        [--dawn-features=TOGGLES]
 */

import { createDecoder } from "../mod.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";
import { loadCases } from "./bench_cases.ts";
import { makeBenchInput, randomHalves } from "./bench_input.ts";
import { mulberry32 } from "./random.ts";
import { compileErrors, dawnMatrixDevice, protoKernel, relativeL2, runOnce } from "./proto_lib.ts";
import { type HmmaConfig, hmmaWGSL, LO_SCALE, PARAM_BYTES } from "./proto_hmma_wgsl.ts";

/** One problem: `seqs` sequences of `n` tokens, `hkv` KV heads of `rows` query rows each. */
interface Shape {
  seqs: number;
  n: number;
  hkv: number;
  rows: number;
  DK: number;
  DV: number;
}

interface Data {
  q: Float32Array;
  k: Uint16Array;
  v: Uint16Array;
}

const PAD_TOKENS = 64;

function makeData(s: Shape, seed: number): Data {
  const rand = mulberry32(seed);
  const kv = (d: number, sd: number) => {
    const n = s.seqs * s.n * s.hkv * d;
    const out = new Uint16Array(n + PAD_TOKENS * s.hkv * d);
    out.set(randomHalves(n, sd));
    return out;
  };
  return {
    q: new Float32Array(s.seqs * s.hkv * s.rows * s.DK).map(() => rand() * 2 - 1),
    k: kv(s.DK, seed * 7 + 1),
    v: kv(s.DV, seed * 7 + 2),
  };
}

const rowBlocks = (s: Shape) => Math.ceil(s.rows / 16);
const pieceFloats = (s: Shape) => 16 * s.DV + 32;

function params(s: Shape, splits: number): ArrayBuffer {
  const buf = new ArrayBuffer(PARAM_BYTES);
  new Uint32Array(buf, 0, 5).set([s.n, Math.ceil(s.n / splits), s.hkv, splits, s.rows]);
  new Float32Array(buf, 20, 1).set([Math.LOG2E / Math.sqrt(s.DK)]);
  new Uint32Array(buf, 24, 1).set([halfQueryLength(s)]);
  return buf;
}

/** Halves in each of the kernel's two query copies (rows padded to blocks of 16). */
const halfQueryLength = (s: Shape) => s.seqs * s.hkv * rowBlocks(s) * 16 * s.DK;

/**
 * The queries as f16 (rows padded with zeros to blocks of 16), then their f16 remainders scaled
 * by `LO_SCALE`.
 */
function halfQueries(s: Shape, q: Float32Array): Uint16Array {
  const n = halfQueryLength(s), out = new Float16Array(2 * n);
  const padded = rowBlocks(s) * 16;
  for (let sh = 0; sh < s.seqs * s.hkv; sh++) {
    for (let r = 0; r < s.rows; r++) {
      for (let d = 0; d < s.DK; d++) {
        const x = q[(sh * s.rows + r) * s.DK + d], at = (sh * padded + r) * s.DK + d;
        out[at] = x;
        out[n + at] = (x - out[at]) * LO_SCALE;
      }
    }
  }
  return new Uint16Array(out.buffer);
}

/** The pieces merged: each row's output, `[seq][kv head][row][dim]`. */
function merge(parts: Float32Array, s: Shape, splits: number): Float64Array {
  const out = new Float64Array(s.seqs * s.hkv * s.rows * s.DV);
  const rbs = rowBlocks(s), stride = pieceFloats(s);
  for (let sh = 0; sh < s.seqs * s.hkv; sh++) {
    for (let r = 0; r < s.rows; r++) {
      const at = (sp: number) => ((sh * rbs + Math.floor(r / 16)) * splits + sp) * stride;
      const rr = r % 16;
      let mMax = -Infinity;
      for (let sp = 0; sp < splits; sp++) mMax = Math.max(mMax, parts[at(sp) + 16 * s.DV + rr]);
      let l = 0;
      const o = new Float64Array(s.DV);
      for (let sp = 0; sp < splits; sp++) {
        const w = 2 ** (parts[at(sp) + 16 * s.DV + rr] - mMax);
        l += parts[at(sp) + 16 * s.DV + 16 + rr] * w;
        for (let d = 0; d < s.DV; d++) o[d] += parts[at(sp) + rr * s.DV + d] * w;
      }
      for (let d = 0; d < s.DV; d++) out[(sh * s.rows + r) * s.DV + d] = o[d] / l;
    }
  }
  return out;
}

/** Float64 attention over the f16 values. */
function reference(s: Shape, data: Data): Float64Array {
  const k = new Float16Array(data.k.buffer), v = new Float16Array(data.v.buffer);
  const out = new Float64Array(s.seqs * s.hkv * s.rows * s.DV);
  const scale = 1 / Math.sqrt(s.DK);
  for (let seq = 0; seq < s.seqs; seq++) {
    for (let h = 0; h < s.hkv; h++) {
      for (let r = 0; r < s.rows; r++) {
        const qAt = ((seq * s.hkv + h) * s.rows + r) * s.DK;
        const x = new Float64Array(s.n);
        for (let t = 0; t < s.n; t++) {
          const kAt = ((seq * s.n + t) * s.hkv + h) * s.DK;
          let dot = 0;
          for (let d = 0; d < s.DK; d++) dot += data.q[qAt + d] * k[kAt + d];
          x[t] = dot * scale;
        }
        const m = Math.max(...x);
        let l = 0;
        const o = out.subarray(((seq * s.hkv + h) * s.rows + r) * s.DV).subarray(0, s.DV);
        for (let t = 0; t < s.n; t++) {
          const p = Math.exp(x[t] - m);
          l += p;
          const vAt = ((seq * s.n + t) * s.hkv + h) * s.DV;
          for (let d = 0; d < s.DV; d++) o[d] += p * v[vAt + d];
        }
        for (let d = 0; d < s.DV; d++) o[d] /= l;
      }
    }
  }
  return out;
}

const CHECKS: { shape: Shape; splits: number[] }[] = [
  { shape: { seqs: 1, n: 64, hkv: 1, rows: 16, DK: 128, DV: 128 }, splits: [1, 2] },
  { shape: { seqs: 1, n: 80, hkv: 2, rows: 4, DK: 128, DV: 128 }, splits: [1] },
  { shape: { seqs: 2, n: 333, hkv: 2, rows: 16, DK: 128, DV: 128 }, splits: [1, 3] },
  { shape: { seqs: 1, n: 100, hkv: 1, rows: 32, DK: 576, DV: 512 }, splits: [1, 2] },
  { shape: { seqs: 1, n: 70, hkv: 1, rows: 128, DK: 576, DV: 512 }, splits: [1] },
];

/** The timed cases, each named as the benchmark case the library decodes beside it. */
const CASES: { name: string; shape: Shape; splits: number[] }[] = [
  {
    name: "qLen4 gqa 16k",
    shape: { seqs: 1, n: 16384, hkv: 8, rows: 16, DK: 128, DV: 128 },
    splits: [33, 66],
  },
  {
    name: "gqa32/8 128k",
    shape: { seqs: 1, n: 131072, hkv: 8, rows: 4, DK: 128, DV: 128 },
    splits: [33, 66],
  },
  {
    name: "mqa h128/1 b1 32k",
    shape: { seqs: 1, n: 32768, hkv: 1, rows: 128, DK: 128, DV: 128 },
    splits: [33, 66],
  },
  {
    name: "mla b1 32k",
    shape: { seqs: 1, n: 32768, hkv: 1, rows: 128, DK: 576, DV: 512 },
    splits: [17, 33],
  },
  {
    name: "mla b8 32k",
    shape: { seqs: 8, n: 32768, hkv: 1, rows: 128, DK: 576, DV: 512 },
    splits: [4, 8],
  },
];

/**
 * The kernel's arithmetic on the CPU: its pieces and tiles of `T` tokens, queries and weights
 * rounded to f16 (with `split`, plus their f16 remainders scaled by `LO_SCALE`), products and sums
 * in float64 (the matrix units' exact products and f32 sums, less their f32 rounding).
 */
function emulate(s: Shape, splits: number, data: Data, T: number, split: boolean): Float32Array {
  const k = new Float16Array(data.k.buffer), v = new Float16Array(data.v.buffer);
  const h16 = Math.f16round, scale = Math.LOG2E / Math.sqrt(s.DK);
  const parts = (x: number): [number, number] => {
    const hi = h16(x);
    return [hi, split ? h16((x - hi) * LO_SCALE) / LO_SCALE : 0];
  };
  const rbs = rowBlocks(s), stride = pieceFloats(s), chunk = Math.ceil(s.n / splits);
  const out = new Float32Array(s.seqs * s.hkv * rbs * splits * stride);
  for (let seq = 0; seq < s.seqs; seq++) {
    for (let h = 0; h < s.hkv; h++) {
      for (let r = 0; r < s.rows; r++) {
        const qAt = ((seq * s.hkv + h) * s.rows + r) * s.DK;
        const q = Array.from({ length: s.DK }, (_, d) => parts(data.q[qAt + d]));
        for (let sp = 0; sp < splits; sp++) {
          const t0 = Math.min(s.n, sp * chunk), t1 = Math.min(s.n, t0 + chunk);
          const base = (((seq * s.hkv + h) * rbs + Math.floor(r / 16)) * splits + sp) * stride;
          let m = -3e38, l = 0;
          const o = new Float64Array(s.DV);
          for (let t = t0; t < t1; t += T) {
            const x: number[] = [];
            for (let i = t; i < Math.min(t1, t + T); i++) {
              const kAt = ((seq * s.n + i) * s.hkv + h) * s.DK;
              let hi = 0, lo = 0;
              for (let d = 0; d < s.DK; d++) {
                hi += q[d][0] * k[kAt + d];
                lo += q[d][1] * k[kAt + d];
              }
              x.push((hi + lo) * scale);
            }
            const mNew = Math.max(m, ...x), alpha = 2 ** (m - mNew);
            m = mNew;
            l *= alpha;
            for (let d = 0; d < s.DV; d++) o[d] *= alpha;
            x.forEach((xi, j) => {
              const p = 2 ** (xi - mNew), [hi, lo] = parts(p);
              l += p;
              const vAt = ((seq * s.n + t + j) * s.hkv + h) * s.DV;
              for (let d = 0; d < s.DV; d++) o[d] += (hi + lo) * v[vAt + d];
            });
          }
          out.set(o, base + (r % 16) * s.DV);
          out[base + 16 * s.DV + (r % 16)] = m;
          out[base + 16 * s.DV + 16 + (r % 16)] = l;
        }
      }
    }
  }
  return out;
}

const only = new RegExp(Deno.args.find((a) => a.startsWith("--only="))?.slice(7) ?? ".");
const outFile = Deno.args.find((a) => a.startsWith("--out="))?.slice(6);
const twins = !Deno.args.includes("--no-twins");

if (Deno.args.includes("--emulate")) {
  for (const { shape, splits } of CHECKS) {
    for (const sp of splits) {
      const data = makeData(shape, sp * 11 + shape.rows);
      const want = reference(shape, data);
      const errs = [false, true].map((split) =>
        relativeL2(merge(emulate(shape, sp, data, 64, split), shape, sp), want).toExponential(2)
      );
      console.log(
        `emulated ${JSON.stringify(shape)} splits ${sp}: relative L2 ${errs[0]} (f16), ` +
          `${errs[1]} (split)`,
      );
    }
  }
  Deno.exit(0);
}

if (Deno.args.includes("--print")) {
  console.log(hmmaWGSL({ DK: 128, DV: 128, T: 32, split: true, unroll: true, syntax: "template" }));
  Deno.exit(0);
}

/** `--dawn-features=a,b`: more Dawn toggles turned on (e.g. `disable_robustness`). */
const extra = Deno.args.find((a) => a.startsWith("--dawn-features="))?.slice(16);
const device = await dawnMatrixDevice(
  [
    `enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia${extra ? `,${extra}` : ""}`,
    "disable-dawn-features=timestamp_quantization",
  ],
  ["timestamp-query", "subgroups", "shader-f16", "chromium-experimental-subgroup-matrix"],
);

type Variant = Omit<HmmaConfig, "DK" | "DV">;

/** Whether the generator takes this variant at this shape's head dims. */
function fits(s: Shape, v: Variant): boolean {
  try {
    hmmaWGSL({ DK: s.DK, DV: s.DV, ...v });
    return true;
  } catch {
    return false;
  }
}

function build(s: Shape, splits: number, data: Data, v: Variant) {
  const workgroups = s.seqs * s.hkv * rowBlocks(s) * splits * (s.DV / 128);
  return protoKernel(
    device,
    hmmaWGSL({ DK: s.DK, DV: s.DV, ...v }),
    params(s, splits),
    [halfQueries(s, data.q), data.k, data.v],
    workgroups * pieceFloats(s) * 4,
    workgroups,
  );
}

/** Whether every check shape is within `tolerance` of float64 with this variant. */
async function check(v: Variant, tolerance: number): Promise<boolean> {
  let ok = true;
  for (const { shape, splits } of CHECKS.filter((c) => fits(c.shape, v))) {
    for (const sp of splits) {
      const data = makeData(shape, sp * 11 + shape.rows);
      const got = merge(await runOnce(device, await build(shape, sp, data, v)), shape, sp);
      const err = relativeL2(got, reference(shape, data));
      ok &&= err < tolerance;
      console.log(
        `check ${JSON.stringify(v)} ${JSON.stringify(shape)} splits ${sp}: relative L2 ${
          err.toExponential(2)
        }${err < tolerance ? "" : "  CHECK FAILED"}`,
      );
    }
  }
  return ok;
}

try {
  // Which call syntax compiles (errors printed; the deprecated one warns).
  let syntax: HmmaConfig["syntax"] | undefined;
  for (const sx of ["template", "bool"] as const) {
    const errors = await compileErrors(
      device,
      hmmaWGSL({ DK: 576, DV: 512, T: 64, split: true, unroll: true, syntax: sx }),
    );
    console.log(`syntax ${sx}: ${errors || "compiles"}`);
    if (!errors) {
      syntax = sx;
      break;
    }
  }
  if (!syntax) throw new Error("no call syntax compiles");
  // Session 45's first kernel (loops, T 64; its split remainders were not scaled) as the
  // baseline, then unrolled blocks at tiles of 64 and 128 tokens.
  const variants: (Variant & { tolerance: number })[] = [
    { T: 64, split: false, syntax, tolerance: 1e-3 },
    { T: 64, split: false, unroll: true, syntax, tolerance: 1e-3 },
    { T: 64, split: true, unroll: true, syntax, tolerance: 5e-6 },
    { T: 128, split: false, unroll: true, syntax, tolerance: 1e-3 },
  ];
  for (const v of variants) {
    const { tolerance, ...variant } = v;
    if (!await check(variant, tolerance)) {
      console.log(`  ${JSON.stringify(variant)}: CHECKS FAILED`);
    }
  }

  const cases = await loadCases();
  const rows = await loadCases(new URL("./cases_rows.json", import.meta.url)).catch(() => []);
  const results = [];
  for (const { name, shape: s, splits } of CASES.filter((c) => only.test(c.name))) {
    const cells: string[] = [];
    const bench = [...cases, ...rows].find((c) => c.name === name);
    if (twins && bench) {
      const decoder = await createDecoder({ backend: "webgpu", device });
      try {
        const t = await decoder.timeKernels({ ...makeBenchInput(bench), strategy: "lean" }, {
          runs: 25,
          warmupMs: 400,
          streamMs: 2,
        });
        cells.push(`lean ${t.medianMs.toFixed(4)}/${t.stream!.medianMs.toFixed(4)}`);
        results.push({ name, what: "lean", aloneMs: t.medianMs, streamMs: t.stream!.medianMs });
      } finally {
        await decoder.dispose();
      }
    }
    const data = makeData(s, 7);
    for (const { tolerance: _, ...v } of variants.filter((v) => fits(s, v))) {
      for (const sp of splits) {
        const p = await build(s, sp, data, v);
        const t = await timeWarm(device, p.record, { runs: 25, warmupMs: 400, streamMs: 2 });
        const alone = median(t.samplesMs), stream = median(t.streamSamplesMs!);
        const what = `hmma T${v.T}${v.split ? " split" : ""}${
          v.unroll ? " unrolled" : ""
        } ${p.workgroups} wgs`;
        cells.push(`${what} ${alone.toFixed(4)}/${stream.toFixed(4)}`);
        results.push({ name, what, aloneMs: alone, streamMs: stream });
      }
    }
    const bytes = 2 * s.seqs * s.n * s.hkv * (s.DK + s.DV);
    const flops = 2 * s.seqs * s.hkv * s.rows * s.n * (s.DK + s.DV);
    console.log(
      `${name} (${(bytes / 1e6).toFixed(0)} MB of K+V: ${(bytes / 4.4e9).toFixed(4)} ms at ` +
        `4.4 TB/s; ${(flops / 1e9).toFixed(2)} GFLOP; alone/back to back ms):\n  ${
          cells.join("\n  ")
        }`,
    );
  }
  if (outFile) await Deno.writeTextFile(outFile, JSON.stringify(results, null, 1));
  device.destroy();
} catch (e) {
  console.error(e);
  Deno.exit(1);
}
Deno.exit(0);

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
 * State (H200, bench/notes.md): session 45's one-subgroup variants are 1.5-5x slower than the
 * library's f32 kernels on the same Dawn device (qLen 4 GQA 16k 0.095 against 0.061 ms, MLA b1
 * 32k 1.99 against 0.43); the f16 variants match their emulation (about 2e-4), the split ones do
 * not (the weights' remainders computed in the kernel add nothing on the GPU). Session 46's wide
 * kernels (`--wide`: four subgroups per workgroup, bench/proto_hmma_wide_wgsl.ts) take qLen 4 GQA
 * 16k to 0.049 ms, 0.80x lean's time (f16 grade), and stay slower elsewhere (GQA 32/8 128k 0.35
 * against 0.14, MQA h128/1 32k 0.095 against 0.087, MLA b1 32k 1.40 against 0.43): their matrix
 * loads and products run at 1.1-1.6 TB/s whether K and V come from memory or from L2.
 * Session 47 read the driver's machine code: every matrix load from storage is 2-byte loads
 * (LDG.E.U16, 8 per lane per 16 x 16 matrix), every one from workgroup memory an LDSM. Staged
 * through workgroup memory by 16-byte loads a stage ahead (`staged`, `pipelined`), the kernel
 * takes 0.78-0.80x lean's time on qLen 4 GQA 16k (0.048 ms) and MQA h128/1 32k (0.068), at f16
 * grade; at split precision (`split`: queries and weights as hi + 2^-12 lo, the weights' high
 * parts from their bits) it is f32 grade (1.3e-7 to 4.2e-7) and takes 1.01x and 1.16x. The
 * row-parallel kernel (a `rows` variant, bench/proto_hmma_rows_wgsl.ts: subgroups over blocks of
 * rows sharing each staged tile) takes MQA h128/1 32k to 0.60x (0.052 ms).
 *
 * `--emulate`: the kernel's arithmetic on the CPU (pieces, tiles, f16 rounding of queries and
 * weights, split or not) against float64, on the check shapes: what each variant's error should be.
 *
 * `--wide`: the wide kernels instead, at 1, 2, 4 and 8 times each case's first split count
 * (`--split-factors=1,2` chooses), `--variants=JSON` choosing which (an array of
 * `WideConfig`s or `RowsConfig`s less the head dims, each with its `tolerance` against
 * float64). `--probe=VARIANT`: one variant made and run on its first check shape, each step
 * printed before it starts.
 *
 * Usage: deno run -A --unstable-webgpu --v8-flags=--expose-gc bench/proto_hmma.ts
 *        [--emulate] [--only=REGEX] [--out=FILE] [--print] [--no-twins] [--wide]
 *        [--variants=JSON] [--split-factors=1,2,...] [--probe=VARIANT]
 *        [--dawn-features=TOGGLES]
 */

import { createDecoder } from "../mod.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";
import { loadCases } from "./bench_cases.ts";
import { makeBenchInput } from "./bench_input.ts";
import { compileErrors, dawnMatrixDevice, protoKernel, relativeL2, runOnce } from "./proto_lib.ts";
import {
  CASES,
  CHECKS,
  type Data,
  emulate,
  halfQueries,
  makeData,
  merge,
  params,
  pieceFloats,
  reference,
  rowBlocks,
  type Shape,
} from "./proto_hmma_data.ts";
import { type HmmaConfig, hmmaWGSL } from "./proto_hmma_wgsl.ts";
import { hmmaWideWGSL, type WideConfig } from "./proto_hmma_wide_wgsl.ts";
import { hmmaRowsWGSL, type RowsConfig } from "./proto_hmma_rows_wgsl.ts";

const only = new RegExp(Deno.args.find((a) => a.startsWith("--only="))?.slice(7) ?? ".");
const outFile = Deno.args.find((a) => a.startsWith("--out="))?.slice(6);
const twins = !Deno.args.includes("--no-twins");
const wide = Deno.args.includes("--wide");
/** `--split-factors=1,2`: the wide kernels' splits, as multiples of each case's first. */
const splitFactors =
  (Deno.args.find((a) => a.startsWith("--split-factors="))?.slice(16) ?? "1,2,4,8")
    .split(",").map(Number);

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
  console.log(
    wide
      ? hmmaWideWGSL({ DK: 128, DV: 128, T: 64, W: 4, staged: true })
      : hmmaWGSL({ DK: 128, DV: 128, T: 32, split: true, unroll: true, syntax: "template" }),
  );
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

/**
 * Session 45's one-subgroup kernel, (with `W`) session 46's wide one, or (with `rows`) session
 * 47's row-parallel one.
 */
type Variant =
  | Omit<HmmaConfig, "DK" | "DV">
  | Omit<WideConfig, "DK" | "DV">
  | Omit<RowsConfig, "DK" | "DV">;

function kernelWGSL(s: Shape, v: Variant): string {
  return "rows" in v
    ? hmmaRowsWGSL({ DK: s.DK, DV: s.DV, ...v })
    : "W" in v
    ? hmmaWideWGSL({ DK: s.DK, DV: s.DV, ...v })
    : hmmaWGSL({ DK: s.DK, DV: s.DV, ...v });
}

/** Whether the generator takes this variant at this shape's head dims. */
function fits(s: Shape, v: Variant): boolean {
  try {
    kernelWGSL(s, v);
    return true;
  } catch {
    return false;
  }
}

/** A variant's name in the results. */
function variantName(v: Variant, workgroups: number): string {
  if ("rows" in v) return `rows W${v.W} T${v.T} ${workgroups} wgs`;
  return "W" in v
    ? `wide W${v.W} T${v.T}${v.prefetch ? " prefetch" : ""}${v.staged ? " staged" : ""}${
      v.kLeft ? " K left" : ""
    }${v.split ? " split" : ""}${v.pipelined ? " pipelined" : ""}${v.qStaged ? " q staged" : ""}${
      v.skip ? ` without ${v.skip.join("+")}` : ""
    } ${workgroups} wgs`
    : `hmma T${v.T}${v.split ? " split" : ""}${v.unroll ? " unrolled" : ""} ${workgroups} wgs`;
}

function build(s: Shape, splits: number, data: Data, v: Variant) {
  // A row-parallel workgroup takes W row blocks; every kernel writes one record per row block.
  const blocks = "rows" in v ? Math.ceil(rowBlocks(s) / v.W) : rowBlocks(s);
  const workgroups = s.seqs * s.hkv * blocks * splits * (s.DV / 128);
  return protoKernel(
    device,
    kernelWGSL(s, v),
    params(s, splits),
    [halfQueries(s, data.q), data.k, data.v],
    s.seqs * s.hkv * rowBlocks(s) * splits * (s.DV / 128) * pieceFloats(s) * 4,
    workgroups,
  );
}

/** Whether every check shape is within `tolerance` of float64 with this variant. */
async function check(v: Variant, tolerance: number): Promise<boolean> {
  let ok = true;
  for (const { shape, splits } of CHECKS.filter((c) => fits(c.shape, v))) {
    for (const sp of splits) {
      const data = makeData(shape, sp * 11 + shape.rows);
      if (wide) console.log(`checking ${JSON.stringify(v)} ${JSON.stringify(shape)} splits ${sp}`);
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

const probe = Deno.args.find((a) => a.startsWith("--probe="))?.slice(8);
if (probe) {
  // `--probe=VARIANT`: one variant's pipeline made and run once on its first check shape, each
  // step printed before it starts (a crash in Dawn or the driver ends the process: the last line
  // names the step).
  const v = JSON.parse(probe) as Variant;
  const { shape, splits } = CHECKS.find((c) => fits(c.shape, v))!;
  const data = makeData(shape, 5);
  console.log(`probe ${probe} on ${JSON.stringify(shape)}: compile errors:`);
  console.log(`  ${await compileErrors(device, kernelWGSL(shape, v)) || "none"}`);
  console.log("probe: making the pipeline");
  const p = await build(shape, splits[0], data, v);
  for (const run of [1, 2, 3]) {
    console.log(`probe: run ${run}`);
    const got = merge(await runOnce(device, p), shape, splits[0]);
    console.log(
      `probe: ran; relative L2 ${relativeL2(got, reference(shape, data)).toExponential(2)}`,
    );
  }
  console.log("probe: again at two splits");
  const p2 = await build(shape, 2, data, v);
  const got = merge(await runOnce(device, p2), shape, 2);
  console.log(
    `probe: ran; relative L2 ${relativeL2(got, reference(shape, data)).toExponential(2)}`,
  );
  Deno.exit(0);
}

try {
  // Which call syntax compiles (errors printed; the deprecated one warns). The wide kernels take
  // the template syntax, so `--wide` skips the probe.
  let syntax: HmmaConfig["syntax"] | undefined = wide ? "template" : undefined;
  for (const sx of wide ? [] : ["template", "bool"] as const) {
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
  // `--wide`: session 46's kernels of W subgroups per workgroup instead, at one to eight times
  // the cases' splits (more workgroups resident per multiprocessor).
  // `--variants=JSON`: the wide variants to run instead (each with its tolerance).
  const chosen = Deno.args.find((a) => a.startsWith("--variants="))?.slice(11);
  const variants: (Variant & { tolerance: number })[] = chosen ? JSON.parse(chosen) : wide
    ? [
      { T: 64, W: 4, tolerance: 1e-3 },
      { T: 64, W: 4, prefetch: true, tolerance: 1e-3 },
      { T: 128, W: 4, tolerance: 1e-3 },
      { T: 128, W: 8, prefetch: true, tolerance: 1e-3 },
    ]
    : [
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
      for (const sp of wide ? splitFactors.map((x) => x * splits[0]) : splits) {
        const p = await build(s, sp, data, v);
        const t = await timeWarm(device, p.record, { runs: 25, warmupMs: 400, streamMs: 2 });
        const alone = median(t.samplesMs), stream = median(t.streamSamplesMs!);
        const what = variantName(v, p.workgroups);
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

/**
 * Diagnostic of issue 13 (session 27): the SPIR-V that Deno's WebGPU (naga) makes of the decode
 * kernels, for `bench/vk_pipeline_stats.c` to compile with a GPU's own driver and report its
 * registers and spills (WebGPU reports neither). Runs on lavapipe: each kernel's pipeline is
 * created in a child process with Mesa's `MESA_SPIRV_DUMP_PATH` set, and the child is stopped
 * once Mesa has written the module (lavapipe's own compile can take minutes).
 *
 * Usage: deno run -A --unstable-webgpu bench/dump_spirv.ts --out=DIR [--only=NAME|...] [--dawn]
 * Writes DIR/<name>.spv and DIR/<name>.wgsl for every kernel of {@linkcode KERNELS}; with
 * `--dawn`, Dawn's (Tint's) SPIR-V instead of Deno's, as DIR/<name>.dawn.spv.
 *
 * @module
 */

import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { mergeKernelWGSL } from "../src/kernels/merge_kernel.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";
import type { KernelTuning } from "../src/gpu/kernel_tuning.ts";
import { createPlan } from "../src/plan/plan.ts";
import type { KVDtype } from "../src/core/problem.ts";
import type { PagedKV } from "../src/plan/kv_addressing.ts";
import { registeredDawn, requestDevice } from "../src/gpu/gpu_runtime.ts";
import {
  fenceIssue,
  INT8_BY_CONVERSION,
  INT8_BY_HALVES,
  int8Unpack,
  pinPrefetch,
  reloadSharedQuery,
} from "./diag_lib.ts";

/** A decode kernel to dump: the shape it is planned for and the tuning it is built with. */
interface DumpKernel {
  rows: number;
  headDim: number;
  kvDtype: KVDtype;
  tuning?: KernelTuning;
  workgroupSize?: number;
  tileTokens?: number;
  /** A rewrite of the WGSL (a diagnostic's, e.g. `reloadSharedQuery`). */
  rewrite?: (code: string) => string;
  /** The paged cache's kernel (pages of the cache's size, NHD) instead of the dense one. */
  paged?: boolean;
  /** The merge kernel of the spec instead of the decode kernel. */
  merge?: boolean;
  /** 8-bit K/V with one scale per (token, KV head), as the paged cache keeps them. */
  tokenScales?: boolean;
  /** 8-bit K/V of a paged cache with per-tensor scales (the layer's pair in the scale table). */
  layerScales?: boolean;
}

const qsSplit = { queryShared: true, prefetch: "split" as const };
/** A 4-row d128 f16 kernel with a tuning (and a diagnostic's rewrite). */
function f16Rows4(tuning: KernelTuning, rewrite?: (code: string) => string): DumpKernel {
  return { rows: 4, headDim: 128, kvDtype: "f16", tuning, rewrite };
}

/** A 4-row d128 int8 kernel with another `unpack_word`. */
function int8Rows4(unpackWord: string): DumpKernel {
  return { rows: 4, headDim: 128, kvDtype: "int8", rewrite: int8Unpack(unpackWord) };
}

/** The kernels of the benchmark's classes and the 4-row class's alternatives. */
const KERNELS: Record<string, DumpKernel> = {
  "r1_d128_f16": { rows: 1, headDim: 128, kvDtype: "f16" },
  "r4_d128_f16": { rows: 4, headDim: 128, kvDtype: "f16" },
  "r4_d128_int8": { rows: 4, headDim: 128, kvDtype: "int8" },
  "r4_d128_e4m3": { rows: 4, headDim: 128, kvDtype: "fp8e4m3" },
  "r8_d128_f16": { rows: 8, headDim: 128, kvDtype: "f16" },
  "r4_d64_f16": { rows: 4, headDim: 64, kvDtype: "f16" },
  "r4_d256_f16": { rows: 4, headDim: 256, kvDtype: "f16" },
  "r4_d128_f16_u2": f16Rows4({ unroll: 2 }),
  "r4_d128_f16_l16": f16Rows4({ lanes: 16 }),
  "r4_d128_f16_split": f16Rows4({ prefetch: "split" }),
  "r4_d128_f16_qs": f16Rows4(qsSplit),
  "r4_d128_f16_rs2": f16Rows4({ rowSets: 2 }),
  "r4_d128_f16_nopf": f16Rows4({ prefetch: false }),
  // Session 27's register experiments (bench/diag_floors.ts variants of the same names; the
  // 512-thread kernels ran at commit 5d760bc, whose planner allowed them).
  "r4_d128_f16_w256": { rows: 4, headDim: 128, kvDtype: "f16", workgroupSize: 256 },
  "r4_d128_f16_qsr": f16Rows4(qsSplit, reloadSharedQuery),
  "r4_d128_f16_l16_qsr": f16Rows4({ ...qsSplit, lanes: 16 }, reloadSharedQuery),
  // Session 28: the prefetch's loads used before the step's split (NVIDIA sinks them otherwise).
  "r4_d128_f16_pin": f16Rows4({}, pinPrefetch),
  "r4_d128_f16_pink": f16Rows4({}, (c) => pinPrefetch(c, "k")),
  "r4_d128_f16_u2_pin": f16Rows4({ unroll: 2 }, pinPrefetch),
  "r4_d128_f16_l16_pin": f16Rows4({ lanes: 16 }, pinPrefetch),
  "r4_d128_int8_pin": { rows: 4, headDim: 128, kvDtype: "int8", rewrite: pinPrefetch },
  "r1_d128_f16_pin": { rows: 1, headDim: 128, kvDtype: "f16", rewrite: pinPrefetch },
  "r4_d128_f16_rs2_pin": f16Rows4({ rowSets: 2 }, pinPrefetch),
  "r4_d128_f16_qsr_pin": f16Rows4(qsSplit, (c) => pinPrefetch(reloadSharedQuery(c))),
  // The paged kernels of the classes whose paged time is furthest from dense (d256: +7.4%).
  "r4_d256_f16_paged": { rows: 4, headDim: 256, kvDtype: "f16", paged: true },
  "r4_d128_f16_paged": { rows: 4, headDim: 128, kvDtype: "f16", paged: true },
  // ... and with runs of tokens per group: two page-table reads per group and step.
  "r4_d256_f16_paged_runs": {
    rows: 4,
    headDim: 256,
    kvDtype: "f16",
    paged: true,
    tuning: { tokenRuns: true },
  },
  "r4_d128_f16_paged_runs": {
    rows: 4,
    headDim: 128,
    kvDtype: "f16",
    paged: true,
    tuning: { tokenRuns: true },
  },
  "r4_d256_f16_runs": { rows: 4, headDim: 256, kvDtype: "f16", tuning: { tokenRuns: true } },
  "r4_d128_f16_runs": { rows: 4, headDim: 128, kvDtype: "f16", tuning: { tokenRuns: true } },
  // int8 unpacked by signed-byte conversions (before session 28) and as f16 halves (the
  // library's are f32 magic numbers since).
  "r4_d128_int8_i2f": int8Rows4(INT8_BY_CONVERSION),
  "r4_d128_int8_halves": int8Rows4(INT8_BY_HALVES),
  // Session 29: a barrier after the next step's requests (a code-motion fence, no use of them).
  "r4_d128_f16_bar": f16Rows4({}, fenceIssue),
  "r4_d128_f16_split_bar": f16Rows4({ prefetch: "split" }, fenceIssue),
  "r4_d128_f16_qsr_bar": f16Rows4({ queryShared: true }, (c) => fenceIssue(reloadSharedQuery(c))),
  "r4_d128_f16_qsr_split_bar": f16Rows4(qsSplit, (c) => fenceIssue(reloadSharedQuery(c))),
  "r4_d128_f16_u2_bar": f16Rows4({ unroll: 2 }, fenceIssue),
  "r4_d128_int8_bar": { rows: 4, headDim: 128, kvDtype: "int8", rewrite: fenceIssue },
  "r1_d128_f16_bar": { rows: 1, headDim: 128, kvDtype: "f16", rewrite: fenceIssue },
  // ... and twice the tokens per step in the registers the query rows leave (read from
  // workgroup memory every step): 128 words of K and V in flight per lane instead of 64.
  "r4_d128_f16_qsr_u8": {
    ...f16Rows4({ queryShared: true, unroll: 8, prefetch: false }, reloadSharedQuery),
    tileTokens: 128,
  },
  "r4_d128_f16_qsr_u8_split": {
    ...f16Rows4({ queryShared: true, unroll: 8, prefetch: "split" }, reloadSharedQuery),
    tileTokens: 128,
  },
  "r4_d128_f16_u8_nopf": { ...f16Rows4({ unroll: 8, prefetch: false }), tileTokens: 128 },
  "r4_d128_f16_rs2_u8": f16Rows4({ rowSets: 2, unroll: 8, prefetch: false }),
  // 8-bit rows at the unroll the kernel choice means them to have (twice f16's), which tiles of
  // 64 tokens cap at f16's (16 groups x 4 tokens); and twice that again.
  "r4_d128_int8_t128": { rows: 4, headDim: 128, kvDtype: "int8", tileTokens: 128 },
  // Session 39: the per-tensor E4M3 kernel (per-step NaN test, base read ahead, early loads)
  // at 128-token tiles, where its unroll is the table's 8.
  "r4_d128_e4m3_t128": { rows: 4, headDim: 128, kvDtype: "fp8e4m3", tileTokens: 128 },
  "r4_d128_int8_u16": {
    rows: 4,
    headDim: 128,
    kvDtype: "int8",
    tileTokens: 256,
    tuning: { unroll: 16 },
  },
  // ... and with V unpacked one token at a time inside the softmax update (`vPerToken`).
  "r4_d128_f16_vpt": f16Rows4({ vPerToken: true }),
  "r4_d128_int8_vpt": { rows: 4, headDim: 128, kvDtype: "int8", tuning: { vPerToken: true } },
  "r4_d128_int8_t128_vpt": {
    rows: 4,
    headDim: 128,
    kvDtype: "int8",
    tileTokens: 128,
    tuning: { vPerToken: true },
  },
  "r4_d128_f16_qsr_u8_vpt": {
    ...f16Rows4(
      { queryShared: true, unroll: 8, prefetch: false, vPerToken: true },
      reloadSharedQuery,
    ),
    tileTokens: 128,
  },
  "r1_d128_f16_vpt": { rows: 1, headDim: 128, kvDtype: "f16", tuning: { vPerToken: true } },
  // ... and with each lane adding and weighing one row's scores (`rowScatter`).
  "r4_d128_f16_rsc": f16Rows4({ rowScatter: true }),
  "r4_d128_int8_rsc": { rows: 4, headDim: 128, kvDtype: "int8", tuning: { rowScatter: true } },
  // Session 34: packed f16 over f16 K (`halfMath`), and over its V too (`halfValues`).
  "r4_d128_f16_h16": f16Rows4({ halfMath: true }),
  "r4_d128_f16_hv": f16Rows4({ halfMath: true, halfValues: true }),
  // ... and the 8-bit kernels with per-token scales (E4M3's is 1.2x its per-tensor one's time).
  "r4_d128_e4m3_tok": { rows: 4, headDim: 128, kvDtype: "fp8e4m3", tokenScales: true },
  "r4_d128_e4m3_tok_vpt": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    tokenScales: true,
    tuning: { vPerToken: true },
  },
  "r4_d128_int8_tok": { rows: 4, headDim: 128, kvDtype: "int8", tokenScales: true },
  // Session 35: the per-token-scale kernels with early loads (their scale pairs' too), and the
  // paged int8 kernel with and without them.
  "r4_d128_e4m3_tok_early": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    tokenScales: true,
    tuning: { earlyLoads: true },
  },
  "r4_d128_int8_tok_early": {
    rows: 4,
    headDim: 128,
    kvDtype: "int8",
    tokenScales: true,
    tuning: { earlyLoads: true },
  },
  "r4_d128_int8_paged": { rows: 4, headDim: 128, kvDtype: "int8", tokenScales: true, paged: true },
  "r4_d128_int8_paged_early": {
    rows: 4,
    headDim: 128,
    kvDtype: "int8",
    tokenScales: true,
    paged: true,
    tuning: { earlyLoads: true },
  },
  // Session 36: the paged 8-bit kernels (per-token and per-layer scales) with page slices (the
  // default) and without (one page read and page arithmetic per token).
  "r4_d128_int8_paged_slices": {
    rows: 4,
    headDim: 128,
    kvDtype: "int8",
    tokenScales: true,
    paged: true,
  },
  "r4_d128_int8_paged_noslices": {
    rows: 4,
    headDim: 128,
    kvDtype: "int8",
    tokenScales: true,
    paged: true,
    tuning: { pageSlices: false },
  },
  "r4_d128_int8_layer_paged": {
    rows: 4,
    headDim: 128,
    kvDtype: "int8",
    layerScales: true,
    paged: true,
  },
  "r4_d128_int8_layer_paged_noslices": {
    rows: 4,
    headDim: 128,
    kvDtype: "int8",
    layerScales: true,
    paged: true,
    tuning: { pageSlices: false },
  },
  "r4_d128_e4m3_layer_paged": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    layerScales: true,
    paged: true,
  },
  "r4_d128_e4m3_layer_paged_early": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    layerScales: true,
    paged: true,
    tuning: { earlyLoads: true },
  },
  "r4_d128_e4m3_layer_paged_noslices": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    layerScales: true,
    paged: true,
    tuning: { pageSlices: false },
  },
  // Session 37: E4M3 with one NaN-code test per step for K and one for V (`nanSteps`).
  "r4_d128_e4m3_nans": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    tuning: { nanSteps: true },
  },
  "r4_d128_e4m3_tok_nans": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    tokenScales: true,
    tuning: { nanSteps: true },
  },
  "r4_d128_e4m3_layer_paged_nans": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    layerScales: true,
    paged: true,
    tuning: { nanSteps: true },
  },
  "r4_d128_e4m3_nans_early": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    tuning: { nanSteps: true, earlyLoads: true },
  },
  "r4_d128_e4m3_layer_paged_nans_late": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    layerScales: true,
    paged: true,
    tuning: { nanSteps: true, earlyLoads: false },
  },
  "r4_d128_e4m3_layer_paged_nans_eplate": {
    rows: 4,
    headDim: 128,
    kvDtype: "fp8e4m3",
    layerScales: true,
    paged: true,
    tuning: { nanSteps: true, earlyPages: false },
  },
  "r1_d128_e4m3": { rows: 1, headDim: 128, kvDtype: "fp8e4m3" },
  "r1_d128_e5m2": { rows: 1, headDim: 128, kvDtype: "fp8e5m2" },
  "r1_d128_int8": { rows: 1, headDim: 128, kvDtype: "int8" },
  "r1_d128_e4m3_nans": { rows: 1, headDim: 128, kvDtype: "fp8e4m3", tuning: { nanSteps: true } },
  // The 1-row dense E4M3 kernel before session 38 (a NaN test per word, no early loads).
  "r1_d128_e4m3_word": {
    rows: 1,
    headDim: 128,
    kvDtype: "fp8e4m3",
    tuning: { nanSteps: false },
  },
  "r1_d128_e4m3_layer_paged": {
    rows: 1,
    headDim: 128,
    kvDtype: "fp8e4m3",
    layerScales: true,
    paged: true,
  },
  // The merge kernels of the 4-row d128 and 1-row d128 classes.
  "merge_r4_d128": { rows: 4, headDim: 128, kvDtype: "f16", merge: true },
  "merge_r1_d128": { rows: 1, headDim: 128, kvDtype: "f16", merge: true },
};

/** A paged addressing of `pageSize`-token pages (only its kind and page size reach the spec). */
function pagedKV(pageSize: number): PagedKV {
  return {
    kind: "paged",
    pageSize,
    pageShift: Math.log2(pageSize),
    numPages: 1,
    pages: new Uint32Array(1),
    pageOffsets: new Uint32Array(2),
  };
}

/** The WGSL of a kernel as the library builds it on a 32-lane device with subgroups. */
function kernelWGSL(k: DumpKernel, enableDirective: boolean): string {
  const plan = createPlan({
    seqLens: [65536],
    numHeads: 8 * k.rows,
    numKVHeads: 8,
    headDim: k.headDim,
    kvDtype: k.kvDtype,
  }, { grid: 264, workgroupSize: k.workgroupSize, tileTokens: k.tileTokens });
  // shader-f16 as the H200 grants it to Deno's WebGPU (only `halfMath` tunings use it).
  const caps = { subgroups: true, subgroupMinSize: 32, shaderF16: true };
  const scales = k.tokenScales ? "token" as const : k.layerScales ? "layer" as const : undefined;
  const spec = k.paged
    ? kernelSpec({ ...plan, kv: pagedKV(16) }, caps, k.tuning ?? {}, true, scales)
    : kernelSpec(plan, caps, k.tuning ?? {}, false, scales);
  const code = k.merge
    ? mergeKernelWGSL(spec, { enableDirective })
    : decodeKernelWGSL(spec, { enableDirective });
  return k.rewrite ? k.rewrite(code) : code;
}

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const dawn = Deno.args.includes("--dawn");

if (flag("child")) {
  // The child: create the pipeline (Mesa dumps its SPIR-V on the way) and wait to be stopped.
  const code = await Deno.readTextFile(flag("child")!);
  let gpu: GPU = navigator.gpu;
  if (dawn) {
    await import("../dawn.ts");
    gpu = await registeredDawn();
  }
  const adapter = await gpu.requestAdapter();
  const device = await requestDevice(adapter!);
  const module = device.createShaderModule({ code });
  device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  Deno.exit(0);
}

const out = flag("out");
if (!out) throw new TypeError("--out=DIR is required");
await Deno.mkdir(out, { recursive: true });
const only = flag("only")?.split("|");
for (const [name, k] of Object.entries(KERNELS)) {
  if (only && !only.includes(name)) continue;
  const file = `${out}/${name}${dawn ? ".dawn" : ""}`;
  await Deno.writeTextFile(`${file}.wgsl`, kernelWGSL(k, dawn));
  const dumpDir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-webgpu",
      import.meta.filename!,
      `--child=${file}.wgsl`,
      ...(dawn ? ["--dawn"] : []),
    ],
    env: { MESA_SPIRV_DUMP_PATH: dumpDir },
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  // The kernel is the only module of its size (wgpu's and Mesa's own are a few KB; a merge
  // kernel's is more than 5 KB, a decode kernel's more than 12 KB).
  let found: string | undefined;
  for (let waited = 0; waited < 120_000 && !found; waited += 200) {
    await new Promise((r) => setTimeout(r, 200));
    for await (const e of Deno.readDir(dumpDir)) {
      const path = `${dumpDir}/${e.name}`;
      if ((await Deno.stat(path)).size > (k.merge ? 5_000 : 12_000)) found = path;
    }
  }
  try {
    child.kill("SIGKILL");
  } catch { /* already ended */ }
  await child.status;
  if (!found) {
    console.log(`${name}: no SPIR-V dumped`);
    continue;
  }
  await new Promise((r) => setTimeout(r, 300));
  await Deno.copyFile(found, `${file}.spv`);
  await Deno.remove(dumpDir, { recursive: true });
  console.log(`${file}.spv: ${(await Deno.stat(`${file}.spv`)).size} bytes`);
}

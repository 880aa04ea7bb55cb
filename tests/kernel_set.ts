/**
 * The fixed kernel set of the software-adapter GPU tests.
 *
 * On a software adapter (lavapipe, SwiftShader) every new kernel specialisation costs seconds to
 * minutes of LLVM compilation with a cold shader cache, so the GPU tests there draw their shapes
 * from a small fixed set of kernel classes that still reaches every code path: each KV dtype,
 * lane counts 1, 2, 4, 8 and 16, rows per block 1, 2, 4, 6 and 8, one and two row sets, subgroup
 * and workgroup-memory reductions, tile sizes 16 to 256, KV windows (the same kernels over
 * smaller bindings), paged reads, the merge, the attention variants (one family with every
 * variant flag on at once, and the same over FP8 K/V), ragged query lengths (the qLen 2 kernel), MLA's wide-row class
 * (32 padded lanes, V rows of their own length) and the tiled kernel's 16-row matrix blocks (plain,
 * every variant flag, FP8 with per-token scales). Mesa's shader cache then compiles each class
 * once per run. The runner-format tests (tests/runner_formats_test.ts) add one paged family of
 * the paged tests' shape (f16 KV, 8/2 heads, d64) in HND pages, with f32 and with f16 queries
 * and outputs: a decode kernel each, and one merge kernel for the f16 output. The kernel-option
 * tests (tests/kernel_options_test.ts) add tuned kernels of one GQA 8/2 d32 shape (split
 * prefetch with shared query rows over f16 and int8 K/V, packed f16 dot products) through
 * decoders of their own, and the NaN-step tests (tests/nan_steps_test.ts) FP8 E4M3 kernels of
 * that shape with and without a NaN-code test per word. The token-run tests
 * (tests/token_runs_test.ts) add per-tensor FP8 E4M3 kernels of GQA 8/2 d64 with whole
 * prefetch (runs of four tokens, early loads), dense and paged (pages of 16 and 1), through a
 * decoder and an encoder of their own. On a hardware GPU,
 * or with
 * `LEAN_TEST_EXHAUSTIVE=1` (`deno task test:gpu`), the tests draw from the whole shape space.
 *
 * The guard ({@linkcode guardKernelSet}) makes the set binding: a decode call on a software
 * adapter whose kernel class is not in the set fails with a message naming the class, so the
 * set cannot grow by accident.
 *
 * @module
 */

import type { DecodeInput, DecodeShape, KernelTuning, KVDtype } from "../mod.ts";
import { tileConfig, validateInput, validateShape } from "../plan.ts";
import { summarizeAdapter } from "../src/gpu/gpu_runtime.ts";
import type { CaseSpec } from "./helpers.ts";

/** A shape family: everything of a decode shape that decides its kernel, but the lengths. */
export interface KernelFamily {
  readonly numHeads: number;
  readonly numKVHeads: number;
  readonly headDim: number;
  /** V's head dim, when it differs from `headDim` (MLA-style). */
  readonly headDimV?: number;
  readonly qLen: number;
  readonly kvDtype: KVDtype;
}

/**
 * GQA 8/2 with f32 KV at d64: 4 rows per block in two row sets, 8 lanes (the family most tests
 * use).
 */
export const F32_GQA: KernelFamily = {
  numHeads: 8,
  numKVHeads: 2,
  headDim: 64,
  qLen: 1,
  kvDtype: "f32",
};
/** MHA with f16 KV at d128: 1 row per block, 8 lanes with subgroups, 16 without. */
export const F16_MHA: KernelFamily = {
  numHeads: 4,
  numKVHeads: 4,
  headDim: 128,
  qLen: 1,
  kvDtype: "f16",
};
/** MQA 3/1 with bf16 KV at d96 and qLen 2: 6 rows per block (two row sets of 3), 4 lanes, causal rows. */
export const BF16_Q2: KernelFamily = {
  numHeads: 3,
  numKVHeads: 1,
  headDim: 96,
  qLen: 2,
  kvDtype: "bf16",
};
/** MHA with f16 KV at d8: one lane per token (no reduction at all). */
export const F16_D8: KernelFamily = {
  numHeads: 2,
  numKVHeads: 2,
  headDim: 8,
  qLen: 1,
  kvDtype: "f16",
};

/**
 * GQA 4/2 at d16 (2 rows per block, 2 or 4 lanes), in every KV dtype: the small shape of the
 * validation and runner tests, cheap to compile.
 */
export const SMALL_GQA: KernelFamily = {
  numHeads: 4,
  numKVHeads: 2,
  headDim: 16,
  qLen: 1,
  kvDtype: "f32",
};

/**
 * The 8-bit KV formats: SMALL_GQA (d16, one 16-byte load per head row) in each of int8,
 * fp8e4m3 and fp8e5m2, each with per-tensor and per-token scales (the scale mode is part of the
 * pipeline, not of the class); and int8 at d8, whose 8-byte head rows are read in 8-byte loads.
 */
export const KV8_FAMILIES: readonly KernelFamily[] = [
  { ...SMALL_GQA, kvDtype: "int8" },
  { ...SMALL_GQA, kvDtype: "fp8e4m3" },
  { ...SMALL_GQA, kvDtype: "fp8e5m2" },
  { ...F16_D8, kvDtype: "int8" },
];

/** F32_GQA with qLen 2: 8 rows per block, the most a block holds (causal rows in GQA). */
export const F32_GQA_Q2: KernelFamily = { ...F32_GQA, qLen: 2 };

/**
 * The attention variants' family: GQA 4/2 at d16 with qLen 2 (4 rows per block, rows at two
 * positions), compiled with every variant flag on at once (sliding window, soft-cap, ALiBi,
 * sinks): one kernel class covers each flag's code. Shapes must set all four variant fields.
 */
export const VARIANTS_GQA_Q2: KernelFamily = { ...SMALL_GQA, qLen: 2 };

/**
 * The variants' family over FP8 (E4M3) K/V, every variant flag on: where the two meet in the
 * kernel (per-token K scales applied to the dot products before the soft-cap and ALiBi, a
 * per-tensor V scale on the output beside the sink's rescale, the head table beside the scale
 * table: 9 storage bindings), which neither family alone compiles
 * (tests/combinations_gpu_test.ts; per-tensor and per-token scales are two pipelines of it).
 */
export const VARIANTS_KV8: KernelFamily = { ...VARIANTS_GQA_Q2, kvDtype: "fp8e4m3" };

/** The kernel class suffix of a shape's variant flags (empty for the plain variant). */
function variantSuffix(shape: Partial<DecodeShape>): string {
  const on = [
    shape.slidingWindow !== undefined ? "window" : "",
    shape.logitsSoftCap !== undefined ? "softcap" : "",
    shape.alibiSlopes !== undefined ? "alibi" : "",
    shape.sinks !== undefined ? "sinks" : "",
  ].filter((f) => f);
  return on.length === 0 ? "" : ` variants ${on.join("+")}`;
}

/** Variant fields with every flag on, for {@linkcode VARIANTS_GQA_Q2}'s class key. */
const ALL_VARIANTS: Partial<DecodeShape> = {
  slidingWindow: 1,
  logitsSoftCap: 1,
  alibiSlopes: new Float32Array(),
  sinks: new Float32Array(),
};

/**
 * Ragged batches (`qLens` of 1 and 2) compile F32_GQA_Q2's kernel: the block geometry follows
 * the largest query length, each sequence masks the rows past its own.
 */
export const RAGGED_GQA: KernelFamily = F32_GQA_Q2;

/**
 * MLA-like wide rows, run without subgroups: 4 query heads over one KV head, f32 K rows of 272
 * and V rows of 264. Head dims above 256 take MLA's kernel class (32 lanes per token, 4 rows per
 * block), so this cheap shape covers what MLA's 576/512 adds: V rows addressed apart from K's,
 * lane rounds padded on K (68 chunks) and V (66), the 32-lane workgroup-memory reduction, and
 * the merge of rows longer than its workgroup. tests/mla_pages_test.ts also reads it from a
 * runner's HND pages (the same class: one more paged pipeline of it, V rows addressed per head).
 */
export const MLA_WIDE: KernelFamily = {
  numHeads: 4,
  numKVHeads: 1,
  headDim: 272,
  headDimV: 264,
  qLen: 1,
  kvDtype: "f32",
};

/**
 * The tiled kernel's family (tests/tiled_test.ts): 8 query heads over one KV head with qLen 2
 * (16 rows: one 16-row matrix block, rows at two positions), f16 K rows of 288 and V rows of 64
 * (8 threads per V row, so 8 token groups add their outputs through workgroup memory). Also
 * compiled with every variant flag on, and over FP8 E4M3 K/V (per-token scales).
 */
export const TILED_MQA: KernelFamily = {
  numHeads: 8,
  numKVHeads: 1,
  headDim: 288,
  headDimV: 64,
  qLen: 2,
  kvDtype: "f16",
};

/** The families of the set, in the order property tests draw them. */
export const KERNEL_FAMILIES: readonly KernelFamily[] = [
  F32_GQA,
  F16_MHA,
  BF16_Q2,
  F16_D8,
  F32_GQA_Q2,
];

/** Plan geometries of the set: tile sizes and workgroup sizes, for the F32_GQA family. */
export const KERNEL_GEOMETRIES: ReadonlyArray<{ tileTokens: number; workgroupSize: number }> = [
  { tileTokens: 16, workgroupSize: 128 },
  { tileTokens: 32, workgroupSize: 32 },
  { tileTokens: 256, workgroupSize: 128 },
  { tileTokens: 256, workgroupSize: 256 },
];

/** What decides a dense kernel: head dim, dtype, rows per block, tile, workgroup, reduction. */
function classKey(
  c: {
    headDim: number;
    headDimV?: number;
    kvDtype: KVDtype;
    rowsPerBlock: number;
    tileTokens: number;
    workgroupSize: number;
  },
  subgroups: boolean,
): string {
  const dv = (c.headDimV ?? c.headDim) === c.headDim ? "" : `/${c.headDimV}`;
  return `d${c.headDim}${dv} ${c.kvDtype} rows/block ${c.rowsPerBlock} tile ${c.tileTokens} ` +
    `workgroup ${c.workgroupSize}${subgroups ? "" : " no-subgroups"}`;
}

function familyKey(
  f: KernelFamily,
  geometry: { tileTokens?: number; workgroupSize?: number } = {},
  subgroups = true,
): string {
  const tiles = tileConfig({
    headDim: f.headDim,
    headDimV: f.headDimV,
    kvDtype: f.kvDtype,
    rowsPerGroup: (f.numHeads / f.numKVHeads) * f.qLen,
  }, { ...geometry, matrixBlocks: true });
  return classKey(
    { ...tiles, headDim: f.headDim, headDimV: f.headDimV, kvDtype: f.kvDtype },
    subgroups,
  );
}

/** The kernel classes a software adapter may compile. */
export const KERNEL_SET: ReadonlySet<string> = new Set([
  ...KERNEL_FAMILIES.map((f) => familyKey(f)),
  familyKey(MLA_WIDE, {}, false),
  familyKey(TILED_MQA),
  familyKey(TILED_MQA) + variantSuffix(ALL_VARIANTS),
  familyKey({ ...TILED_MQA, kvDtype: "fp8e4m3" }),
  ...(["f32", "f16", "bf16"] as const).map((kvDtype) => familyKey({ ...SMALL_GQA, kvDtype })),
  ...KV8_FAMILIES.map((f) => familyKey(f)),
  ...KERNEL_GEOMETRIES.map((g) => familyKey(F32_GQA, g)),
  // The workgroup-memory reduction, at 1 row (16 lanes) and 4 rows (caller devices without
  // the subgroups feature).
  familyKey(F16_MHA, {}, false),
  familyKey(F32_GQA, {}, false),
  // Every variant flag at once (tests/variants_test.ts), also over FP8 K/V
  // (tests/combinations_gpu_test.ts).
  familyKey(VARIANTS_GQA_Q2) + variantSuffix(ALL_VARIANTS),
  familyKey(VARIANTS_KV8) + variantSuffix(ALL_VARIANTS),
]);

/** Decoder options that change the kernel. */
export interface KernelOptions {
  tileTokens?: number;
  workgroupSize?: number;
  kernel?: KernelTuning;
}

/**
 * The kernel class a decode call compiles, as named in {@linkcode KERNEL_SET}. Tuning beyond
 * switching subgroups off (lanes, unroll, prefetch) is outside every class.
 */
export function kernelClass(shape: DecodeShape, options: KernelOptions = {}): string {
  const { lanes, unroll, prefetch } = options.kernel ?? {};
  if (lanes !== undefined || unroll !== undefined || prefetch !== undefined) {
    return `tuned kernel ${JSON.stringify(options.kernel)}`;
  }
  // Ragged batches: the block geometry follows the largest query length.
  const qLen = shape.qLens === undefined ? shape.qLen ?? 1 : Math.max(...Array.from(shape.qLens));
  const kvDtype = shape.kvDtype ?? "f32";
  const tiles = tileConfig({
    headDim: shape.headDim,
    headDimV: shape.headDimV,
    kvDtype,
    rowsPerGroup: (shape.numHeads / shape.numKVHeads) * qLen,
  }, {
    tileTokens: options.tileTokens,
    workgroupSize: options.workgroupSize,
    matrixBlocks: true,
  });
  return classKey(
    { ...tiles, headDim: shape.headDim, headDimV: shape.headDimV, kvDtype },
    options.kernel?.subgroups !== false,
  ) + variantSuffix(shape);
}

/**
 * Throws when a decode call would compile a kernel outside {@linkcode KERNEL_SET}. Shapes the
 * decoder rejects anyway (bad input) pass through, so validation tests keep their errors.
 */
export function assertInKernelSet(shape: DecodeShape, options: KernelOptions = {}): void {
  let key: string;
  try {
    // Inputs the decoder rejects (their data too) keep their errors.
    if ("q" in shape) validateInput(shape as DecodeInput);
    else validateShape(shape);
    key = kernelClass(shape, options);
  } catch {
    return; // the decoder reports the bad shape
  }
  if (!KERNEL_SET.has(key)) {
    throw new Error(
      `kernel class outside the software-adapter set: ${key}. Use a family of ` +
        "tests/kernel_set.ts, or mark the test exhaustive (it then runs on hardware GPUs and " +
        "in deno task test:gpu)",
    );
  }
}

/** An environment variable, or undefined without permission to read it. */
export function envVar(name: string): string | undefined {
  const perm = Deno.permissions.querySync({ name: "env", variable: name });
  return perm.state === "granted" ? Deno.env.get(name) : undefined;
}

/** `LEAN_TEST_EXHAUSTIVE=1` (`deno task test:gpu`): every shape on every backend, also software. */
export const EXHAUSTIVE_ENV: boolean = envVar("LEAN_TEST_EXHAUSTIVE") === "1";

/** Whether an adapter description names a software rasteriser (lavapipe, SwiftShader, WARP). */
export function isSoftwareAdapter(description: string): boolean {
  return summarizeAdapter({ description } as GPUAdapterInfo).software;
}

/** How a GPU test behaves on a software adapter. */
export interface SoftwareOptions {
  /**
   * The test needs kernels outside the software-adapter set: on a software adapter it is
   * ignored, with the reason printed, unless `LEAN_TEST_EXHAUSTIVE=1`.
   */
  exhaustive?: boolean;
  /**
   * Run on Dawn over a software adapter too. Dawn hands lavapipe SPIR-V of its own compiler, so
   * Mesa's shader cache cannot reuse Deno's compiles and every kernel class would compile twice
   * (10-30 s each there): only the tests that cover Dawn's own code paths (device setup, the
   * subgroups directive, paged reads, appends, timing) opt in; the rest run on Dawn over
   * hardware GPUs. (Session 41 found that what had made Dawn look slow to compile there was its
   * waits for garbage collection: tests/dawn_collector.ts.)
   */
  dawnOnSoftware?: boolean;
}

/**
 * Why a GPU test does not run here, or undefined when it runs. `exhaustive` is the backend's:
 * true on hardware GPUs and with `LEAN_TEST_EXHAUSTIVE=1`.
 */
export function softwareSkip(
  backend: { name: string; exhaustive: boolean },
  options: SoftwareOptions,
): string | undefined {
  if (backend.exhaustive) return undefined;
  if (options.exhaustive) {
    return "its kernels are outside the software-adapter set (tests/kernel_set.ts); it runs on " +
      "hardware GPUs and with deno task test:gpu";
  }
  if (backend.name === "dawn" && !options.dawnOnSoftware) {
    return "on a software adapter Dawn would compile every kernel class a second time, so it " +
      "runs a smoke set here and everything on hardware GPUs (deno task test:gpu)";
  }
  return undefined;
}

/** Methods of a decoder that take a decode shape first. */
const SHAPED_METHODS = new Set(["decode", "plan", "timeKernels"]);

/**
 * Wraps a decoder so that every decode, plan and kernel timing call first checks its kernel
 * class against the set.
 */
export function guardKernelSet<T extends object>(decoder: T, options: KernelOptions): T {
  return new Proxy(decoder, {
    get(target, prop) {
      // The target as receiver: getters of the decoder read its private fields.
      const value = Reflect.get(target, prop, target);
      if (typeof prop !== "string" || !SHAPED_METHODS.has(prop) || typeof value !== "function") {
        return typeof value === "function" ? value.bind(target) : value;
      }
      return (shape: DecodeShape, ...rest: unknown[]) => {
        if (shape && typeof shape === "object") assertInKernelSet(shape, options);
        return value.call(target, shape, ...rest);
      };
    },
  });
}

/**
 * The kernel options tests' shapes (tests/kernel_options_test.ts; also walked by
 * bench/dawn_stall_probe.ts): GQA 8/2 at d32, 4 rows per block; f16 with one empty sequence and
 * one shorter than a tile, and int8 with per-token scales and ragged query lengths.
 */
export const KERNEL_OPTION_SHAPES: readonly CaseSpec[] = [
  { seqLens: [150, 40, 0], numHeads: 8, numKVHeads: 2, headDim: 32, kvDtype: "f16", seed: 31 },
  {
    seqLens: [90, 7],
    qLens: [2, 1],
    numHeads: 8,
    numKVHeads: 2,
    headDim: 32,
    kvDtype: "int8",
    kvScales: "token",
    seed: 32,
  },
];

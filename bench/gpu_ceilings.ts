/**
 * The GPU's own ceilings, measured in the benchmark's run by plain WGSL kernels on a warm GPU:
 * the streaming-read rate (a grid-stride read with 16-byte loads), the FMA rate of the shader
 * cores (independent f32 FMA chains), and the time of an empty compute pass (the floor of any
 * decode call). A case's roofline is the larger of its K+V bytes over the read rate and its
 * FLOPs over the FMA rate.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../src/core/dtypes.ts";
import type { KVDtype } from "../mod.ts";
import { BufferUsage } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";
import { tokensRead } from "./bench_cases.ts";

/** The ceilings of one device. */
export interface Ceilings {
  /** Streaming-read rate in bytes per second. */
  readonly readBytesPerSecond: number;
  /** f32 FMA rate in FLOP per second (2 per FMA). */
  readonly flopsPerSecond: number;
  /** Median GPU time of a compute pass holding one one-workgroup dispatch, in ms. */
  readonly emptyPassMs: number;
}

function pipelineOf(device: GPUDevice, code: string): GPUComputePipeline {
  return device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
  });
}

/** Streaming-read rate: a grid-stride read of a 1 GiB buffer (or the binding limit). */
export async function readCeiling(device: GPUDevice, warmupMs: number): Promise<number> {
  const bytes = Math.min(
    1 << 30,
    device.limits.maxStorageBufferBindingSize,
    device.limits.maxBufferSize,
  );
  const src = device.createBuffer({ size: bytes, usage: BufferUsage.STORAGE });
  const sink = device.createBuffer({ size: 16, usage: BufferUsage.STORAGE });
  const pipeline = pipelineOf(
    device,
    `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  var acc = vec4<u32>(0u);
  let stride = nwg.x * 256u;
  let n = arrayLength(&src);
  for (var i = gid.x; i < n; i += stride) {
    acc ^= src[i];
  }
  if (all(acc == vec4<u32>(0x9e3779b9u))) {
    sink[0] = acc.x;
  }
}`,
  );
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: src } }, {
      binding: 1,
      resource: { buffer: sink },
    }],
  });
  try {
    const t = await timeWarm(device, (pass) => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(Math.min(65535, 132 * 32));
    }, { runs: 20, warmupMs });
    return bytes / (median(t.samplesMs) / 1e3);
  } finally {
    src.destroy();
    sink.destroy();
  }
}

/** FMAs per thread of the FMA kernel: 8 independent vec4 chains, `ITERS` steps each. */
const FMA_ITERS = 1024;
const FMA_PER_THREAD = FMA_ITERS * 8 * 4;

/** f32 FMA rate of the shader cores, in FLOP/s. */
export async function fmaPeak(device: GPUDevice, warmupMs: number): Promise<number> {
  const sink = device.createBuffer({ size: 16, usage: BufferUsage.STORAGE });
  const chains = Array.from({ length: 8 }, (_, i) => i);
  const pipeline = pipelineOf(
    device,
    `
@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let x = f32(gid.x) * 1e-7;
${
      chains.map((i) => `  var a${i} = vec4<f32>(x + ${i}.0, x - ${i}.5, x * ${i}.25, x + 0.${i});`)
        .join("\n")
    }
  let b = vec4<f32>(0.99997) + vec4<f32>(x * 1e-9);
  let c = vec4<f32>(1e-6);
  for (var i = 0u; i < ${FMA_ITERS}u; i++) {
${chains.map((i) => `    a${i} = fma(a${i}, b, c);`).join("\n")}
  }
  // Every component of every chain feeds the (never true) test, so no FMA is dead code.
  let s = ${chains.map((i) => `a${i}`).join(" + ")};
  let t = s.x + s.y + s.z + s.w;
  if (t == 12345.678) {
    sink[0] = t;
  }
}`,
  );
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: sink } }],
  });
  const workgroups = 132 * 32;
  try {
    const t = await timeWarm(device, (pass) => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(workgroups);
    }, { runs: 20, warmupMs });
    return (2 * FMA_PER_THREAD * 256 * workgroups) / (median(t.samplesMs) / 1e3);
  } finally {
    sink.destroy();
  }
}

/** GPU time of a compute pass with one dispatch of one workgroup that does nothing. */
export async function emptyPass(device: GPUDevice, warmupMs: number): Promise<number> {
  const pipeline = pipelineOf(device, `@compute @workgroup_size(64) fn main() {}`);
  const t = await timeWarm(device, (pass) => {
    pass.setPipeline(pipeline);
    pass.dispatchWorkgroups(1);
  }, { runs: 50, warmupMs });
  return median(t.samplesMs);
}

/** All three ceilings (the GPU is warmed before each). */
export async function measureCeilings(device: GPUDevice, warmupMs: number): Promise<Ceilings> {
  const readBytesPerSecond = await readCeiling(device, warmupMs);
  const flopsPerSecond = await fmaPeak(device, warmupMs);
  const emptyPassMs = await emptyPass(device, warmupMs);
  return { readBytesPerSecond, flopsPerSecond, emptyPassMs };
}

/**
 * K and V bytes a case reads: its KV dtype's bytes per element over K's and V's head dims (MLA:
 * V rows of `headDimV`, none of their own when read from K's rows), plus 8 bytes per token and KV head of per-token 8-bit scales;
 * with a sliding window, the window's tokens only (`tokensRead`).
 */
export function caseKVBytes(c: {
  seqLens: number[];
  numKVHeads: number;
  headDim: number;
  headDimV?: number;
  vFromK?: boolean;
  kvDtype?: KVDtype;
  kvScales?: "tensor" | "token";
  slidingWindow?: number;
  qLen?: number;
}): number {
  const tokens = tokensRead(c);
  const bytes = KV_DTYPE_INFO[c.kvDtype ?? "f16"].bytes;
  // V read from K's rows (MLA's latent) adds no bytes of its own.
  const dimV = c.vFromK ? 0 : c.headDimV ?? c.headDim;
  return tokens * c.numKVHeads * (c.headDim + dimV) * bytes +
    (c.kvScales === "token" ? 8 * tokens * c.numKVHeads : 0);
}

/** FLOPs of a decode case: 2 per FMA, one FMA per K and per V element per query row. */
export function decodeFlops(
  c: {
    seqLens: number[];
    numHeads: number;
    numKVHeads: number;
    headDim: number;
    headDimV?: number;
    qLen: number;
    slidingWindow?: number;
  },
): number {
  const tokens = tokensRead(c);
  const rowsPerKVHead = (c.numHeads / c.numKVHeads) * c.qLen;
  // q.k over K's dims, then p.v over V's.
  return 2 * tokens * c.numKVHeads * (c.headDim + (c.headDimV ?? c.headDim)) * rowsPerKVHead;
}

/** A case's roofline: the larger of its memory time and its FMA time, and which it is. */
export function roofline(
  kvBytes: number,
  flops: number,
  ceilings: Ceilings,
): { ms: number; bound: "memory" | "compute"; memoryMs: number; computeMs: number } {
  const memoryMs = (kvBytes / ceilings.readBytesPerSecond) * 1e3;
  const computeMs = (flops / ceilings.flopsPerSecond) * 1e3;
  return memoryMs >= computeMs
    ? { ms: memoryMs, bound: "memory", memoryMs, computeMs }
    : { ms: computeMs, bound: "compute", memoryMs, computeMs };
}

/**
 * What the standalone kernel prototypes (bench/proto_token_lanes.ts, bench/proto_tiled.ts) share:
 * a compute pipeline from WGSL with its compile errors reported, bound to a uniform block (binding
 * 0), read-only inputs (bindings 1..n) and one output (the last binding), recorded as one
 * dispatch; the output read back; the relative L2 error against a float64 reference; the
 * library's lean decode of the same problem timed beside them.
 *
 * @module
 */

import { createDecoder, type DecodeInput } from "../mod.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import type { installDispatchFilter } from "./diag_lib.ts";

/** A prototype kernel bound to its buffers: `record` dispatches it into a compute pass. */
export interface ProtoKernel {
  record: (pass: GPUComputePassEncoder) => void;
  out: GPUBuffer;
  outBytes: number;
  workgroups: number;
}

/**
 * Compiles `code` (once per device; throwing its compile errors) and binds the uniform block `params`, the
 * `inputs` (uploaded as storage) and an output of `outBytes`, for `workgroups` workgroups.
 */
export async function protoKernel(
  device: GPUDevice,
  code: string,
  params: ArrayBuffer,
  inputs: readonly ArrayBufferView[],
  outBytes: number,
  workgroups: number,
): Promise<ProtoKernel> {
  const pipeline = await compiledPipeline(device, code);
  const upload = (bytes: ArrayBufferView, usage: number) => {
    const b = device.createBuffer({ size: Math.max(16, bytes.byteLength), usage });
    device.queue.writeBuffer(b, 0, bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
    return b;
  };
  const out = device.createBuffer({
    size: outBytes,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const uniform = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: upload(new Uint8Array(params), uniform) } },
      ...inputs.map((data, i) => ({ binding: i + 1, resource: { buffer: upload(data, storage) } })),
      { binding: inputs.length + 1, resource: { buffer: out } },
    ],
  });
  const record = (pass: GPUComputePassEncoder) => {
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups);
  };
  return { record, out, outBytes, workgroups };
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/** The compute pipeline of `code` on `device`, compiled once (its compile errors thrown). */
async function compiledPipeline(device: GPUDevice, code: string): Promise<GPUComputePipeline> {
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, cache = new Map());
  const cached = cache.get(code);
  if (cached) return cached;
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length) throw new Error(errors.map((e) => e.message).join("\n"));
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  cache.set(code, pipeline);
  return pipeline;
}

/** Reads `bytes` of a buffer back as `f32`s. */
export async function readBack(
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

/** Dispatches a prototype kernel once, in a pass of its own, and reads its output back. */
export function runOnce(device: GPUDevice, p: ProtoKernel): Promise<Float32Array> {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  p.record(pass);
  pass.end();
  device.queue.submit([enc.finish()]);
  return readBack(device, p.out, p.outBytes);
}

/** The relative L2 error of `got` against `want` (the CLI's accuracy check's). */
export { relativeL2 } from "../src/cli/accuracy.ts";

/** A timed run: what ran, alone and back to back (ms per pass). */
export interface ProtoTiming {
  what: string;
  aloneMs: number;
  streamMs: number;
}

/**
 * The library's lean decode of `input` on `device`, timed as the prototypes are (25 passes after
 * 400 ms of warm passes, and back to back), with its merge dispatch and without (`filter` skips
 * it: the prototypes merge on the CPU).
 */
export async function timeLeanTwins(
  device: GPUDevice,
  input: DecodeInput,
  filter: ReturnType<typeof installDispatchFilter>,
): Promise<ProtoTiming[]> {
  const decoder = await createDecoder({ backend: "webgpu", device });
  const out: ProtoTiming[] = [];
  try {
    for (const skip of [undefined, "merge"] as const) {
      filter.skip = skip;
      const t = await decoder.timeKernels({ ...input, strategy: "lean" }, {
        runs: 25,
        warmupMs: 400,
        streamMs: 2,
      });
      filter.skip = undefined;
      out.push({
        what: `lean${skip ? " no merge" : ""}`,
        aloneMs: t.medianMs,
        streamMs: t.stream!.medianMs,
      });
    }
  } finally {
    await decoder.dispose();
  }
  return out;
}

const dawnInstances: GPU[] = [];

/**
 * Dawn's high-performance adapter (instance `toggles` as npm `webgpu` takes them) and a device as
 * the library requests one (the adapter's limits, subgroups), with `features` too where the
 * adapter lists them, for the subgroup-matrix prototypes (bench/proto_imma.ts,
 * bench/proto_hmma.ts); the adapter, its subgroup-matrix configurations and the device's features
 * printed. Dawn is imported here only when called.
 */
export async function dawnMatrixDevice(
  toggles: string[],
  features: string[],
): Promise<GPUDevice> {
  const { create } = await import("webgpu");
  const gpu = create(toggles) as GPU;
  // Kept for the process's life: once the instance is collected, the next call into its device
  // crashed the process (session 46, on the H200: a prototype's second kernel run).
  dawnInstances.push(gpu);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error("Dawn found no adapter");
  const info = adapter.info as unknown as Record<string, unknown>;
  console.log(`adapter: ${info.vendor} ${info.architecture} ${info.device} ${info.description}`);
  for (const c of (info.subgroupMatrixConfigs ?? []) as Record<string, unknown>[]) {
    const fields = ["componentType", "resultComponentType", "M", "N", "K"];
    console.log(`  subgroup matrix: ${fields.map((k) => `${k} ${c[k]}`).join(", ")}`);
  }
  const device = await requestDevice(adapter, features);
  console.log(`device features: ${[...device.features].sort().join(", ")}`);
  return device;
}

/** A WGSL module's compile errors on `device`, one per line ("" when it compiles). */
export async function compileErrors(device: GPUDevice, code: string): Promise<string> {
  const module = device.createShaderModule({ code });
  const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === "error");
  return errors.map((e) => `${e.lineNum}:${e.linePos} ${e.message}`).join("\n  ");
}

/**
 * The GPU devices of the runner-API tests: one per WebGPU implementation that opens here and is
 * listed in `LEAN_TEST_BACKENDS` (all when it is unset), the tests registered on them
 * ({@linkcode deviceTests}), and small buffer helpers.
 *
 * @module
 */

import { loadDawn } from "../dawn.ts";
import { collectWhileDawnIsOpen } from "./dawn_collector.ts";
import { requestDevice, summarizeAdapter } from "../src/gpu/gpu_runtime.ts";
import { envVar, EXHAUSTIVE_ENV, type SoftwareOptions, softwareSkip } from "./kernel_set.ts";

/** The WebGPU implementations under test, in test order. */
export const GPU_NAMES = ["webgpu", "dawn"] as const;

/** A WebGPU implementation: Deno's own, or Dawn's through the `webgpu` package. */
export type GpuName = typeof GPU_NAMES[number];

/** A device under test. */
export interface GpuUnderTest {
  name: GpuName;
  device: GPUDevice;
  adapter: GPUAdapter;
  keepAlive: unknown[];
  /** Any kernel may compile: a hardware GPU, or LEAN_TEST_EXHAUSTIVE=1 (see tests/kernel_set.ts). */
  exhaustive: boolean;
}

/** Opens a device of one implementation, or says why not. */
export async function openGpu(name: GpuName): Promise<GpuUnderTest | string> {
  const wanted = envVar("LEAN_TEST_BACKENDS");
  if (wanted !== undefined && !wanted.split(",").map((s) => s.trim()).includes(name)) {
    return "not listed in LEAN_TEST_BACKENDS";
  }
  try {
    const gpu = name === "dawn" ? await loadDawn() : navigator.gpu;
    if (!gpu) return "navigator.gpu is not available";
    const adapter = await gpu.requestAdapter();
    if (!adapter) return "no adapter";
    const software = summarizeAdapter(adapter.info).software;
    const exhaustive = EXHAUSTIVE_ENV || !software;
    const device = await requestDevice(adapter);
    if (name === "dawn" && software) collectWhileDawnIsOpen();
    return { name, device, adapter, keepAlive: [gpu, adapter], exhaustive };
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

const opened = new Map<GpuName, Promise<GpuUnderTest | string>>();

/**
 * The module's device of one implementation, opened on first use, or why it did not open (said
 * once, here).
 */
function moduleGpu(name: GpuName): Promise<GpuUnderTest | string> {
  let gpu = opened.get(name);
  if (gpu === undefined) {
    gpu = openGpu(name).then((g) => {
      if (typeof g === "string") console.log(`skipping GPU device tests on "${name}": ${g}`);
      return g;
    });
    opened.set(name, gpu);
  }
  return gpu;
}

/** A test body on a device under test. */
export type DeviceTestFn = (gpu: GpuUnderTest) => Promise<void>;

/**
 * Registers one test on one implementation's device, named `"<title> [<implementation>]"`.
 * `options` say where a software adapter ignores it (see `softwareSkip`): pass
 * `{ dawnOnSoftware: true }` for a test that runs wherever the device opens.
 */
export type RegisterDeviceTest = (
  title: string,
  fn: DeviceTestFn,
  options?: SoftwareOptions,
) => void;

/**
 * Registers tests that need a bare `GPUDevice` rather than a decoder (tests/backends.ts has the
 * decoder's), in place of a loop over the implementations in each test file. `register` is
 * called once per implementation of `names`, Deno's WebGPU first and then Dawn, with a `test`
 * function that registers a test on that implementation and its device (undefined where it did
 * not open): a file's tests keep their order (all of one implementation's, then the other's),
 * and a test that destroys the device can come last.
 *
 * Each implementation opens at most once per test module, whichever calls ask for it: Dawn
 * refuses a second device from an adapter that made one, and on a software adapter every device
 * compiles its kernels afresh. The tests share that device; one that needs a device of its own
 * takes {@linkcode secondDevice}.
 *
 * An implementation that does not open is said once (`skipping ...`) and its tests are
 * registered as ignored, never as passed; so is a test a software adapter does not run
 * (`softwareSkip`), with the reason printed (`ignoring ...`). The sanitizers are off: GPU
 * runtimes keep handles alive. Await the returned promise at the module's top level: `deno test`
 * silently drops tests registered after the module has loaded.
 */
export async function deviceTests(
  register: (test: RegisterDeviceTest, gpu: GpuUnderTest | undefined) => void,
  names: readonly GpuName[] = GPU_NAMES,
): Promise<void> {
  for (const name of names) {
    const gpu = await moduleGpu(name);
    register((title, fn, options = {}) => {
      const testName = `${title} [${name}]`;
      const skip = typeof gpu === "string" ? undefined : softwareSkip(gpu, options);
      if (skip) console.log(`ignoring "${testName}" on this software adapter: ${skip}`);
      Deno.test({
        name: testName,
        ignore: typeof gpu === "string" || skip !== undefined,
        sanitizeOps: false,
        sanitizeResources: false,
        fn: () => fn(gpu as GpuUnderTest),
      });
    }, typeof gpu === "string" ? undefined : gpu);
  }
}

/** Options of {@linkcode deviceTest}. */
export interface DeviceTestOptions extends SoftwareOptions {
  /** The implementations to test on (all of {@linkcode GPU_NAMES} when unset). */
  names?: readonly GpuName[];
}

/** One test per implementation on its device: {@linkcode deviceTests} for a single test. */
export function deviceTest(
  title: string,
  fn: DeviceTestFn,
  options: DeviceTestOptions = {},
): Promise<void> {
  const { names, ...software } = options;
  return deviceTests((test) => test(title, fn, software), names);
}

/**
 * A second device of the same implementation, from a fresh adapter: an adapter that made a device
 * is consumed (Dawn refuses a second request, as the WebGPU spec says).
 */
export async function secondDevice(g: GpuUnderTest): Promise<GPUDevice> {
  const gpu = g.keepAlive[0] as GPU;
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error(`no second ${g.name} adapter`);
  g.keepAlive.push(adapter); // Dawn breaks if the adapter is collected while its device lives
  return await requestDevice(adapter);
}

/** `STORAGE | COPY_DST | COPY_SRC`. */
export const STORAGE = 0x80 | 0x8 | 0x4;

/** A storage buffer holding `data` (a whole number of 4-byte words), or `data` bytes of zeros. */
export function gpuBuffer(device: GPUDevice, data: ArrayBufferView | number): GPUBuffer {
  const bytes = typeof data === "number" ? data : data.byteLength;
  const b = device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 4) * 4), usage: STORAGE });
  if (typeof data !== "number") device.queue.writeBuffer(b, 0, data as unknown as ArrayBuffer);
  return b;
}

/**
 * Records and submits one dispatch of `workgroups` workgroups of the entry `main` of `shader` (a
 * module or its WGSL), with `src` bound at binding 0 and `dst` at binding 1 of group 0.
 */
export function dispatchSrcDst(
  device: GPUDevice,
  shader: GPUShaderModule | string,
  src: GPUBuffer,
  dst: GPUBuffer,
  workgroups: number,
): void {
  const module = typeof shader === "string" ? device.createShaderModule({ code: shader }) : shader;
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: src } }, {
        binding: 1,
        resource: { buffer: dst },
      }],
    }),
  );
  pass.dispatchWorkgroups(workgroups);
  pass.end();
  device.queue.submit([enc.finish()]);
}

/** A storage buffer holding any array's bytes (padded to 4). */
export function bytesBuffer(device: GPUDevice, data: ArrayBufferView): GPUBuffer {
  const size = Math.max(16, Math.ceil(data.byteLength / 4) * 4);
  const b = device.createBuffer({ size, usage: STORAGE });
  const padded = new Uint8Array(size);
  padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  device.queue.writeBuffer(b, 0, padded);
  return b;
}

/** Reads `floats` f32 values back from a buffer. */
export async function readF32(
  device: GPUDevice,
  buffer: GPUBuffer,
  floats: number,
): Promise<Float32Array> {
  const staging = device.createBuffer({ size: Math.max(16, 4 * floats), usage: 0x1 | 0x8 });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, staging, 0, 4 * floats);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(0x1);
  const out = new Float32Array(staging.getMappedRange().slice(0, 4 * floats));
  staging.unmap();
  staging.destroy();
  return out;
}

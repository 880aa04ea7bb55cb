/**
 * Finding a WebGPU implementation and a device: the runtime's own `navigator.gpu`, or Dawn (npm
 * `webgpu`) once the `@lean/attention/dawn` entry has registered it. Nothing here imports Dawn:
 * the main entry's module graph stays free of npm packages. Flag values are spelled out here so
 * the backend works where the WebGPU globals (`GPUBufferUsage`, ...) are not installed, as under
 * Dawn in Node.
 *
 * @module
 */

/** `GPUBufferUsage` bits. */
export const BufferUsage = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;
/** `GPUMapMode.READ`. */
export const MAP_READ = 0x1;

/**
 * Where `@lean/attention/dawn` leaves its loader: a global symbol rather than a module variable,
 * so that two copies of the package in one program (two versions, a bundle and the source)
 * still find each other's registration.
 */
const DAWN_LOADER = Symbol.for("@lean/attention/dawn");

/** What `backend: "dawn"` says when the Dawn entry was not imported. */
export const DAWN_NOT_LOADED: string =
  'the dawn backend is opt-in: add `import "@lean/attention/dawn";` to the program before ' +
  'createDecoder({ backend: "dawn" }) (it loads Dawn from npm "webgpu": in Deno run with ' +
  '--allow-ffi, in Node npm install webgpu), or use backend: "webgpu" for the runtime\'s own ' +
  "WebGPU";

/** Records the function that loads Dawn's `GPU` (called by `@lean/attention/dawn`). */
export function registerDawn(load: () => Promise<GPU>): void {
  (globalThis as Record<symbol, unknown>)[DAWN_LOADER] = load;
}

/** Whether `@lean/attention/dawn` has been imported in this program. */
export function dawnRegistered(): boolean {
  return typeof (globalThis as Record<symbol, unknown>)[DAWN_LOADER] === "function";
}

/**
 * Dawn's `GPU` through the loader `@lean/attention/dawn` registered; rejects with
 * {@linkcode DAWN_NOT_LOADED} when it was not imported.
 */
export function registeredDawn(): Promise<GPU> {
  const load = (globalThis as Record<symbol, unknown>)[DAWN_LOADER];
  if (typeof load !== "function") return Promise.reject(new Error(DAWN_NOT_LOADED));
  return (load as () => Promise<GPU>)();
}

/** What a device offers the decode kernel beyond core WebGPU. */
export interface KernelCaps {
  /** The `subgroups` feature is enabled on the device. */
  readonly subgroups: boolean;
  /** The adapter's smallest subgroup size (0 when unknown). */
  readonly subgroupMinSize: number;
  /** The `shader-f16` feature is enabled on the device (for `KernelTuning.halfMath`). */
  readonly shaderF16?: boolean;
  /**
   * The device's `maxComputeWorkgroupStorageSize` (bytes; default WebGPU's 16384): the tiled
   * kernel stages 32 dims per step where its workgroup memory then fits, else 16.
   */
  readonly workgroupBytes?: number;
  /**
   * The device has Dawn's `chromium-experimental-subgroup-matrix` with f16 x f16 -> f32 16 x 16 x
   * 16 matrices, `shader-f16` and `subgroups`, and subgroups of exactly 32 lanes (the matrix
   * kernel's `KernelTuning.matrixMath`).
   */
  readonly subgroupMatrix?: boolean;
}

/** Dawn's experimental subgroup-matrix feature (`KernelCaps.subgroupMatrix`). */
export const SUBGROUP_MATRIX_FEATURE = "chromium-experimental-subgroup-matrix";

/**
 * Whether an adapter's info lists f16 x f16 -> f32 subgroup matrices of 16 x 16 x 16; undefined
 * where it lists no configurations (Dawn's `GPUDevice.adapterInfo` gives an empty list, seen on
 * the H200 in session 48, where the adapter's info lists them: a runner's own device then takes
 * {@linkcode probeSubgroupMatrix}).
 */
function hasHalfMatrices(info: GPUAdapterInfo | undefined): boolean | undefined {
  const configs =
    (info as { subgroupMatrixConfigs?: Iterable<Record<string, unknown>> } | undefined)
      ?.subgroupMatrixConfigs;
  const listed = [...(configs ?? [])];
  if (listed.length === 0) return undefined;
  return listed.some((c) =>
    c.componentType === "f16" && c.resultComponentType === "f32" && c.M === 16 && c.N === 16 &&
    c.K === 16
  );
}

/** Reads a device's kernel capabilities (the adapter info may come from the device). */
export function kernelCaps(device: GPUDevice, info: GPUAdapterInfo | undefined): KernelCaps {
  const min = Number((info as { subgroupMinSize?: number } | undefined)?.subgroupMinSize ?? 0);
  const subgroups = device.features.has("subgroups" as GPUFeatureName) && min >= 1;
  return {
    subgroups,
    subgroupMinSize: subgroups ? min : 0,
    shaderF16: device.features.has("shader-f16"),
    workgroupBytes: device.limits.maxComputeWorkgroupStorageSize,
    subgroupMatrix: matrixFeatures(device, info, subgroups) && hasHalfMatrices(info) === true,
  };
}

/** The matrix kernel's features and subgroups of exactly 32 lanes, configurations aside. */
function matrixFeatures(
  device: GPUDevice,
  info: GPUAdapterInfo | undefined,
  subgroups: boolean,
): boolean {
  const size = info as { subgroupMinSize?: number; subgroupMaxSize?: number } | undefined;
  return subgroups && Number(size?.subgroupMinSize) === 32 &&
    Number(size?.subgroupMaxSize) === 32 && device.features.has("shader-f16") &&
    device.features.has(SUBGROUP_MATRIX_FEATURE as GPUFeatureName);
}

/** A shader of the matrix kernel's types and calls: f16 operands, f32 results, 16 x 16. */
const MATRIX_PROBE_WGSL = `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
var<workgroup> a: array<f16, 256>;
@compute @workgroup_size(32)
fn main() {
  let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, 0u, 16u);
  let r = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&a, 0u, 16u);
  let s = subgroupMatrixMultiplyAccumulate(l, r, subgroup_matrix_result<f32, 16, 16>());
  subgroupMatrixStore<row_major>(&o, 0u, s, 16u);
}`;

/**
 * The caps of a device whose adapter info lists no subgroup-matrix configurations, with
 * `subgroupMatrix` found by compiling a shader of the matrix kernel's types where the device has
 * the features (a refused configuration fails the pipeline). Other caps are returned as they are.
 *
 * @example
 * ```ts ignore
 * import { kernelCaps, probeSubgroupMatrix } from "./gpu_runtime.ts";
 * const info = device.adapterInfo; // a runner's device: its matrix configurations may be missing
 * const caps = await probeSubgroupMatrix(device, info, kernelCaps(device, info));
 * console.log(caps.subgroupMatrix); // true on an NVIDIA GPU through Dawn
 * ```
 */
export async function probeSubgroupMatrix(
  device: GPUDevice,
  info: GPUAdapterInfo | undefined,
  caps: KernelCaps,
): Promise<KernelCaps> {
  if (caps.subgroupMatrix || hasHalfMatrices(info) !== undefined) return caps;
  if (!matrixFeatures(device, info, caps.subgroups)) return caps;
  device.pushErrorScope("validation");
  let built = true;
  try {
    await device.createComputePipelineAsync({
      layout: "auto",
      compute: {
        module: device.createShaderModule({ code: MATRIX_PROBE_WGSL }),
        entryPoint: "main",
      },
    });
  } catch {
    built = false;
  }
  const error = await device.popErrorScope();
  return { ...caps, subgroupMatrix: built && error === null };
}

/** Adapter facts the backend reports. */
export interface AdapterSummary {
  /** Human description, e.g. `"NVIDIA H100 80GB HBM3"` or `"llvmpipe (LLVM 15.0.6, 256 bits)"`. */
  readonly description: string;
  readonly vendor: string;
  readonly architecture: string;
  /** True for software adapters (lavapipe, SwiftShader, WARP). */
  readonly software: boolean;
}

/**
 * Reads an adapter's info in the same way for Deno, Dawn and browsers (where only vendor and
 * architecture name the adapter, e.g. `"google swiftshader"`).
 */
export function summarizeAdapter(info: GPUAdapterInfo | undefined): AdapterSummary {
  // Deno's wgpu puts the device name in `description`; Dawn puts the driver there (e.g.
  // "NVIDIA: 580.159.04 ...") and a slug of the device name in `device`: show both. Browsers
  // leave both empty (fingerprinting) and give only vendor and architecture.
  const raw = String(info?.description ?? "");
  const device = String(info?.device ?? "");
  const vendor = String(info?.vendor ?? "");
  const architecture = String(info?.architecture ?? "");
  const driverOnly = /^[\w ]+: \S/.test(raw) && /[a-z]/i.test(device);
  const byVendor = [vendor, architecture].filter((s) => s !== "").join(" ");
  const description = driverOnly
    ? `${device} (${raw})`
    : raw || device || byVendor || "unknown adapter";
  const fallback =
    (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter === true;
  return {
    description,
    vendor,
    architecture,
    software: fallback ||
      /llvmpipe|lavapipe|swiftshader|warp|software/i.test(`${description} ${architecture}`),
  };
}

/** Features the backend uses when the adapter has them. */
const OPTIONAL_FEATURES = [
  "timestamp-query",
  "shader-f16",
  SUBGROUP_MATRIX_FEATURE,
] as GPUFeatureName[];

/**
 * Requests a device with the adapter's own limits (not the defaults) and useful features, and
 * `extraFeatures` (e.g. a prototype's experimental ones) where the adapter lists them.
 * `subgroups` is asked for even when the adapter does not list it: Deno's WebGPU grants it on
 * GPUs whose Vulkan driver has subgroup operations without listing it; a refusal just means
 * the kernels reduce through workgroup memory.
 */
export async function requestDevice(
  adapter: GPUAdapter,
  extraFeatures: readonly string[] = [],
): Promise<GPUDevice> {
  const l = adapter.limits;
  const features = [...OPTIONAL_FEATURES, ...extraFeatures as GPUFeatureName[]]
    .filter((f) => adapter.features.has(f));
  const descriptor = (requiredFeatures: GPUFeatureName[]): GPUDeviceDescriptor => ({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    },
  });
  try {
    return await adapter.requestDevice(
      descriptor([...features, "subgroups" as GPUFeatureName]),
    );
  } catch {
    return await adapter.requestDevice(descriptor(features));
  }
}

/**
 * Whether the device's WGSL compiler accepts `enable subgroups;`: Tint (Dawn, browsers) wants
 * the directive before subgroup built-ins, Naga (Deno) rejects it.
 *
 * @example
 * ```ts ignore
 * import { acceptsSubgroupsDirective } from "./gpu_runtime.ts";
 * const adapter = await navigator.gpu.requestAdapter();
 * const device = await adapter!.requestDevice();
 * console.log(await acceptsSubgroupsDirective(device));
 * ```
 */
export async function acceptsSubgroupsDirective(device: GPUDevice): Promise<boolean> {
  device.pushErrorScope("validation");
  device.createShaderModule({
    code: "enable subgroups;\n@compute @workgroup_size(1) fn main() {}",
  });
  return (await device.popErrorScope()) === null;
}

/**
 * # @lean/attention/dawn
 *
 * Dawn, Google's WebGPU implementation (npm `webgpu`), for `@lean/attention`. Importing this
 * module makes `createDecoder({ backend: "dawn" })` work; the main entry never loads Dawn, so a
 * program that does not import this module does not download it (about 130 MB). Use it where the
 * runtime has no WebGPU of its own (Node), or to compare with the runtime's (Deno's wgpu).
 *
 * Dawn is a native addon: Deno needs `--allow-ffi` to load it; in Node, `npm install webgpu`.
 *
 * ```ts
 * import "@lean/attention/dawn"; // registers Dawn for backend: "dawn"
 * import { createDecoder } from "@lean/attention";
 *
 * const decoder = await createDecoder({ backend: "dawn" })
 *   .catch(() => createDecoder({ backend: "cpu" })); // no adapter here: the CPU backend
 * console.log(["dawn", "cpu"].includes(decoder.backend)); // true
 * await decoder.dispose();
 * ```
 *
 * For a device of your own (a KV cache and attention encoder inside a runner), take Dawn's `GPU`
 * from {@linkcode loadDawn}.
 *
 * @module
 */

import { registerDawn } from "./src/gpu/gpu_runtime.ts";

/**
 * Dawn instance toggles. Timestamps are otherwise quantised (to 65.5 us, seen on lavapipe), too
 * coarse for kernel timing. Dawn withholds `shader-f16` from NVIDIA's Vulkan drivers unless
 * `vulkan_enable_f16_on_nvidia` is on (f16 conformance failures it has not looked into); the
 * kernels need f16 only for the opt-in `kernel: { halfMath: true }` (KV halves are otherwise
 * unpacked from `u32`), which through Dawn on an H200 then takes GQA 32/8 128k from 90.3% to
 * 93.3% of its roofline (bench/notes.md, session 45). `allow_unsafe_apis` lets adapters offer
 * experimental features: the matrix kernel of the opt-in `kernel: { matrixMath: true }` needs
 * `chromium-experimental-subgroup-matrix` (the library asks for no other experimental feature).
 */
const DAWN_OPTIONS: string[] = [
  "disable-dawn-features=timestamp_quantization",
  "enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia",
];

let instance: Promise<GPU> | undefined;

/** The `ffi` permission's state in Deno; `undefined` in other runtimes. */
function ffiPermission(): string | undefined {
  const deno = (globalThis as {
    Deno?: { permissions?: { querySync?(d: { name: "ffi" }): { state: string } } };
  }).Deno;
  return deno?.permissions?.querySync?.({ name: "ffi" }).state;
}

/** Says what is missing when npm `webgpu` fails to load. */
function loadFailure(error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error);
  const ffi = ffiPermission();
  if (ffi !== undefined && ffi !== "granted") {
    return new Error(
      `Dawn needs the ffi permission: npm "webgpu" is a native addon, which Deno loads through ` +
        `FFI; run deno with --allow-ffi (${message})`,
    );
  }
  const hint = ffi === undefined
    ? "npm install webgpu"
    : "deno add npm:webgpu, or check the npm cache";
  return new Error(`Dawn (npm "webgpu") could not be loaded (${hint}): ${message}`);
}

/**
 * Loads Dawn and returns its `GPU`: one instance per process, shared by every caller. Each
 * instance owns a Vulkan (or Metal, D3D12) instance and native threads; a process that made one
 * per device kept dozens alive for the garbage collector to finalise at exit, in any order. Keep
 * the `GPU` (and the adapter) referenced while a device taken from it lives.
 *
 * @example
 * ```ts
 * import { loadDawn } from "@lean/attention/dawn";
 *
 * const gpu = await loadDawn(); // the same GPU on every call
 * const adapter = await gpu.requestAdapter(); // null where Dawn finds no adapter
 * console.log(gpu === await loadDawn(), adapter === null || adapter.limits.maxBufferSize > 0);
 * // true true
 * ```
 */
export function loadDawn(): Promise<GPU> {
  instance ??= (async () => {
    if (ffiPermission() === "denied") throw loadFailure(new Error("--allow-ffi is not granted"));
    let mod: { create: (options: string[]) => GPU };
    try {
      mod = await import("webgpu");
    } catch (error) {
      throw loadFailure(error);
    }
    return mod.create(DAWN_OPTIONS);
  })();
  // A failed load is not cached: the next call tries again.
  instance.catch(() => (instance = undefined));
  return instance;
}

registerDawn(loadDawn);

/**
 * Compute pipelines by kernel spec key, compiled once per device. Shader modules are kept with
 * their pipelines: Dawn was seen to crash when a module was collected while its pipeline was
 * still being built.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { decodeKernelWGSL, type WGSLOptions } from "../kernels/decode_kernel.ts";
import {
  appendLayoutEntries,
  createLayout,
  kernelLayoutEntries,
  type LayoutEntry,
} from "../kernels/abi.ts";
import { appendKernelWGSL } from "../kernels/append_kernel.ts";
import type { KVDtype } from "../core/problem.ts";
import { type KernelSpec, scaleTable } from "../kernels/kernel_spec.ts";
import { specKey } from "../kernels/spec_key.ts";
import { mergeKernelWGSL } from "../kernels/merge_kernel.ts";
import { tiledKernelWGSL } from "../kernels/tiled_kernel.ts";
import { matrixKernelWGSL } from "../kernels/matrix_kernel.ts";
import { needsHeadTable } from "../kernels/variant_wgsl.ts";

/** The kernels a plan can need. */
export type KernelKind = "decode" | "merge";

const GENERATORS: Record<KernelKind, (spec: KernelSpec, options: WGSLOptions) => string> = {
  decode: (spec, options) =>
    spec.matrix
      ? matrixKernelWGSL(spec, options)
      : spec.tiled
      ? tiledKernelWGSL(spec, options)
      : decodeKernelWGSL(spec, options),
  merge: mergeKernelWGSL,
};

/**
 * Called before a kernel is compiled, with its spec key (e.g. `decode:d128:f16:t64:...`) and how
 * many pipelines this cache has compiled before it.
 */
export type CompileListener = (key: string, compiledBefore: number) => void;

/** A per-device cache of compiled kernels. */
export class PipelineCache {
  #device: GPUDevice;
  #entries = new Map<string, { module: GPUShaderModule; pipeline: GPUComputePipeline }>();
  #created = 0;
  #wgsl: WGSLOptions;
  #layouts = new Map<string, { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>();
  #onCompile?: CompileListener;

  /**
   * `wgsl` holds source options of the runtime (e.g. Dawn needs `enable subgroups;`);
   * `onCompile` hears of every compilation (seconds each on a software adapter).
   */
  constructor(device: GPUDevice, wgsl: WGSLOptions = {}, onCompile?: CompileListener) {
    this.#device = device;
    this.#wgsl = wgsl;
    this.#onCompile = onCompile;
  }

  /** Pipelines compiled so far. */
  get created(): number {
    return this.#created;
  }

  /** The pipeline of a kernel spec, compiled on first use. */
  get(kind: KernelKind, spec: KernelSpec): GPUComputePipeline {
    return this.#compile(
      specKey(kind, spec),
      () => GENERATORS[kind](spec, this.#wgsl),
      this.layout(spec).pipeline,
    );
  }

  /** The cached pipeline of a key, compiled from `code()` with `layout` on first use. */
  #compile(key: string, code: () => string, layout: GPUPipelineLayout): GPUComputePipeline {
    let entry = this.#entries.get(key);
    if (!entry) {
      this.#onCompile?.(key, this.#created);
      const module = this.#device.createShaderModule({ code: code(), label: key });
      const pipeline = this.#device.createComputePipeline({
        layout,
        compute: { module, entryPoint: "main" },
        label: key,
      });
      entry = { module, pipeline };
      this.#entries.set(key, entry);
      this.#created++;
    }
    return entry.pipeline;
  }

  /**
   * The append kernel of a KV dtype (the cache's row copy, see `src/kernels/append_kernel.ts`),
   * with the explicit layout of `appendLayoutEntries`, compiled on first use.
   */
  append(kvDtype: KVDtype): { pipeline: GPUComputePipeline; group: GPUBindGroupLayout } {
    // 8-bit caches: the append kernel quantises and writes the scale table too.
    const scaled = KV_DTYPE_INFO[kvDtype].scaled;
    const layout = this.#layout(
      scaled ? "append scales" : "append",
      () => appendLayoutEntries(scaled),
    );
    const key = `append:${kvDtype}`;
    const pipeline = this.#compile(key, () => appendKernelWGSL(kvDtype), layout.pipeline);
    return { pipeline, group: layout.group };
  }

  /**
   * The explicit layout of a spec's kernels (see `kernelLayoutEntries` in `src/kernels/abi.ts`):
   * the decode and merge pipelines share it, so one bind group serves both dispatches. Made on
   * first use, one per paged-ness.
   */
  layout(spec: KernelSpec): { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
    const paged = spec.paged ?? false;
    // The variants' per-head table (ALiBi slopes, sinks) is bound when the decode kernel reads it.
    const heads = needsHeadTable("decode", spec.variant);
    // 8-bit K/V with per-token scales bind the scale table.
    const kvScales = scaleTable(spec);
    const entries = kernelLayoutEntries({ paged, heads, kvScales });
    // Each of the three adds a storage buffer to the 7 of the plain kernels: a device at
    // WebGPU's default limit (8, e.g. a caller's device requested without limits) cannot bind
    // two of them. Its pipeline would fail validation with a message about buffers; say why.
    const need = entries.filter((e) => e.type !== "uniform").length;
    const most = this.#device.limits?.maxStorageBuffersPerShaderStage;
    if (typeof most === "number" && need > most) {
      const why = [
        paged ? "the page list" : "",
        heads ? "the ALiBi slopes / sinks table" : "",
        kvScales ? "the 8-bit scale table" : "",
      ].filter((w) => w).join(", ");
      throw new RangeError(
        `attention with ${why} needs ${need} storage buffers per shader stage: the device allows ${most} (request the device with a higher maxStorageBuffersPerShaderStage)`,
      );
    }
    return this.#layout(
      `attention${paged ? " paged" : ""}${heads ? " heads" : ""}${kvScales ? " scales" : ""}`,
      () => entries,
    );
  }

  #layout(
    key: string,
    entries: () => readonly LayoutEntry[],
  ): { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
    let layout = this.#layouts.get(key);
    if (!layout) {
      const group = createLayout(this.#device, `lean-attention ${key}`, entries());
      const pipeline = this.#device.createPipelineLayout({ bindGroupLayouts: [group] });
      layout = { group, pipeline };
      this.#layouts.set(key, layout);
    }
    return layout;
  }

  /** Forgets every pipeline. */
  clear(): void {
    this.#entries.clear();
    this.#layouts.clear();
  }
}

/**
 * Compute pipelines by kernel spec key, compiled once per device. Shader modules are kept with
 * their pipelines: Dawn was seen to crash when a module was collected while its pipeline was
 * still being built.
 *
 * @module
 */

import { decodeKernelWGSL, type WGSLOptions } from "../kernels/decode_kernel.ts";
import { createLayout, kernelLayoutEntries } from "../kernels/abi.ts";
import { type KernelSpec, specKey } from "../kernels/kernel_spec.ts";
import { mergeKernelWGSL } from "../kernels/merge_kernel.ts";

/** The kernels a plan can need. */
export type KernelKind = "decode" | "merge";

const GENERATORS: Record<KernelKind, (spec: KernelSpec, options: WGSLOptions) => string> = {
  decode: decodeKernelWGSL,
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
    const key = specKey(kind, spec);
    let entry = this.#entries.get(key);
    if (!entry) {
      this.#onCompile?.(key, this.#created);
      const module = this.#device.createShaderModule({
        code: GENERATORS[kind](spec, this.#wgsl),
        label: key,
      });
      const pipeline = this.#device.createComputePipeline({
        layout: this.layout(kind, spec).pipeline,
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
   * The explicit layout of a kernel (see `kernelLayoutEntries` in `src/kernels/abi.ts`), made on
   * first use and shared by every spec with the same bindings.
   */
  layout(
    kind: KernelKind,
    spec: KernelSpec,
  ): { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
    const options = {
      paged: spec.paged ?? false,
      shared: spec.sharedLayout ?? false,
      kvScales: spec.kvScales === "token",
    };
    const own = kind === "merge" && !options.shared;
    const key = own
      ? "merge"
      : `decode${options.paged ? " paged" : ""}${options.kvScales ? " scales" : ""}`;
    let layout = this.#layouts.get(key);
    if (!layout) {
      const group = createLayout(
        this.#device,
        `lean-attention ${key}`,
        kernelLayoutEntries(own ? "merge" : "decode", options),
      );
      const pipeline = this.#device.createPipelineLayout({ bindGroupLayouts: [group] });
      layout = { group, pipeline };
      this.#layouts.set(key, layout);
    }
    return layout;
  }

  /**
   * The explicit layout of `sharedLayout` specs (one per paged-ness): the decode and merge
   * pipelines both use it, so one bind group serves both dispatches.
   */
  sharedLayout(spec: KernelSpec): { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
    return this.layout("decode", spec);
  }

  /** Forgets every pipeline. */
  clear(): void {
    this.#entries.clear();
    this.#layouts.clear();
  }
}

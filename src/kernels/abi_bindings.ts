/**
 * The kernel ABI's bindings: the binding numbers of the attention and append kernels by name,
 * their explicit bind group layouts, and the attention kernels' WGSL declarations generated from
 * the same layout entries (re-exported by `abi.ts`, the ABI's one face).
 *
 * @module
 */

/** Buffer binding types of a layout entry. */
export type BindingType = "uniform" | "read-only-storage" | "storage";

/**
 * Binding numbers of the attention kernels, by name. The decode and merge kernels, the dense
 * backend, the runner's encoder and the calibration probe all bind through these names.
 */
export const BINDING = {
  params: 0,
  sched: 1,
  q: 2,
  k: 3,
  v: 4,
  out: 5,
  partials: 6,
  lse: 7,
  pages: 8,
  /** The per-head table of the variants (ALiBi slopes, sinks), see `variant_wgsl.ts`. */
  heads: 9,
  /** Per-(row, KV head) scales of 8-bit K and V, `vec2<f32>(k, v)` (per-token scale kernels). */
  kvScales: 10,
} as const;

/** A name of {@linkcode BINDING}. */
export type BindingName = keyof typeof BINDING;

/** Binding numbers of the append kernel, by name. */
export const APPEND_BINDING = {
  params: 0,
  rows: 1,
  srcK: 2,
  srcV: 3,
  dstK: 4,
  dstV: 5,
  /** 8-bit caches: the layer's per-tensor scales, `vec4<f32>(k, v, -, -)` (uniform). */
  layerScale: 6,
  /** 8-bit caches: the layer's scale table, `[row][kvHead]` pairs (K's, V's scale). */
  dstScales: 7,
} as const;

/** One entry of an explicit bind group layout: binding number, name and buffer type. */
export interface LayoutEntry<N extends string = string> {
  readonly binding: number;
  readonly name: N;
  readonly type: BindingType;
}

/**
 * The explicit bind group layout of the attention kernels (no `layout: "auto"`), one for the
 * decode and the merge kernel alike, so one bind group serves both dispatches: params, sched, q,
 * K, V (and the page list when paged; the variants' per-head table of ALiBi slopes and sinks
 * with `heads`; the per-token scale table of 8-bit K and V with `kvScales`)
 * read, out, partials and LSE written. The merge kernel
 * declares the subset it uses.
 *
 * @example
 * ```ts
 * import { kernelLayoutEntries } from "./abi.ts";
 * const paged = kernelLayoutEntries({ paged: true });
 * console.log(paged.map((e) => `${e.name}@${e.binding}`).join(" "));
 * // params@0 sched@1 q@2 k@3 v@4 out@5 partials@6 lse@7 pages@8
 * ```
 */
export function kernelLayoutEntries(
  options: { readonly paged: boolean; readonly heads?: boolean; readonly kvScales?: boolean },
): LayoutEntry<BindingName>[] {
  const e = (name: BindingName, type: BindingType): LayoutEntry<BindingName> => ({
    binding: BINDING[name],
    name,
    type,
  });
  const entries = [
    e("params", "uniform"),
    e("sched", "read-only-storage"),
    e("q", "read-only-storage"),
    e("k", "read-only-storage"),
    e("v", "read-only-storage"),
    e("out", "storage"),
    e("partials", "storage"),
    e("lse", "storage"),
  ];
  if (options.paged) entries.push(e("pages", "read-only-storage"));
  if (options.heads) entries.push(e("heads", "read-only-storage"));
  if (options.kvScales) entries.push(e("kvScales", "read-only-storage"));
  return entries;
}

/**
 * WGSL variable names of the attention kernels' bindings, and the types of those whose type is
 * the same in every kernel (`q`, `k`, `v` and `out` depend on the kernel's dtypes).
 */
const BINDING_VARS: Readonly<Record<BindingName, BindingVar>> = {
  params: { name: "params", type: "Params" },
  sched: { name: "sched", type: "array<u32>" },
  q: { name: "q" },
  k: { name: "k_cache" },
  v: { name: "v_cache" },
  out: { name: "out" },
  partials: { name: "partials", type: "array<f32>" },
  lse: { name: "lse_out", type: "array<f32>" },
  pages: { name: "pages", type: "array<u32>" },
  heads: { name: "heads", type: "array<f32>" },
  kvScales: { name: "kv_scales", type: "array<vec2<f32>>" },
};

/** The append kernel's binding variables (`dstK`, `dstV`: their word type is the KV dtype's). */
const APPEND_BINDING_VARS: Readonly<Record<keyof typeof APPEND_BINDING, BindingVar>> = {
  params: { name: "params", type: "AppendParams" },
  rows: { name: "rows", type: "array<u32>" },
  srcK: { name: "src_k", type: "array<f32>" },
  srcV: { name: "src_v", type: "array<f32>" },
  dstK: { name: "dst_k" },
  dstV: { name: "dst_v" },
  layerScale: { name: "layer_scale", type: "vec4<f32>" },
  dstScales: { name: "dst_scales", type: "array<vec2<f32>>" },
};

/** WGSL address space of each buffer binding type. */
const ADDRESS_SPACE: Readonly<Record<BindingType, string>> = {
  uniform: "uniform",
  "read-only-storage": "storage, read",
  storage: "storage, read_write",
};

/**
 * The `@binding` lines of the attention kernels, from the same entries as their bind group layout
 * ({@linkcode kernelLayoutEntries}), in binding order: `types` gives the WGSL types of `q`, `k`,
 * `v` and `out`, and a binding of those four without one is not declared (the merge kernel
 * declares neither q nor K nor V).
 *
 * @example
 * ```ts
 * import { kernelBindingsWGSL, kernelLayoutEntries } from "./abi.ts";
 * const wgsl = kernelBindingsWGSL(kernelLayoutEntries({ paged: false }), { out: "array<f32>" });
 * console.log(wgsl.split("\n").length, wgsl.split("\n")[2]);
 * // 5 @group(0) @binding(5) var<storage, read_write> out: array<f32>;
 * ```
 */
export function kernelBindingsWGSL(
  entries: readonly LayoutEntry<BindingName>[],
  types: Partial<Record<"q" | "k" | "v" | "out", string>>,
): string {
  return bindingsWGSL(entries, BINDING_VARS, types);
}

/**
 * The `@binding` lines of the append kernel, from its layout entries
 * ({@linkcode appendLayoutEntries}), its destination words typed `word`.
 *
 * @example
 * ```ts
 * import { appendBindingsWGSL, appendLayoutEntries } from "./abi.ts";
 * const wgsl = appendBindingsWGSL(appendLayoutEntries(), "u32");
 * console.log(wgsl.split("\n")[4]);
 * // @group(0) @binding(4) var<storage, read_write> dst_k: array<u32>;
 * ```
 */
export function appendBindingsWGSL(
  entries: readonly LayoutEntry<keyof typeof APPEND_BINDING>[],
  word: string,
): string {
  return bindingsWGSL(entries, APPEND_BINDING_VARS, {
    dstK: `array<${word}>`,
    dstV: `array<${word}>`,
  });
}

/** A binding's WGSL variable: its name, and its type where every kernel gives it the same. */
interface BindingVar {
  readonly name: string;
  readonly type?: string;
}

/** The `@binding` lines of layout entries, in their order; an entry without a type is left out. */
function bindingsWGSL<N extends string>(
  entries: readonly LayoutEntry<N>[],
  vars: Readonly<Record<N, BindingVar>>,
  types: Partial<Record<N, string>>,
): string {
  return entries.flatMap((e) => {
    const type = vars[e.name].type ?? types[e.name];
    return type === undefined
      ? []
      : [bindingWGSL(e.binding, vars[e.name].name, ADDRESS_SPACE[e.type], type)];
  }).join("\n");
}

/**
 * The explicit bind group layout of the append kernel (`scaled`: of an 8-bit cache, with the
 * layer's scales and its scale table).
 *
 * @example
 * ```ts
 * import { appendLayoutEntries } from "./abi.ts";
 * console.log(appendLayoutEntries().length, appendLayoutEntries(true).length); // 6 8
 * ```
 */
export function appendLayoutEntries(scaled = false): LayoutEntry<keyof typeof APPEND_BINDING>[] {
  const read = "read-only-storage" as const;
  const scales: LayoutEntry<keyof typeof APPEND_BINDING>[] = scaled
    ? [
      { binding: APPEND_BINDING.layerScale, name: "layerScale", type: "uniform" },
      { binding: APPEND_BINDING.dstScales, name: "dstScales", type: "storage" },
    ]
    : [];
  return [
    { binding: APPEND_BINDING.params, name: "params", type: "uniform" },
    { binding: APPEND_BINDING.rows, name: "rows", type: read },
    { binding: APPEND_BINDING.srcK, name: "srcK", type: read },
    { binding: APPEND_BINDING.srcV, name: "srcV", type: read },
    { binding: APPEND_BINDING.dstK, name: "dstK", type: "storage" },
    { binding: APPEND_BINDING.dstV, name: "dstV", type: "storage" },
    ...scales,
  ];
}

/** The `@binding` line of a binding: `@group(0) @binding(3) var<storage, read> k_cache: ...;`. */
function bindingWGSL(binding: number, name: string, space: string, type: string): string {
  return `@group(0) @binding(${binding}) var<${space}> ${name}: ${type};`;
}

/** `GPUShaderStage.COMPUTE`, spelled out for runtimes without the WebGPU globals. */
const COMPUTE_STAGE = 0x4;

/**
 * Creates the `GPUBindGroupLayout` of a list of layout entries.
 *
 * @example
 * ```ts ignore
 * const layout = createLayout(device, "append", appendLayoutEntries());
 * ```
 */
export function createLayout(
  device: GPUDevice,
  label: string,
  entries: readonly LayoutEntry[],
): GPUBindGroupLayout {
  return device.createBindGroupLayout({
    label,
    entries: entries.map((e) => ({
      binding: e.binding,
      visibility: COMPUTE_STAGE,
      buffer: { type: e.type },
    })),
  });
}

/**
 * Bind group entries from named resources, numbered by a binding table.
 *
 * @example
 * ```ts
 * import { BINDING, namedEntries } from "./abi.ts";
 * const entries = namedEntries(BINDING, { lse: { buffer: {} as GPUBuffer } });
 * console.log(entries[0].binding); // 7
 * ```
 */
export function namedEntries<N extends string>(
  table: Readonly<Record<N, number>>,
  resources: Partial<Record<N, GPUBindingResource>>,
): GPUBindGroupEntry[] {
  return (Object.keys(resources) as N[]).map((name) => ({
    binding: table[name],
    resource: resources[name]!,
  }));
}

/**
 * The KV cache's argument checks: its options and the host rows of `write` and `append` (those of
 * `encodeAppend` are in kv_append_checks.ts). Each throws `TypeError` for a wrong type and
 * `RangeError` for a wrong value, naming the field and the value, before the cache changes.
 *
 * @module
 */

import { encodeKV, KV_DTYPE_INFO } from "../core/dtypes.ts";
import { KV_DTYPES, type KVArray, type KVDtype, MAX_HEAD_DIM } from "../core/problem.ts";
import {
  checkKVScale,
  dynamicKv8Scales,
  encodeKv8,
  type Kv8Format,
  kvScaleTable,
} from "../core/kv8.ts";
import { positiveInt } from "./checks.ts";
import type { AppendData, KVCacheOptions } from "./kv_cache_types.ts";
import { checkNoValues } from "./kv_values_from_keys.ts";
import { vFromKOf } from "../core/field_checks.ts";

/** A cache's options, checked and with their defaults. */
export interface CheckedCacheOptions {
  readonly numLayers: number;
  readonly numKVHeads: number;
  readonly headDim: number;
  /** V's head dim (`headDim` unless the options give another). */
  readonly headDimV: number;
  /** V is the first `headDimV` dims of each K row (no V storage). */
  readonly vFromK: boolean;
  readonly kvDtype: KVDtype;
  readonly pageSize: number;
  readonly numPages: number;
  readonly device: GPUDevice | undefined;
  /** 8-bit caches with `kvScales: "tensor"`: each layer's K and V scale. */
  readonly tensorScales?: LayerScales;
}

/** One K and one V scale per layer (8-bit caches created with `kvScales: "tensor"`). */
export interface LayerScales {
  readonly k: Float64Array;
  readonly v: Float64Array;
}

/** A layer's fixed per-tensor scales, which its writes must use. */
export interface FixedScales {
  readonly k: number;
  readonly v: number;
  readonly layer: number;
}

/** Checks a cache's per-tensor scale option: a number > 0 or one per layer (default 1). */
function checkLayerScales(name: string, value: unknown, numLayers: number): Float64Array {
  if (value === undefined) return new Float64Array(numLayers).fill(1);
  const list = typeof value === "number" ? new Array(numLayers).fill(value) : value;
  if (!Array.isArray(list)) {
    throw new TypeError(
      `${name} must be a number or an array with one scale per layer: got ${typeof value}`,
    );
  }
  if (list.length !== numLayers) {
    throw new RangeError(
      `${name} must have one scale per layer (${numLayers}): got ${list.length} entries`,
    );
  }
  return Float64Array.from(
    list,
    (s, l) => checkKVScale(typeof value === "number" ? name : `${name}[${l}]`, s, 1, 1) as number,
  );
}

/** The row layout the row checks need (V rows may be of their own head dim, `headDimV`). */
export interface RowLayout {
  readonly kvDtype: KVDtype;
  readonly rowElements: number;
  readonly rowElementsV: number;
  readonly numKVHeads: number;
  readonly headDim: number;
  readonly headDimV: number;
  readonly numLayers: number;
  /** V is the first `headDimV` dims of each K row: writes give no V. */
  readonly vFromK?: boolean;
}

/** Checks a head dim option: a multiple of 8 from 8 to `MAX_HEAD_DIM`. */
function checkHeadDim(name: string, value: unknown): number {
  const dim = positiveInt(name, value, MAX_HEAD_DIM);
  if (dim % 8 !== 0) {
    throw new RangeError(`${name} must be a multiple of 8 from 8 to ${MAX_HEAD_DIM}: got ${dim}`);
  }
  return dim;
}

/** Checks {@linkcode KVCacheOptions} and fills in their defaults. */
export function checkCacheOptions(options: KVCacheOptions): CheckedCacheOptions {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `options must be an object: got ${options === null ? "null" : typeof options}`,
    );
  }
  const numLayers = positiveInt("numLayers", options.numLayers, 4096);
  const numKVHeads = positiveInt("numKVHeads", options.numKVHeads, 4096);
  const headDim = checkHeadDim("headDim", options.headDim);
  const headDimV = options.headDimV === undefined
    ? headDim
    : checkHeadDim("headDimV", options.headDimV);
  const vFromK = vFromKOf(options.vFromK, headDim, headDimV);
  const kvDtype = options.kvDtype ?? "f32";
  if (typeof kvDtype !== "string") {
    throw new TypeError(`kvDtype must be a string: got ${typeof kvDtype}`);
  }
  if (!KV_DTYPES.includes(kvDtype)) {
    throw new RangeError(
      `kvDtype must be one of ${KV_DTYPES.map((d) => `"${d}"`).join(", ")}: got ${
        JSON.stringify(kvDtype)
      }`,
    );
  }
  const pageSize = positiveInt("pageSize", options.pageSize ?? 16, 65536);
  if ((pageSize & (pageSize - 1)) !== 0) {
    throw new RangeError(`pageSize must be a power of two from 1 to 65536: got ${pageSize}`);
  }
  const numPages = positiveInt("numPages", options.numPages);
  const device = options.device;
  if (device !== undefined && typeof device?.createBuffer !== "function") {
    throw new TypeError(`device must be a GPUDevice: got ${typeof device}`);
  }
  const mode = options.kvScales ?? "token";
  if (mode !== "token" && mode !== "tensor") {
    throw new (typeof mode === "string" ? RangeError : TypeError)(
      `kvScales must be "token" or "tensor": got ${
        typeof mode === "string" ? JSON.stringify(mode) : typeof mode
      }`,
    );
  }
  const scaled = KV_DTYPE_INFO[kvDtype].scaled;
  if (mode === "tensor" && !scaled) {
    throw new RangeError(
      `kvScales "tensor" applies to 8-bit caches only: got kvDtype "${kvDtype}"`,
    );
  }
  for (const f of ["kScale", "vScale"] as const) {
    if (options[f] !== undefined && mode !== "tensor") {
      throw new RangeError(
        `${f} applies to caches created with kvScales "tensor" (per-token scales come with each write): got ${
          JSON.stringify(options[f])
        }`,
      );
    }
  }
  if (vFromK) checkNoValues({ vScale: options.vScale });
  const kScales = mode === "tensor"
    ? checkLayerScales("kScale", options.kScale, numLayers)
    : undefined;
  const tensorScales = kScales
    ? { k: kScales, v: vFromK ? kScales : checkLayerScales("vScale", options.vScale, numLayers) }
    : undefined;
  return {
    numLayers,
    numKVHeads,
    headDim,
    headDimV,
    vFromK,
    kvDtype,
    pageSize,
    numPages,
    device,
    ...(tensorScales ? { tensorScales } : {}),
  };
}

/**
 * Checks a write's scale (`name`) against the layer's fixed per-tensor scale of a cache created
 * with `kvScales: "tensor"`: absent, or the same number (as f32, which the cache stores).
 */
export function checkFixedScale(
  name: string,
  scale: unknown,
  fixed: number,
  layer: number,
): number {
  if (
    scale !== undefined && typeof scale !== "number" && scale !== "dynamic" &&
    !(scale instanceof Float32Array)
  ) {
    throw new TypeError(`${name} must be a number: got ${typeof scale}`);
  }
  if (
    scale !== undefined &&
    !(typeof scale === "number" && Math.fround(scale) === Math.fround(fixed))
  ) {
    throw new RangeError(
      `${name} must be left out or be layer ${layer}'s per-tensor scale (${fixed}) in a cache created with kvScales "tensor": got ${
        typeof scale === "number" || typeof scale === "string"
          ? JSON.stringify(scale)
          : (scale as object)?.constructor?.name ?? typeof scale
      }`,
    );
  }
  return fixed;
}

/** Checks a layer index of a cache of `numLayers` layers. */
export function checkLayer(layer: unknown, numLayers: number): number {
  if (typeof layer !== "number") {
    throw new TypeError(`layer must be a number: got ${typeof layer}`);
  }
  if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
    throw new RangeError(
      `layer must be an integer from 0 to ${numLayers - 1}: got ${layer}`,
    );
  }
  return layer;
}

/**
 * Checks `tokens` host rows of K or V (`tensor`: which; V rows have `headDimV` dims) and returns
 * them in the cache's dtype.
 */
export function checkRows(
  cache: RowLayout,
  name: string,
  data: unknown,
  tokens: number,
  tensor: "k" | "v" = "k",
): KVArray {
  const dim = tensor === "k" ? cache.headDim : cache.headDimV;
  const want = tokens * cache.numKVHeads * dim;
  const info = KV_DTYPE_INFO[cache.kvDtype];
  if (info.scaled) {
    if (!(data instanceof Float32Array) && !(data instanceof info.HostArray)) {
      throw new TypeError(
        `${name} must be a Float32Array or a ${info.HostArray.name} of codes (kvDtype "${cache.kvDtype}"): got ${
          (data as object)?.constructor?.name ?? typeof data
        }`,
      );
    }
  } else if (!info.packed) {
    if (!(data instanceof Float32Array)) {
      throw new TypeError(`${name} must be a Float32Array (kvDtype "f32"): got ${typeof data}`);
    }
  } else if (!(data instanceof Float32Array) && !(data instanceof Uint16Array)) {
    throw new TypeError(
      `${name} must be a Float32Array or a Uint16Array of bit patterns (kvDtype "${cache.kvDtype}"): got ${typeof data}`,
    );
  }
  if (data.length !== want) {
    throw new RangeError(
      `${name} must have ${want} elements (${tokens} tokens x ${cache.numKVHeads} KV heads x ${dim}): got ${data.length}`,
    );
  }
  return data instanceof Float32Array && !info.scaled ? encodeKV(data, cache.kvDtype) : data;
}

/**
 * Checks one layer's rows of an 8-bit cache with their scales (`name` prefixes the fields, e.g.
 * `"k"` or `"k[1]"`), quantises `Float32Array` rows with their scale, and returns the codes and
 * the `[token][kvHead][2]` scale table the storage keeps. Other dtypes: rejects scales. A cache
 * with `vFromK` takes no `v` and no `vScale` (`TypeError`), returns no `v`, and its scale table
 * holds K's scale in V's column too.
 */
export function checkScaledRows(
  cache: RowLayout,
  rows: { k: unknown; v?: unknown; kScale?: unknown; vScale?: unknown },
  tokens: number,
  names: { k: string; v: string; kScale: string; vScale: string },
  fixed?: FixedScales,
): { k: KVArray; v?: KVArray; scales?: Float32Array } {
  const info = KV_DTYPE_INFO[cache.kvDtype];
  if (cache.vFromK) checkNoValues(rows, names);
  const k = checkRows(cache, names.k, rows.k, tokens);
  const v = cache.vFromK ? undefined : checkRows(cache, names.v, rows.v, tokens, "v");
  if (!info.scaled) {
    for (const f of ["kScale", "vScale"] as const) {
      if (rows[f] !== undefined) {
        throw new RangeError(
          `${names[f]} applies to 8-bit caches only: got a scale for kvDtype "${cache.kvDtype}"`,
        );
      }
    }
    return { k, v };
  }
  const entries = tokens * cache.numKVHeads;
  const format = cache.kvDtype as Kv8Format;
  const scaleOf = (name: string, scale: unknown, data: KVArray, dim: number, f?: number) => {
    if (fixed) return checkFixedScale(name, scale, f!, fixed.layer);
    if (scale !== "dynamic") return checkKVScale(name, scale ?? 1, entries, data.length);
    if (!(data instanceof Float32Array)) {
      throw new TypeError(
        `${name} may be "dynamic" for Float32Array rows only: got ${data.constructor.name} codes`,
      );
    }
    return dynamicKv8Scales(data, format, dim);
  };
  const kScale = scaleOf(names.kScale, rows.kScale, k, cache.headDim, fixed?.k);
  // vFromK: V's codes are K's, and so is its scale.
  const vScale = v ? scaleOf(names.vScale, rows.vScale, v, cache.headDimV, fixed?.v) : kScale;
  return {
    k: k instanceof Float32Array ? encodeKv8(k, format, kScale, names.k) : k,
    ...(v ? { v: v instanceof Float32Array ? encodeKv8(v, format, vScale, names.v) : v } : {}),
    scales: kvScaleTable(kScale, vScale, 0, entries),
  };
}

/**
 * Checks `append`'s per-layer arrays and returns them with their token count (`v`: one entry per
 * layer, all `undefined` for a cache with `vFromK`, which takes no `v` and no `vScale`).
 */
export function checkAppendData(
  cache: RowLayout,
  data: AppendData,
): {
  k: unknown[];
  v: readonly unknown[];
  kScale?: readonly unknown[];
  vScale?: readonly unknown[];
  tokens: number;
} {
  const { k, kScale, vScale } = data ?? {};
  if (cache.vFromK) checkNoValues(data ?? {});
  const v = cache.vFromK ? new Array(cache.numLayers) : data?.v;
  for (const [name, s] of [["kScale", kScale], ["vScale", vScale]] as const) {
    if (s !== undefined && (!Array.isArray(s) || s.length !== cache.numLayers)) {
      throw new (Array.isArray(s) ? RangeError : TypeError)(
        `${name} must be an array with one scale per layer (${cache.numLayers}): got ${
          Array.isArray(s) ? `${s.length} entries` : typeof s
        }`,
      );
    }
  }
  const kv = cache.vFromK ? "k" : "k and v";
  if (!Array.isArray(k) || !Array.isArray(v)) {
    throw new TypeError(`${kv} must be arrays with one array per layer`);
  }
  if (k.length !== cache.numLayers || v.length !== cache.numLayers) {
    throw new RangeError(
      `${kv} must hold one array per layer (${cache.numLayers}): got ${k.length}${
        cache.vFromK ? "" : ` and ${v.length}`
      }`,
    );
  }
  const first = k[0]?.length;
  const tokens = typeof first === "number" ? first / cache.rowElements : NaN;
  if (!Number.isInteger(tokens)) {
    throw new RangeError(
      `k[0] must hold whole token rows of ${cache.rowElements} elements: got ${first}`,
    );
  }
  return { k, v, kScale, vScale, tokens };
}

/**
 * Filling a KV cache's rows: one layer's host rows into the rows `extend` reserved (`write`), a
 * sequence's new tokens of every layer from host arrays (`append`), and the arguments of a GPU
 * append (`encodeAppend`) checked into the append kernel's job. Each runs after the cache's own
 * checks (disposed, device lost, layer, sequence) and checks its rows before writing any.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { AppendData, AppendSlots, EncodeAppendOptions, LayerRows } from "./kv_cache_types.ts";
import { isCommandEncoder, isComputePass } from "./checks.ts";
import type { AppendPath } from "./kv_append.ts";
import type { KVStorage } from "./kv_storage.ts";
import type { PageTables } from "./page_tables.ts";
import { checkAppendBuffers, checkAppendScale } from "./kv_append_checks.ts";
import {
  checkAppendData,
  checkScaledRows,
  type FixedScales,
  type LayerScales,
  type RowLayout,
} from "./kv_cache_checks.ts";

/** A layer's fixed scales in a cache with per-tensor scales (none otherwise). */
function fixedScales(c: CacheRows, layer: number): FixedScales | undefined {
  const t = c.tensorScales;
  return t ? { k: t.k[layer], v: t.v[layer], layer } : undefined;
}

/** Field names of `write`'s rows in error messages. */
const ROW_NAMES = { k: "k", v: "v", kScale: "kScale", vScale: "vScale" } as const;

/** The parts of a cache its row writes use. */
export interface CacheRows {
  /** The cache's row shape (for the checks). */
  readonly cache: RowLayout;
  /** 8-bit caches created with `kvScales: "tensor"`: each layer's scales, which writes use. */
  readonly tensorScales?: LayerScales;
  /** Its sequences' page tables (the slots' rows). */
  readonly tables: PageTables;
  /** Its K and V rows. */
  readonly store: KVStorage;
}

/**
 * `KVCache.write` after the cache's checks: checks one layer's host rows against the rows
 * `slots` reserved, then writes them.
 *
 * @example
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 2 });
 * const slots = cache.extend([cache.addSequence()], 1);
 * cache.write(slots, 0, { k: new Float32Array(8), v: new Float32Array(8) }); // writeSlotRows
 * ```
 */
export function writeSlotRows(
  c: CacheRows,
  slots: AppendSlots,
  layer: number,
  rows: LayerRows,
): void {
  const rowIds = c.tables.slotRows(slots);
  const n = rowIds.length;
  const { k, v, scales } = checkScaledRows(
    c.cache,
    rows ?? {},
    n,
    ROW_NAMES,
    fixedScales(c, layer),
  );
  c.store.writeRows(rowIds, layer, k, v, scales);
}

/**
 * `KVCache.append` after the cache's checks: checks every layer's host rows, then grows the
 * sequence (`extend`, given the tokens) and writes them.
 *
 * @example
 * ```ts
 * import { createKVCache } from "@lean/attention/runner";
 * const cache = createKVCache({ numLayers: 1, numKVHeads: 1, headDim: 8, pageSize: 4, numPages: 2 });
 * const seq = cache.addSequence();
 * cache.append(seq, { k: [new Float32Array(8)], v: [new Float32Array(8)] }); // appendHostRows
 * console.log(cache.length(seq)); // 1
 * ```
 */
export function appendHostRows(
  c: CacheRows,
  data: AppendData,
  extend: (tokens: number) => AppendSlots,
): AppendSlots {
  const { k, v, kScale, vScale, tokens } = checkAppendData(c.cache, data);
  const rows = k.map((a, l) =>
    checkScaledRows(c.cache, { k: a, v: v[l], kScale: kScale?.[l], vScale: vScale?.[l] }, tokens, {
      k: `k[${l}]`,
      v: `v[${l}]`,
      kScale: `kScale[${l}]`,
      vScale: `vScale[${l}]`,
    }, fixedScales(c, l))
  );
  const slots = extend(tokens);
  const rowIds = c.tables.slotRows(slots);
  for (let l = 0; l < c.cache.numLayers; l++) {
    c.store.writeRows(rowIds, l, rows[l].k, rows[l].v, rows[l].scales);
  }
  return slots;
}

/**
 * `KVCache.encodeAppend` after the cache's checks (disposed, device lost): checks the device, the
 * layer (`checkLayer`), the slots, the
 * runner's buffers, the target and the scales, then records one layer's append with the append
 * path (`path`, made on first use); 0 tokens record nothing. A cache with `vFromK` takes no `v`
 * and no `vScale` (`TypeError`): the kernel writes K's rows and, 8-bit, K's scale as V's too.
 *
 * @example
 * ```ts ignore
 * // A GPU cache's encodeAppend calls it; see KVCache.encodeAppend.
 * cache.encodeAppend(encoder, { slots, layer: 0, k: kBuffer, v: vBuffer });
 * ```
 */
export function encodeAppendRows(
  c: CacheRows,
  target: GPUCommandEncoder | GPUComputePassEncoder,
  options: EncodeAppendOptions,
  checkLayer: () => number,
  path: () => AppendPath,
): void {
  if (!c.store.gpuK.length) {
    throw new TypeError("encodeAppend needs a GPU cache: this cache is in host memory");
  }
  const layer = checkLayer();
  const { slots, k, v } = options;
  const rowIds = c.tables.slotRows(slots);
  const tokens = rowIds.length;
  checkAppendBuffers(c.cache, { k, v, vScale: options.vScale }, tokens, (b) => c.store.owns(b));
  const pass = isComputePass(target) ? target : undefined;
  if (!pass && !isCommandEncoder(target)) {
    throw new TypeError("target must be a GPUCommandEncoder or a GPUComputePassEncoder");
  }
  const scaled = KV_DTYPE_INFO[c.cache.kvDtype].scaled;
  const fixed = fixedScales(c, layer);
  const kScale = checkAppendScale(
    c.cache.kvDtype,
    "kScale",
    options.kScale,
    fixed && { scale: fixed.k, layer },
  );
  // vFromK: no V (checked above); the kernel stores K's scale as V's.
  const vScale = c.cache.vFromK ? kScale : checkAppendScale(
    c.cache.kvDtype,
    "vScale",
    options.vScale,
    fixed && { scale: fixed.v, layer },
  );
  if (tokens === 0) return;
  path().record(target, pass, {
    slots,
    rowIds,
    layer,
    k,
    v: c.cache.vFromK ? undefined : v,
    dstK: c.store.gpuK[layer],
    dstV: c.store.gpuV[layer],
    ...(scaled ? { dstScales: c.store.gpuScales[layer], kScale, vScale } : {}),
  });
}

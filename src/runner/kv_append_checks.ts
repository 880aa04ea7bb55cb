/**
 * The KV cache's checks of `encodeAppend`'s arguments: the runner's source buffers and the
 * per-tensor scales the append kernel quantises 8-bit rows with. Each throws `TypeError` for a
 * wrong type and `RangeError` for a wrong value, naming the field and the value, before anything
 * is recorded.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVDtype } from "../core/problem.ts";
import { checkKVScale } from "../core/kv8.ts";
import { BufferUsage } from "../gpu/gpu_runtime.ts";
import { isBuffer } from "./checks.ts";
import { checkFixedScale, type RowLayout } from "./kv_cache_checks.ts";
import { checkNoValues } from "./kv_values_from_keys.ts";

/**
 * Checks `encodeAppend`'s source buffers: `GPUBuffer`s with STORAGE usage, holding `tokens` f32
 * rows, and not the cache's own storage (`owned`). A cache with `vFromK` takes no `v` (nor the
 * `vScale` given in `buffers`).
 */
export function checkAppendBuffers(
  cache: RowLayout,
  buffers: { k: unknown; v?: unknown; vScale?: unknown },
  tokens: number,
  owned: (b: GPUBuffer) => boolean,
): void {
  const { k, v } = buffers;
  if (cache.vFromK) checkNoValues(buffers);
  if (!isBuffer(k)) throw new TypeError(`k must be a GPUBuffer: got ${typeof k}`);
  if (!cache.vFromK && !isBuffer(v)) throw new TypeError(`v must be a GPUBuffer: got ${typeof v}`);
  const list = cache.vFromK ? [["k", k]] as const : [["k", k], ["v", v as GPUBuffer]] as const;
  for (const [name, b] of list) {
    const row = name === "k" ? cache.rowElements : cache.rowElementsV;
    const need = tokens * row * 4;
    if (b.size < need) {
      throw new RangeError(
        `${name} must hold ${tokens} f32 rows of ${row} (${need} bytes): got ${b.size} bytes`,
      );
    }
    if (typeof b.usage === "number" && (b.usage & BufferUsage.STORAGE) === 0) {
      throw new TypeError(
        `${name} must be a GPUBuffer with STORAGE usage: got usage 0x${b.usage.toString(16)}`,
      );
    }
    if (owned(b)) {
      throw new RangeError(`${name} must not be one of this cache's own K/V buffers`);
    }
  }
}

/**
 * Checks `encodeAppend`'s per-tensor scale of an 8-bit cache (default 1); other dtypes take
 * none.
 */
export function checkAppendScale(
  kvDtype: KVDtype,
  name: string,
  scale: unknown,
  fixed?: { scale: number; layer: number },
): number | "dynamic" {
  if (!KV_DTYPE_INFO[kvDtype].scaled) {
    if (scale !== undefined) {
      throw new RangeError(
        `${name} applies to 8-bit caches only: got a scale for kvDtype "${kvDtype}"`,
      );
    }
    return 1;
  }
  if (fixed) return checkFixedScale(name, scale, fixed.scale, fixed.layer);
  if (scale === "dynamic") return scale;
  if (scale !== undefined && typeof scale !== "number") {
    throw new TypeError(
      `${name} must be a number or "dynamic" (write other per-token scales with write()): got ${typeof scale}`,
    );
  }
  return checkKVScale(name, scale ?? 1, undefined, 1) as number;
}

/**
 * The attention encoder's argument checks: the K/V storage a plan reads (its cache's layer, with
 * the stale-plan check, or the caller's buffers) and the runner's buffers (type, usage, size,
 * aliasing). Everything is checked before anything is recorded: a bad buffer would otherwise
 * invalidate the runner's whole command buffer.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { BufferUsage } from "../gpu/gpu_runtime.ts";
import { cacheById } from "./cache_registry.ts";
import { isBuffer } from "./checks.ts";
import type { BufferInfo } from "./encoder_tables.ts";
import type { EncodeAttentionOptions } from "./encoder_types.ts";
import type { PagedPlan } from "./paged_plan.ts";

/**
 * The K and V buffers an encode reads: the layer of the plan's cache (found by its identity
 * token; a plan of an older cache version is stale) or the `k` and `v` given.
 */
export function encodeStorage(
  plan: PagedPlan,
  options: EncodeAttentionOptions,
  device: GPUDevice,
): { k: GPUBuffer; v: GPUBuffer } {
  let k = options.k;
  let v = options.v;
  const cache = plan.cacheId === undefined ? undefined : cacheById(plan.cacheId);
  if (plan.cacheId !== undefined && !cache && options.layer !== undefined) {
    throw new RangeError("plan is stale: its cache is gone; plan again on a live cache");
  }
  if (cache && cache.device !== device) {
    throw new TypeError("plan must be made from a KVCache on this encoder's device");
  }
  if (options.layer !== undefined) {
    if (!cache) throw new TypeError("layer needs a plan made from a cache: pass k and v instead");
    if (cache.version !== plan.cacheVersion) {
      throw new RangeError(
        `plan is stale: the cache changed (version ${cache.version}, planned at ${plan.cacheVersion}); plan again after extend, fork or free`,
      );
    }
    ({ k, v } = cache.layerBuffers(options.layer));
  } else if (!isBuffer(k) || !isBuffer(v)) {
    throw new TypeError("encode needs a layer (plans of a cache) or k and v GPUBuffers");
  }
  return { k: k as GPUBuffer, v: v as GPUBuffer };
}

/** The runner's buffers seen so far, and their checks. */
export class RunnerBuffers {
  #info = new WeakMap<GPUBuffer, BufferInfo>();

  /**
   * A runner buffer's size and usage, checked to be a `GPUBuffer` on first sight. They never
   * change, and reading them from Dawn's objects crosses into native code: known buffers are
   * looked up.
   */
  #infoOf(name: string, b: unknown): BufferInfo {
    let info = this.#info.get(b as GPUBuffer);
    if (info === undefined) {
      if (!isBuffer(b)) throw new TypeError(`${name} must be a GPUBuffer: got ${typeof b}`);
      const usage = (b as { usage?: unknown }).usage;
      info = { size: b.size, usage: typeof usage === "number" ? usage : undefined };
      this.#info.set(b, info);
    }
    return info;
  }

  /** Checks a buffer the kernels bind as storage: a `GPUBuffer`, STORAGE usage, large enough. */
  check(name: string, b: unknown, bytes: number): void {
    const { size, usage } = this.#infoOf(name, b);
    if (usage !== undefined && (usage & BufferUsage.STORAGE) === 0) {
      throw new TypeError(
        `${name} must be a GPUBuffer with STORAGE usage: got usage 0x${usage.toString(16)}`,
      );
    }
    if (size < bytes) {
      throw new RangeError(`${name} must hold at least ${bytes} bytes for this plan: got ${size}`);
    }
  }

  /** Checks an encode's buffers for a plan: each one's size, and no written buffer bound twice. */
  checkAll(
    plan: PagedPlan,
    b: { q: unknown; out: unknown; lse: unknown; k: unknown; v: unknown },
  ): void {
    const { q, out, lse, k, v } = b;
    const p = plan.problem;
    const rows = p.totalQueries * p.numHeads;
    const kvBytes = plan.kv.numPages * plan.kv.pageSize * p.numKVHeads *
      KV_DTYPE_INFO[p.kvDtype].bytes;
    this.check("q", q, 4 * rows * p.headDim);
    this.check("out", out, 4 * rows * p.headDimV);
    this.check("k", k, kvBytes * p.headDim);
    this.check("v", v, kvBytes * p.headDimV);
    if (lse !== undefined) this.check("lse", lse, 4 * rows);
    // A buffer written by a dispatch may not be bound again in it.
    if (out === q) throw new RangeError("out must not be the same buffer as q");
    if (lse !== undefined && (lse === q || lse === out)) {
      throw new RangeError(`lse must not be the same buffer as ${lse === q ? "q" : "out"}`);
    }
    for (const [name, x] of [["out", out], ["lse", lse]] as const) {
      if (x !== undefined && (x === k || x === v)) {
        throw new RangeError(`${name} must not be the K/V storage the plan reads`);
      }
    }
  }
}

/**
 * The attention encoder's argument checks: the K/V storage a plan reads (its cache's layer, with
 * the stale-plan check, or the caller's buffers) and the runner's buffers (type, usage, size,
 * aliasing). Everything is checked before anything is recorded: a bad buffer would otherwise
 * invalidate the runner's whole command buffer.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { describe } from "../core/field_checks.ts";
import { variantFlags } from "../core/variant_options.ts";
import { kernelLayoutEntries } from "../kernels/abi.ts";
import { needsHeadTable } from "../kernels/variant_wgsl.ts";
import { BufferUsage } from "../gpu/gpu_runtime.ts";
import { cacheById } from "./cache_registry.ts";
import { isBuffer } from "./checks.ts";
import type { BufferInfo } from "./encoder_tables.ts";
import type { EncodeAttentionOptions } from "./encoder_types.ts";
import type { PagedPlan } from "./paged_plan.ts";

/** A runner buffer as the encoder binds it: a whole `GPUBuffer` or a range of one. */
export type RunnerBuffer = GPUBuffer | GPUBufferBinding;

/** A checked binding: buffer, byte offset and byte size. */
export interface CheckedBinding {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly size: number;
}

/**
 * The K and V storage an encode reads: the layer of the plan's cache (found by its identity
 * token; a plan of an older cache version is stale) or the `k` and `v` given (buffers or
 * bindings).
 */
export function encodeStorage(
  plan: PagedPlan,
  options: EncodeAttentionOptions,
  device: GPUDevice,
): { k: RunnerBuffer; v: RunnerBuffer; scales?: RunnerBuffer } {
  let k = options.k;
  let v = options.v;
  let scales = options.kvScales;
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
    ({ k, v, scales } = cache.layerBuffers(options.layer));
  } else if (plan.problem.vFromK) {
    // V is the first headDimV dims of K's rows (MLA's latent): the kernels read it from `k`.
    if (v !== undefined) {
      throw new TypeError(
        `v must be absent for a plan with vFromK (V is read from k's pages): got ${describe(v)}`,
      );
    }
    if (!isBuffer(bufferOf(k))) {
      throw new TypeError("encode needs a layer (plans of a cache) or a k GPUBuffer (or binding)");
    }
    v = k;
  } else if (!isBuffer(bufferOf(k)) || !isBuffer(bufferOf(v))) {
    throw new TypeError(
      "encode needs a layer (plans of a cache) or k and v GPUBuffers (or GPUBufferBindings)",
    );
  }
  const scaled = KV_DTYPE_INFO[plan.problem.kvDtype].scaled;
  // Paged 8-bit kernels bind the scale table beside the page list, and ALiBi or sinks the
  // variants' per-head table: 9 storage buffers with either, 10 with both. A device that allows
  // fewer would fail the pipeline's validation silently, leaving the outputs unwritten.
  const heads = needsHeadTable("decode", variantFlags(plan.problem.variant));
  const need = kernelLayoutEntries({ paged: true, heads, kvScales: scaled })
    .filter((e) => e.type !== "uniform").length;
  const most = device.limits?.maxStorageBuffersPerShaderStage;
  if (typeof most === "number" && most < need) {
    const what = `${scaled ? `kvDtype "${plan.problem.kvDtype}" ` : ""}paged attention${
      heads ? " with ALiBi slopes or sinks" : ""
    }`;
    throw new RangeError(
      `${what} needs ${need} storage buffers per shader stage: the device allows ${most}`,
    );
  }
  if (scaled && !isBuffer(bufferOf(scales))) {
    throw new TypeError(
      `kvScales must be a GPUBuffer for kvDtype "${plan.problem.kvDtype}" (or a GPUBufferBinding: the scale table read with k and v): got ${typeof scales}`,
    );
  }
  return {
    k: k as RunnerBuffer,
    v: v as RunnerBuffer,
    ...(scaled ? { scales: scales as RunnerBuffer } : {}),
  };
}

/** The buffer of a buffer or binding (undefined for anything else). */
function bufferOf(x: unknown): unknown {
  return isBuffer(x) ? x : (x as GPUBufferBinding | undefined)?.buffer;
}

/** The checked buffers of one encode (the LSE the caller's or the encoder's scratch). */
export interface EncodeBindings {
  readonly q: CheckedBinding;
  readonly out: CheckedBinding;
  readonly lse: CheckedBinding;
  readonly k: CheckedBinding;
  readonly v: CheckedBinding;
}

/** Element bytes of the encoder's query and output buffers. */
export interface RunnerFormats {
  readonly qBytes: number;
  readonly outBytes: number;
}

/** The runner's buffers seen so far, and their checks. */
export class RunnerBuffers {
  #info = new WeakMap<GPUBuffer, BufferInfo>();
  #align: number;

  /** `align`: the device's `minStorageBufferOffsetAlignment`. */
  constructor(align = 256) {
    this.#align = align;
  }

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

  /**
   * Checks a buffer or binding the kernels bind as storage: a `GPUBuffer` with STORAGE usage,
   * an offset that is a multiple of the device's `minStorageBufferOffsetAlignment`, a size that
   * is a multiple of 4 within the buffer and at least `bytes`.
   */
  check(name: string, b: unknown, bytes: number): CheckedBinding {
    // A binding is an object with a `buffer` (a GPUBuffer itself has none).
    const whole = isBuffer(b) || b === null || typeof b !== "object" || !("buffer" in b);
    const buffer = whole ? b : (b as GPUBufferBinding).buffer;
    const { size, usage } = this.#infoOf(whole ? name : `${name}.buffer`, buffer);
    if (usage !== undefined && (usage & BufferUsage.STORAGE) === 0) {
      throw new TypeError(
        `${name} must be a GPUBuffer with STORAGE usage: got usage 0x${usage.toString(16)}`,
      );
    }
    let offset = 0;
    let range = size;
    if (!whole) {
      const binding = b as GPUBufferBinding;
      offset = checkBytes(`${name}.offset`, binding.offset ?? 0);
      if (offset % this.#align !== 0) {
        throw new RangeError(
          `${name}.offset must be a multiple of the device's minStorageBufferOffsetAlignment (${this.#align}): got ${offset}`,
        );
      }
      if (offset > size) {
        throw new RangeError(
          `${name}.offset must be within the buffer (${size} bytes): got ${offset}`,
        );
      }
      range = binding.size === undefined ? size - offset : checkBytes(`${name}.size`, binding.size);
      if (range % 4 !== 0) {
        throw new RangeError(`${name}.size must be a multiple of 4: got ${range}`);
      }
      if (offset + range > size) {
        throw new RangeError(
          `${name}.size must fit the buffer after the offset (${
            size - offset
          } bytes): got ${range}`,
        );
      }
    }
    if (range < bytes) {
      throw new RangeError(`${name} must hold at least ${bytes} bytes for this plan: got ${range}`);
    }
    return { buffer: buffer as GPUBuffer, offset, size: range };
  }

  /** Checks an encode's buffers for a plan: each one's range, and no written buffer bound twice. */
  checkAll(
    plan: PagedPlan,
    b: { q: unknown; out: unknown; lse: unknown; k: unknown; v: unknown; scales?: unknown },
    formats: RunnerFormats = { qBytes: 4, outBytes: 4 },
  ): Omit<EncodeBindings, "lse"> & {
    readonly lse?: CheckedBinding;
    readonly scales?: CheckedBinding;
  } {
    const p = plan.problem;
    const rows = p.totalQueries * p.numHeads;
    const kvBytes = plan.kv.numPages * plan.kv.pageSize * p.numKVHeads *
      KV_DTYPE_INFO[p.kvDtype].bytes;
    const q = this.check("q", b.q, formats.qBytes * rows * p.headDim);
    const out = this.check("out", b.out, formats.outBytes * rows * p.headDimV);
    const k = this.check("k", b.k, kvBytes * p.headDim);
    const v = this.check("v", b.v, kvBytes * p.headDimV);
    const lse = b.lse === undefined ? undefined : this.check("lse", b.lse, 4 * rows);
    const scales = b.scales === undefined
      ? undefined
      : this.check("kvScales", b.scales, plan.kv.numPages * plan.kv.pageSize * p.numKVHeads * 8);
    // A buffer written by a dispatch may not be bound again in it (whatever the ranges).
    if (out.buffer === q.buffer) throw new RangeError("out must not be the same buffer as q");
    if (lse && (lse.buffer === q.buffer || lse.buffer === out.buffer)) {
      throw new RangeError(
        `lse must not be the same buffer as ${lse.buffer === q.buffer ? "q" : "out"}`,
      );
    }
    for (const [name, x] of [["out", out], ["lse", lse]] as const) {
      if (
        x && (x.buffer === k.buffer || x.buffer === v.buffer || x.buffer === scales?.buffer)
      ) {
        throw new RangeError(`${name} must not be the K/V storage the plan reads`);
      }
    }
    return { q, out, lse, k, v, scales };
  }
}

/** A byte count or offset: a non-negative integer. */
function checkBytes(name: string, x: unknown): number {
  if (typeof x !== "number") throw new TypeError(`${name} must be a number: got ${typeof x}`);
  if (!Number.isInteger(x) || x < 0) {
    throw new RangeError(`${name} must be a non-negative integer: got ${x}`);
  }
  return x;
}

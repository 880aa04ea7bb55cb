/**
 * The storage of a paged KV cache: every layer's K and V rows, in host arrays or in GPU buffers
 * (one K and one V buffer per layer, page `n` being rows `n * pageSize ...` of each), with the
 * page copies of copy-on-write, row writes and readback. With `vFromK` (MLA's latent cache) there
 * is no V storage: V is the first `headDimV` dims of K's rows. Which rows belong to which sequence
 * is the cache's business (its page tables); this only moves rows.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import type { KVArray, KVDtype } from "../core/problem.ts";
import type { StoredRows } from "./kv_cache_types.ts";
import type { DeviceGuard } from "../gpu/device_guard.ts";
import { BufferUsage, MAP_READ } from "../gpu/gpu_runtime.ts";
import { prefixRows } from "../core/values_from_keys.ts";

/** The cache geometry the storage needs. */
export interface KVStorageShape {
  readonly numLayers: number;
  readonly numPages: number;
  readonly pageSize: number;
  readonly kvDtype: KVDtype;
  /** KV elements of one token row (all KV heads). */
  readonly rowElements: number;
  /** Bytes of one token row of K. */
  readonly rowBytes: number;
  /** V's row (`headDimV` dims per KV head): elements and bytes. */
  readonly rowElementsV: number;
  readonly rowBytesV: number;
  /** KV heads of a row (8-bit dtypes keep one K and one V scale per row and KV head). */
  readonly numKVHeads: number;
  /** Head dims of K and V (V's rows are K's rows' prefix with `vFromK`). */
  readonly headDim: number;
  readonly headDimV: number;
  /** V is the first `headDimV` dims of each K row: no V storage. */
  readonly vFromK?: boolean;
}

/** Splits a `[token][kvHead][2]` scale table into K's and V's `[token][kvHead]` scales. */
function splitScales(
  k: KVArray,
  v: KVArray,
  scales: Float32Array | undefined,
): StoredRows {
  if (!scales) return { k, v };
  const n = scales.length / 2;
  const kScale = new Float32Array(n);
  const vScale = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    kScale[i] = scales[2 * i];
    vScale[i] = scales[2 * i + 1];
  }
  return { k, v, kScale, vScale };
}

const KV_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;

/** A scale table of `bytes` holding layer `l`'s per-tensor K and V scale in every entry. */
function scalePairs(
  scales: { readonly k: Float64Array; readonly v: Float64Array },
  l: number,
  bytes: number,
): Float32Array<ArrayBuffer> {
  const table = new Float32Array(bytes / 4);
  for (let i = 0; i < table.length; i += 2) {
    table[i] = scales.k[l];
    table[i + 1] = scales.v[l];
  }
  return table;
}

/**
 * K and V rows of every layer of one cache. 8-bit dtypes add a scale table per layer beside the
 * pages, addressed by the same rows: `[row][kvHead][2]` floats, K's scale then V's (the layout
 * the decode kernel's `kvScales` binding reads). With `vFromK` there is no V storage (`hostV`
 * and `gpuV` stay empty) and V's scales are K's.
 */
export class KVStorage {
  /** Host storage per layer (host caches; no `hostV` with `vFromK`). */
  hostK: KVArray[] = [];
  hostV: KVArray[] = [];
  /** Host scale tables per layer (8-bit host caches). */
  hostScales: Float32Array[] = [];
  /** GPU buffers per layer (GPU caches; no `gpuV` with `vFromK`). */
  readonly gpuK: GPUBuffer[] = [];
  readonly gpuV: GPUBuffer[] = [];
  /** GPU scale tables per layer (8-bit GPU caches). */
  readonly gpuScales: GPUBuffer[] = [];
  readonly #shape: KVStorageShape;
  readonly #device: GPUDevice | undefined;
  #scratch: GPUBuffer | undefined;
  #created = 0;
  #live = new Set<GPUBuffer>();

  /** Floats of one row's scales (0 for dtypes without scales). */
  readonly scaleRow: number;

  /** Allocates every layer's rows; RangeError when they do not fit a binding or host memory. */
  constructor(
    shape: KVStorageShape,
    device: GPUDevice | undefined,
    tensorScales?: { readonly k: Float64Array; readonly v: Float64Array },
  ) {
    this.#shape = shape;
    this.#device = device;
    this.scaleRow = KV_DTYPE_INFO[shape.kvDtype].scaled ? 2 * shape.numKVHeads : 0;
    const scaleBytes = shape.numPages * shape.pageSize * this.scaleRow * 4;
    const layerBytes = shape.numPages * shape.pageSize * shape.rowBytes;
    const layerBytesV = shape.vFromK ? 0 : shape.numPages * shape.pageSize * shape.rowBytesV;
    if (device) {
      const max = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
      // The longer of K's and V's rows decides (MLA's V rows may differ from K's).
      const rowMax = Math.max(shape.rowBytes, shape.rowBytesV);
      if (shape.numPages * shape.pageSize * rowMax > max) {
        throw new RangeError(
          `numPages must fit one layer's ${
            shape.rowBytes >= shape.rowBytesV ? "K" : "V"
          } in one storage binding (${max} bytes, ${
            Math.floor(max / (shape.pageSize * rowMax))
          } pages): got ${shape.numPages} pages = ${
            shape.numPages * shape.pageSize * rowMax
          } bytes`,
        );
      }
      for (let l = 0; l < shape.numLayers; l++) {
        this.gpuK.push(this.createBuffer(layerBytes, KV_USAGE, `kv cache k ${l}`));
        if (!shape.vFromK) {
          this.gpuV.push(this.createBuffer(layerBytesV, KV_USAGE, `kv cache v ${l}`));
        }
        if (scaleBytes > 0) {
          const table = this.createBuffer(scaleBytes, KV_USAGE, `kv cache scales ${l}`);
          this.gpuScales.push(table);
          // Per-tensor scales: the layer's pair in every row from the start (the per-tensor
          // kernels read the first; writes store the same pair).
          if (tensorScales) {
            device.queue.writeBuffer(table, 0, scalePairs(tensorScales, l, scaleBytes));
          }
        }
      }
    } else {
      const Ctor = KV_DTYPE_INFO[shape.kvDtype].HostArray;
      const rows = shape.numPages * shape.pageSize;
      try {
        for (let l = 0; l < shape.numLayers; l++) {
          this.hostK.push(new Ctor(rows * shape.rowElements));
          if (!shape.vFromK) this.hostV.push(new Ctor(rows * shape.rowElementsV));
          if (scaleBytes > 0) {
            this.hostScales.push(
              tensorScales
                ? scalePairs(tensorScales, l, scaleBytes)
                : new Float32Array(scaleBytes / 4).fill(1),
            );
          }
        }
      } catch (e) {
        this.hostK = [];
        this.hostV = [];
        this.hostScales = [];
        throw new RangeError(
          `numPages (${shape.numPages}) of ${shape.pageSize} tokens needs ${
            shape.numLayers * (layerBytes + layerBytesV)
          } bytes of host memory for K and V: ${
            e instanceof Error ? e.message : String(e)
          }; use fewer pages or a GPU cache`,
        );
      }
    }
  }

  /** GPU buffers created so far. */
  get buffersCreated(): number {
    return this.#created;
  }

  /** GPU buffers alive now. */
  get buffersLive(): number {
    return this.#live.size;
  }

  /**
   * One layer's K, V and (8-bit dtypes) scales, of the host arrays or GPU buffers given (`v`
   * undefined when `v` holds none: a host cache with `vFromK`).
   */
  layer<T, S>(
    layer: number,
    k: T[],
    v: T[],
    scales: S[],
  ): { k: T; v: T | undefined; scales?: S } {
    const s = scales[layer];
    return { k: k[layer], v: v[layer], ...(s ? { scales: s } : {}) };
  }

  /** Whether a buffer is one of this storage's K/V buffers. */
  owns(b: GPUBuffer): boolean {
    return this.gpuK.includes(b) || this.gpuV.includes(b) || this.gpuScales.includes(b);
  }

  /** Creates and counts a buffer of this storage. */
  createBuffer(bytes: number, usage: number, label: string): GPUBuffer {
    const buffer = this.#device!.createBuffer({
      size: Math.max(16, Math.ceil(bytes / 4) * 4),
      usage,
      label: `lean-attention ${label}`,
    });
    this.#created++;
    this.#live.add(buffer);
    return buffer;
  }

  /**
   * Copies the first `tokens` rows of page `from` to page `to` in every layer: on the host at
   * once, on a GPU cache recorded into `encoder`.
   */
  copyPage(encoder: GPUCommandEncoder | undefined, from: number, to: number, tokens: number): void {
    if (encoder) this.#copyPageGpu(encoder, from, to, tokens);
    else this.#copyPageHost(from, to, tokens);
  }

  #copyPageHost(from: number, to: number, tokens: number): void {
    const sr = this.scaleRow;
    const P = this.#shape.pageSize;
    const copy = (a: KVArray, row: number) =>
      a.copyWithin(to * P * row, from * P * row, (from * P + tokens) * row);
    for (let l = 0; l < this.#shape.numLayers; l++) {
      copy(this.hostK[l], this.#shape.rowElements);
      if (this.hostV[l]) copy(this.hostV[l], this.#shape.rowElementsV);
      this.hostScales[l]?.copyWithin(to * P * sr, from * P * sr, (from * P + tokens) * sr);
    }
  }

  #copyPageGpu(encoder: GPUCommandEncoder, from: number, to: number, tokens: number): void {
    // WebGPU copies never read and write one buffer: go through a scratch page (of the longer
    // of K's and V's rows). With vFromK, gpuV is empty: K's rows (and scales) only.
    const { pageSize, rowBytes: kRow, rowBytesV: vRow } = this.#shape;
    this.#scratch ??= this.createBuffer(
      pageSize * Math.max(kRow, vRow),
      KV_USAGE,
      "kv cow scratch",
    );
    for (const [buffers, row] of [[this.gpuK, kRow], [this.gpuV, vRow]] as const) {
      const pageBytes = pageSize * row;
      const bytes = tokens * row;
      for (const b of buffers) {
        encoder.copyBufferToBuffer(b, from * pageBytes, this.#scratch, 0, bytes);
        encoder.copyBufferToBuffer(this.#scratch, 0, b, to * pageBytes, bytes);
      }
    }
    // A page's scales are smaller than its rows (a row has at least 8 bytes per KV head).
    const scalePage = this.#shape.pageSize * this.scaleRow * 4;
    for (const b of this.gpuScales) {
      const n = tokens * this.scaleRow * 4;
      encoder.copyBufferToBuffer(b, from * scalePage, this.#scratch, 0, n);
      encoder.copyBufferToBuffer(this.#scratch, 0, b, to * scalePage, n);
    }
  }

  /**
   * Writes rows of one layer (`scales`: their `[token][kvHead][2]` scale table, 8-bit dtypes;
   * `v` absent with `vFromK`, whose scale tables carry K's scale in V's column too).
   */
  writeRows(
    rowIds: Uint32Array,
    layer: number,
    k: KVArray,
    v: KVArray | undefined,
    scales?: Float32Array,
  ): void {
    const row = this.#shape.rowElements;
    const rowV = this.#shape.rowElementsV;
    const sr = this.scaleRow;
    const n = rowIds.length;
    for (let i = 0; i < n;) {
      // A run of consecutive rows is one write.
      let j = i + 1;
      while (j < n && rowIds[j] === rowIds[j - 1] + 1) j++;
      const dst = rowIds[i] * row;
      const dstV = rowIds[i] * rowV;
      const kPart = k.subarray(i * row, j * row);
      const vPart = v?.subarray(i * rowV, j * rowV);
      const sPart = scales?.subarray(i * sr, j * sr);
      if (this.#device) {
        const bytes = k.BYTES_PER_ELEMENT;
        const queue = this.#device.queue;
        queue.writeBuffer(this.gpuK[layer], dst * bytes, kPart as unknown as ArrayBuffer);
        if (vPart) {
          queue.writeBuffer(this.gpuV[layer], dstV * bytes, vPart as unknown as ArrayBuffer);
        }
        if (sPart) {
          const at = rowIds[i] * sr * 4;
          this.#device.queue.writeBuffer(
            this.gpuScales[layer],
            at,
            sPart as unknown as ArrayBuffer,
          );
        }
      } else {
        (this.hostK[layer] as Uint8Array).set(kPart as Uint8Array, dst);
        if (vPart) (this.hostV[layer] as Uint8Array).set(vPart as Uint8Array, dstV);
        if (sPart) this.hostScales[layer].set(sPart, rowIds[i] * sr);
      }
      i = j;
    }
  }

  /**
   * Reads a sequence's K and V of one layer back as dense arrays, given its pages: on a GPU cache
   * through a readback buffer it creates and destroys. With `vFromK`, V is copied out of K's rows.
   */
  async read(
    layer: number,
    pages: Uint32Array,
    numPages: number,
    length: number,
    guard: DeviceGuard | undefined,
  ): Promise<StoredRows> {
    const { rowElements: row, rowElementsV: rowV, pageSize: P, vFromK } = this.#shape;
    const sr = this.scaleRow;
    const Ctor = KV_DTYPE_INFO[this.#shape.kvDtype].HostArray;
    const k = new Ctor(length * row);
    const v = new Ctor(vFromK ? 0 : length * rowV);
    const scales = new Float32Array(length * sr);
    const rows = (
      x: KVArray,
    ) => (vFromK ? prefixRows(x, this.#shape.headDim, this.#shape.headDimV) : v);
    if (!this.#device) {
      for (let i = 0; i < numPages; i++) {
        const n = Math.min(P, length - i * P);
        const src = pages[i] * P;
        const at = i * P;
        (k as Uint8Array).set(
          this.hostK[layer].subarray(src * row, (src + n) * row) as Uint8Array,
          at * row,
        );
        if (!vFromK) {
          (v as Uint8Array).set(
            this.hostV[layer].subarray(src * rowV, (src + n) * rowV) as Uint8Array,
            at * rowV,
          );
        }
        if (sr > 0) scales.set(this.hostScales[layer].subarray(src * sr, (src + n) * sr), at * sr);
      }
      return splitScales(k, rows(k), sr > 0 ? scales : undefined);
    }
    const pageBytes = P * this.#shape.rowBytes;
    const pageBytesV = vFromK ? 0 : P * this.#shape.rowBytesV;
    const scalePage = P * sr * 4;
    // K's pages, then V's at `half` (16-byte aligned), then the scales at `half + vBytes`.
    const half = Math.max(16, Math.ceil((numPages * pageBytes) / 16) * 16);
    const vBytes = vFromK ? 0 : Math.max(16, Math.ceil((numPages * pageBytesV) / 16) * 16);
    const staging = this.createBuffer(
      half + vBytes + numPages * scalePage,
      BufferUsage.MAP_READ | BufferUsage.COPY_DST,
      "kv read",
    );
    try {
      const enc = this.#device.createCommandEncoder();
      const copy = (from: GPUBuffer, page: number, to: number, bytes: number) =>
        enc.copyBufferToBuffer(from, page * bytes, staging, to, bytes);
      for (let i = 0; i < numPages; i++) {
        copy(this.gpuK[layer], pages[i], i * pageBytes, pageBytes);
        if (!vFromK) copy(this.gpuV[layer], pages[i], half + i * pageBytesV, pageBytesV);
        if (sr > 0) {
          copy(this.gpuScales[layer], pages[i], half + vBytes + i * scalePage, scalePage);
        }
      }
      this.#device.queue.submit([enc.finish()]);
      // A lost device rejects (or never resolves) the map: fail with the loss instead.
      await guard!.whileAlive(staging.mapAsync(MAP_READ));
      const all = staging.getMappedRange();
      (k as Uint8Array).set(new Ctor(all, 0, k.length) as Uint8Array);
      (v as Uint8Array).set(new Ctor(all, half, v.length) as Uint8Array);
      if (sr > 0) scales.set(new Float32Array(all, half + vBytes, scales.length));
      staging.unmap();
    } finally {
      this.#live.delete(staging);
      staging.destroy();
    }
    return splitScales(k, rows(k), sr > 0 ? scales : undefined);
  }

  /** Destroys the GPU buffers and drops the host arrays. */
  destroy(): void {
    for (const b of this.#live) b.destroy();
    this.#live.clear();
    this.hostK = [];
    this.hostV = [];
    this.hostScales = [];
  }
}

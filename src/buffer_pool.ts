/**
 * GPU buffers reused across calls: one growable buffer per role, and a free list of readback
 * buffers (one is mapped per call in flight). A steady stream of same-shaped calls creates none.
 *
 * @module
 */

import { BufferUsage } from "./gpu_runtime.ts";

/** Rounds a byte size up to a power of two (at least 256), so growth is rare. */
function capacityFor(bytes: number): number {
  return Math.max(256, 2 ** Math.ceil(Math.log2(Math.max(1, bytes))));
}

/** Buffers by role, grown on demand and destroyed together. */
export class BufferPool {
  #device: GPUDevice;
  #byRole = new Map<string, GPUBuffer>();
  #readback: GPUBuffer[] = [];
  #all = new Set<GPUBuffer>();
  #created = 0;

  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** GPU buffers created so far. */
  get created(): number {
    return this.#created;
  }

  /** Buffers alive now. */
  get live(): number {
    return this.#all.size;
  }

  #create(bytes: number, usage: number, label: string): GPUBuffer {
    const buffer = this.#device.createBuffer({ size: capacityFor(bytes), usage, label });
    this.#created++;
    this.#all.add(buffer);
    return buffer;
  }

  #destroy(buffer: GPUBuffer): void {
    this.#all.delete(buffer);
    buffer.destroy();
  }

  /** The buffer for a role, at least `bytes` long (its contents are not kept on growth). */
  get(role: string, bytes: number, usage: number): GPUBuffer {
    const have = this.#byRole.get(role);
    if (have && have.size >= bytes && have.usage === usage) return have;
    if (have) this.#destroy(have);
    const buffer = this.#create(bytes, usage, `lean-attention ${role}`);
    this.#byRole.set(role, buffer);
    return buffer;
  }

  /** A mappable readback buffer of at least `bytes`; give it back with `releaseReadback`. */
  takeReadback(bytes: number): GPUBuffer {
    const i = this.#readback.findIndex((b) => b.size >= bytes);
    if (i >= 0) return this.#readback.splice(i, 1)[0];
    return this.#create(
      bytes,
      BufferUsage.MAP_READ | BufferUsage.COPY_DST,
      "lean-attention readback",
    );
  }

  /** Returns a readback buffer to the free list (it must be unmapped). */
  releaseReadback(buffer: GPUBuffer): void {
    if (this.#all.has(buffer)) this.#readback.push(buffer);
  }

  /** Destroys every buffer. */
  destroy(): void {
    for (const b of this.#all) b.destroy();
    this.#all.clear();
    this.#byRole.clear();
    this.#readback = [];
  }
}

/**
 * GPU buffers reused across calls: one growable buffer per role, and a free list of readback
 * buffers (one is mapped per call in flight). A steady stream of same-shaped calls creates none.
 *
 * @module
 */

import { BufferUsage } from "./gpu_runtime.ts";

/**
 * Rounds a byte size up to a power of two (at least 256), so growth is rare, but not beyond the
 * device's `maxBufferSize` (a request above it is passed on as it is, and fails validation).
 */
function capacityFor(bytes: number, maxBufferSize: number): number {
  const rounded = Math.max(256, 2 ** Math.ceil(Math.log2(Math.max(1, bytes))));
  return Math.min(rounded, Math.max(bytes, maxBufferSize));
}

/** Buffers by role, grown on demand and destroyed together. */
export class BufferPool {
  #device: GPUDevice;
  #byRole = new Map<string, GPUBuffer>();
  #readback: GPUBuffer[] = [];
  #all = new Set<GPUBuffer>();
  #created = 0;
  /** Buffers created since `begin()`, while a call is being bound. */
  #fresh: GPUBuffer[] | undefined;

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
    const size = capacityFor(bytes, this.#device.limits?.maxBufferSize ?? Number.MAX_SAFE_INTEGER);
    const buffer = this.#device.createBuffer({ size, usage, label });
    this.#created++;
    this.#all.add(buffer);
    this.#fresh?.push(buffer);
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

  /** Starts recording the buffers created, so that a failed call can release them. */
  begin(): void {
    this.#fresh = [];
  }

  /** Stops recording and returns the bytes of the buffers created since `begin()`. */
  commit(): number {
    const bytes = (this.#fresh ?? []).reduce((sum, b) => sum + b.size, 0);
    this.#fresh = undefined;
    return bytes;
  }

  /**
   * Destroys the buffers created since `begin()` and forgets them (a role whose buffer goes gets
   * a new one on its next use): a failed allocation leaves nothing half-allocated. Returns the bytes released.
   */
  rollback(): number {
    const fresh = new Set(this.#fresh ?? []);
    const bytes = [...fresh].reduce((sum, b) => sum + b.size, 0);
    this.#fresh = undefined;
    for (const [role, buffer] of this.#byRole) if (fresh.has(buffer)) this.#byRole.delete(role);
    this.#readback = this.#readback.filter((b) => !fresh.has(b));
    for (const buffer of fresh) this.#destroy(buffer);
    return bytes;
  }

  /** Destroys every buffer. */
  destroy(): void {
    for (const b of this.#all) b.destroy();
    this.#all.clear();
    this.#byRole.clear();
    this.#readback = [];
  }
}

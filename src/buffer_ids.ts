/**
 * Small integer ids for GPU buffers, by identity, for cache keys of bind groups made over them.
 * Held weakly: a buffer the caller drops is not kept alive by its id.
 *
 * @module
 */

/**
 * Hands out one id per buffer object, in first-seen order.
 *
 * @example
 * ```ts
 * import { BufferIds } from "./buffer_ids.ts";
 * const ids = new BufferIds();
 * const a = {} as GPUBuffer, b = {} as GPUBuffer;
 * console.log(ids.of(a), ids.of(b), ids.of(a)); // 0 1 0
 * ```
 */
export class BufferIds {
  #ids = new WeakMap<GPUBuffer, number>();
  #next = 0;

  /** The id of `buffer`, assigned on first sight. */
  of(buffer: GPUBuffer): number {
    let id = this.#ids.get(buffer);
    if (id === undefined) {
      id = this.#next++;
      this.#ids.set(buffer, id);
    }
    return id;
  }
}

/**
 * GPU failures turned into clear errors: a lost device (`device.lost`) makes every pending and
 * later call reject with a {@linkcode DeviceLostError}; allocations run inside `out-of-memory`
 * and `validation` error scopes, and a call whose buffers fail is rolled back (nothing it created
 * stays allocated) and rejects with a {@linkcode GPUAllocationError}.
 *
 * @module
 */

import type { BufferPool } from "./buffer_pool.ts";

/**
 * The GPU device behind a decoder, a KV cache or an attention encoder was lost (destroyed, driver
 * reset, ...). The object cannot be used again: create a new one (on a new device).
 *
 * @example
 * ```ts
 * import { DeviceLostError } from "@lean/attention";
 * const e = new DeviceLostError("destroyed", "device was lost");
 * console.log(e.message); // The GPU device was lost (reason: destroyed, device was lost): create a new decoder
 * ```
 */
export class DeviceLostError extends Error {
  /** `GPUDeviceLostInfo.reason`: `"destroyed"` or `"unknown"`. */
  readonly reason: string;

  /**
   * `reason` is the device's loss reason; `message` its message; `remedy` what the caller should
   * do (default "create a new decoder").
   */
  constructor(reason: string, message: string, remedy = "create a new decoder") {
    super(
      `The GPU device was lost (reason: ${reason}${message ? `, ${message}` : ""}): ${remedy}`,
    );
    this.name = "DeviceLostError";
    this.reason = reason;
  }
}

/**
 * A call's GPU buffers could not be created or bound (out of memory, or a validation error such
 * as a buffer over `maxBufferSize`). What the call allocated was released; the decoder is usable.
 *
 * @example
 * ```ts
 * import { GPUAllocationError } from "@lean/attention";
 * const e = new GPUAllocationError("out-of-memory", "Not enough memory left", 1 << 30);
 * console.log(e.kind, e.message.startsWith("Out of GPU memory")); // out-of-memory true
 * ```
 */
export class GPUAllocationError extends Error {
  /** Which error scope caught it. */
  readonly kind: "out-of-memory" | "validation";

  /** The error scope that failed, the GPU's message, and the bytes the call tried to allocate. */
  constructor(kind: "out-of-memory" | "validation", detail: string, bytes: number) {
    const what = kind === "out-of-memory"
      ? `Out of GPU memory allocating this call's buffers (${bytes} bytes new)`
      : `GPU buffers of this call failed validation (${bytes} bytes new)`;
    super(`${what}: ${detail}; they were released and the decoder is still usable`);
    this.name = "GPUAllocationError";
    this.kind = kind;
  }
}

/** Watches one device: loss, and error scopes around allocations. */
export class DeviceGuard {
  #device: GPUDevice;
  #lost: DeviceLostError | undefined;
  #lostSignal: Promise<never>;

  /** `remedy` ends the loss error's message (see {@linkcode DeviceLostError}). */
  constructor(device: GPUDevice, remedy?: string) {
    this.#device = device;
    this.#lostSignal = device.lost.then((info) => {
      this.#lost = new DeviceLostError(
        String(info?.reason ?? "unknown"),
        String(info?.message ?? ""),
        remedy,
      );
      throw this.#lost;
    });
    // Nobody may be waiting when the device goes: that is not an unhandled rejection.
    this.#lostSignal.catch(() => {});
  }

  /** Gives a pending `device.lost` a macrotask to resolve (error paths only). */
  #settle(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, 0));
  }

  /** The loss, once the device is lost. */
  get lost(): DeviceLostError | undefined {
    return this.#lost;
  }

  /** Throws the loss error if the device is lost. */
  check(): void {
    if (this.#lost) throw this.#lost;
  }

  /**
   * Waits for a GPU promise, rejecting with the loss error as soon as the device is lost (a map
   * may otherwise hang, or resolve on the destroyed device's stale memory).
   */
  async whileAlive<T>(promise: Promise<T>): Promise<T> {
    // Once the loss wins the race, the GPU promise's own rejection has nobody to go to.
    promise.catch(() => {});
    let value: T;
    try {
      value = await Promise.race([promise, this.#lostSignal]);
    } catch (e) {
      // A map on a lost device may reject (as a validation error) before `lost` resolves.
      await this.#settle();
      this.check();
      throw e;
    }
    // Let a loss signalled together with the map settle first.
    await Promise.resolve();
    this.check();
    return value;
  }

  /**
   * Runs `bind` (which creates pooled buffers and bind groups) inside `out-of-memory` and
   * `validation` error scopes. On any error, or an exception, the buffers it created are
   * destroyed and the call rejects.
   */
  async allocating<T>(pool: BufferPool, bind: () => T): Promise<T> {
    this.check();
    const device = this.#device;
    pool.begin();
    device.pushErrorScope("out-of-memory");
    device.pushErrorScope("validation");
    let value: T | undefined;
    let thrown: unknown;
    try {
      value = bind();
    } catch (e) {
      thrown = e;
    }
    const [validation, oom] = await Promise.all([
      device.popErrorScope().catch((e: unknown) => e as GPUError),
      device.popErrorScope().catch((e: unknown) => e as GPUError),
    ]);
    this.check();
    if (thrown !== undefined || validation || oom) {
      // Errors of a device being lost are reported as the loss.
      await this.#settle();
      this.check();
      const bytes = pool.rollback();
      if (thrown !== undefined) throw thrown;
      if (oom) throw new GPUAllocationError("out-of-memory", oom.message, bytes);
      throw new GPUAllocationError("validation", validation!.message, bytes);
    }
    pool.commit();
    return value as T;
  }
}

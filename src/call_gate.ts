/**
 * A first-come, first-served gate: one holder at a time, the others wait in call order. GPU
 * calls hold it from upload to submit, so a call that awaits an allocation check cannot have its
 * pooled buffers overwritten by another call before its work is queued.
 *
 * @module
 */

/**
 * An async mutex in call order.
 *
 * @example
 * ```ts
 * import { CallGate } from "./call_gate.ts";
 * const gate = new CallGate();
 * const release = await gate.acquire();
 * // ... upload and submit ...
 * release();
 * ```
 */
export class CallGate {
  #tail: Promise<void> = Promise.resolve();

  /** Waits for the callers before this one and returns the function that lets the next in. */
  acquire(): Promise<() => void> {
    let release!: () => void;
    const done = new Promise<void>((resolve) => release = resolve);
    const before = this.#tail;
    this.#tail = before.then(() => done);
    return before.then(() => release);
  }
}

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
 * console.log(gate.busy, gate.tryAcquire()); // true undefined
 * // ... upload and submit ...
 * release();
 * const now = gate.tryAcquire(); // free: taken without waiting
 * console.log(typeof now); // function
 * now!();
 * ```
 */
export class CallGate {
  #tail: Promise<void> = Promise.resolve();
  /** Holders and waiters: 0 when the gate is free. */
  #queued = 0;

  /** Whether a caller holds the gate or waits for it. */
  get busy(): boolean {
    return this.#queued > 0;
  }

  /** Waits for the callers before this one and returns the function that lets the next in. */
  acquire(): Promise<() => void> {
    return this.#enqueue().then((release) => release);
  }

  /**
   * Takes the gate at once when it is free (no holder, no waiter) and returns the function that
   * lets the next in; `undefined` when it is busy. A caller that must act before its first
   * `await` (take its inputs at call time) uses this, and `acquire()` otherwise.
   */
  tryAcquire(): (() => void) | undefined {
    return this.#queued === 0 ? this.#enqueue(true) : undefined;
  }

  #enqueue(now: true): () => void;
  #enqueue(): Promise<() => void>;
  #enqueue(now?: true): (() => void) | Promise<() => void> {
    this.#queued++;
    let open!: () => void;
    const done = new Promise<void>((resolve) => open = resolve);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#queued--;
      open();
    };
    const before = this.#tail;
    this.#tail = before.then(() => done);
    return now ? release : before.then(() => release);
  }
}

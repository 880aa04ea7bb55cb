/**
 * Garbage collection while Dawn devices are open in a test module. Under Deno, Dawn reports a
 * completion (`mapAsync`, `onSubmittedWorkDone`) only once earlier calls' command objects have
 * been garbage-collected (the README's "Dawn in Deno"), and a test that only awaits allocates
 * nothing that would start a collection: on lavapipe one await of the cache-model test waited
 * 164 s (session 41). A full collection every {@linkcode DAWN_COLLECT_MS} ms bounds each such
 * wait; a minor one does not free those objects (2m18s against 6 s for that test).
 *
 * The test harness starts it for Dawn over a software adapter only: on the H200 the same
 * collections made tests/tiled_test.ts through Dawn take 52 s instead of 2 s (session 41; a
 * collection after each decode had given 47 s in session 40), and they did not end the stalls of
 * Dawn under `deno test` there (README, "Dawn in Deno"). It runs where the garbage collector is
 * exposed (`--v8-flags=--expose-gc`, as `deno task test` runs) and its timer never keeps the
 * process alive.
 *
 * @module
 */

/** Milliseconds between collections while a Dawn device is open. */
export const DAWN_COLLECT_MS = 200;

let timer: ReturnType<typeof setInterval> | undefined;

/**
 * Starts the module's collector (once; later calls do nothing). Returns whether it runs: false
 * where `gc` is not exposed.
 *
 * @example
 * ```ts
 * import { collectWhileDawnIsOpen } from "./dawn_collector.ts";
 * console.log(typeof collectWhileDawnIsOpen()); // boolean
 * ```
 */
export function collectWhileDawnIsOpen(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== "function") return false;
  if (timer === undefined) {
    const id = setInterval(() => gc(), DAWN_COLLECT_MS);
    Deno.unrefTimer(id);
    timer = id;
  }
  return true;
}

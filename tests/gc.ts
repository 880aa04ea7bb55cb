/**
 * A full garbage collection on demand, without `--v8-flags=--expose-gc` on the command line (the
 * flag is set at run time through `node:v8`), for tests and soaks that check what stays alive.
 *
 * @module
 */

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/**
 * Collects garbage twice, with macrotask turns before (so `WeakRef` targets of the current job
 * may go) and after (so `FinalizationRegistry` callbacks run).
 */
export async function collectGarbage(): Promise<void> {
  const turn = () => new Promise((resolve) => setTimeout(resolve, 0));
  await turn();
  gc();
  await turn();
  gc();
  await turn();
}

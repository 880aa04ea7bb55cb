/** Types of `demo_input.js` for the TypeScript tests that import it. */

import type { DecodeInput, KVArray, KVDtype } from "../mod.ts";

/** Builds the examples' batch; `encodeKV` comes from the library. */
export function demoInput(
  encodeKV: (values: Float32Array, dtype: KVDtype) => KVArray,
): DecodeInput;

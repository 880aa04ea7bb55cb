/**
 * The backends the suite knows about, apart from tests/backends.ts, which opens each of them when
 * it loads: a test that only needs their names (to check options against each) imports this.
 *
 * @module
 */

import type { BackendName } from "../mod.ts";

/** Every backend the suite knows about, in test order. */
export const ALL_BACKENDS: readonly BackendName[] = ["cpu", "webgpu", "dawn"];

/**
 * The KV cache's checks of `vFromK` (MLA's latent cache: V is the first `headDimV` dims of each
 * K row, and the cache stores no V): the V fields its writes must leave out (the option itself is
 * `vFromKOf` of `src/core/field_checks.ts`). Each throws before the cache changes.
 *
 * @module
 */

import { describe } from "../core/field_checks.ts";

/**
 * Checks that a write to a cache created with `vFromK` gives no V (`v`) and no V scale
 * (`vScale`): `TypeError` naming the field (`names` gives the fields' names in messages).
 *
 * @example
 * ```ts
 * import { checkNoValues } from "./kv_values_from_keys.ts";
 * try {
 *   checkNoValues({ v: new Float32Array(8) });
 * } catch (e) {
 *   console.log((e as Error).message.startsWith("v must be absent with vFromK")); // true
 * }
 * ```
 */
export function checkNoValues(
  fields: { v?: unknown; vScale?: unknown },
  names: { v: string; vScale: string } = { v: "v", vScale: "vScale" },
): void {
  if (fields.v !== undefined) {
    throw new TypeError(
      `${names.v} must be absent with vFromK (V is the first headDimV dims of k's rows): got ${
        describe(fields.v)
      }`,
    );
  }
  if (fields.vScale !== undefined) {
    throw new TypeError(
      `${names.vScale} must be absent with vFromK (V's scale is K's): got ${
        describe(fields.vScale)
      }`,
    );
  }
}

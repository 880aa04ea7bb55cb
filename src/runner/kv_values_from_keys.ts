/**
 * The KV cache's checks of `vFromK` (MLA's latent cache: V is the first `headDimV` dims of each
 * K row, and the cache stores no V): the option itself, and the V fields its writes must leave
 * out. Each throws before the cache changes.
 *
 * @module
 */

import { describe } from "../core/field_checks.ts";

/**
 * Checks the `vFromK` option of a cache (default false): a boolean (`TypeError`), and with it
 * `headDimV` at most `headDim` (`RangeError`: V is a prefix of K's rows).
 *
 * @example
 * ```ts
 * import { checkVFromK } from "./kv_values_from_keys.ts";
 * console.log(checkVFromK(true, 576, 512), checkVFromK(undefined, 64, 64)); // true false
 * ```
 */
export function checkVFromK(value: unknown, headDim: number, headDimV: number): boolean {
  const vFromK = value ?? false;
  if (typeof vFromK !== "boolean") {
    throw new TypeError(`vFromK must be a boolean: got ${describe(vFromK)}`);
  }
  if (vFromK && headDimV > headDim) {
    throw new RangeError(
      `headDimV must be at most headDim (${headDim}) with vFromK (V is a prefix of K's rows): got ${headDimV}`,
    );
  }
  return vFromK;
}

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

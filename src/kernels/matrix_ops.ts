/**
 * WGSL of Dawn's experimental subgroup matrices (`chromium_experimental_subgroup_matrix`) as the
 * matrix kernel and the bench/ prototypes use them: f16 operands, f32 results, 16 x 16.
 *
 * @module
 */

/** The matrix types: f16 left and right operands, f32 results, 16 x 16. */
export const MATRIX = {
  left: "subgroup_matrix_left<f16, 16, 16>",
  right: "subgroup_matrix_right<f16, 16, 16>",
  result: "subgroup_matrix_result<f32, 16, 16>",
} as const;

/**
 * A subgroup-matrix load in the template syntax (`col`: column-major).
 *
 * @example
 * ```ts
 * import { MATRIX, matrixLoad } from "./matrix_ops.ts";
 * console.log(matrixLoad(MATRIX.right, "&kv_wg", "0u", true, "136u"));
 * // subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&kv_wg, 0u, 136u)
 * ```
 */
export const matrixLoad = (
  type: string,
  ptr: string,
  off: string,
  col: boolean,
  stride: string,
): string =>
  `subgroupMatrixLoad<${type}, ${col ? "col_major" : "row_major"}>(${ptr}, ${off}, ${stride})`;

/**
 * A row-major subgroup-matrix store.
 *
 * @example
 * ```ts
 * import { matrixStore } from "./matrix_ops.ts";
 * console.log(matrixStore("&so_wg", "0u", "s", "32u"));
 * // subgroupMatrixStore<row_major>(&so_wg, 0u, s, 32u)
 * ```
 */
export const matrixStore = (ptr: string, off: string, m: string, stride: string): string =>
  `subgroupMatrixStore<row_major>(${ptr}, ${off}, ${m}, ${stride})`;

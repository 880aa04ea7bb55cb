/**
 * The page list of a paged GPU program: each sequence's page-table entries begin at a multiple of
 * four words and are padded to a multiple of four with the sequence's last page. A kernel step
 * whose tokens span four pages (one 16-token slice each, see `KernelSpec.pageQuads`) then finds
 * its entries in one aligned `vec4<u32>`, and the entries a step reads past a sequence's end are
 * pages of that sequence (its rows there are masked), so no entry needs a clamp. Kernels that
 * read entries one at a time find them at the padded offsets all the same.
 *
 * @module
 */

import type { PagedKV } from "../plan/kv_addressing.ts";

/** Entries of one aligned read of the page list. */
const QUAD = 4;

/**
 * Where each sequence's page list starts in the program's page list (`numSeqs + 1` offsets, each
 * a multiple of four; the last is the list's length in words).
 *
 * @example
 * ```ts
 * import { programPageOffsets } from "./program_pages.ts";
 * const kv = {
 *   kind: "paged" as const, pageSize: 16, pageShift: 4, numPages: 9,
 *   pages: Uint32Array.of(5, 1, 7, 2, 0, 3), pageOffsets: Uint32Array.of(0, 5, 5, 6),
 * };
 * console.log(Array.from(programPageOffsets(kv))); // [ 0, 8, 8, 12 ]
 * ```
 */
export function programPageOffsets(kv: PagedKV): Uint32Array {
  const n = kv.pageOffsets.length - 1;
  const offsets = new Uint32Array(n + 1);
  for (let s = 0; s < n; s++) {
    const count = kv.pageOffsets[s + 1] - kv.pageOffsets[s];
    offsets[s + 1] = offsets[s] + Math.ceil(count / QUAD) * QUAD;
  }
  return offsets;
}

/**
 * Writes the program's page list into `target` from word `at`: each sequence's entries at its
 * offset of `offsets` (from {@linkcode programPageOffsets}), its last page repeated to the next
 * offset.
 *
 * @example
 * ```ts
 * import { programPageOffsets, writeProgramPages } from "./program_pages.ts";
 * const kv = {
 *   kind: "paged" as const, pageSize: 16, pageShift: 4, numPages: 9,
 *   pages: Uint32Array.of(5, 1, 7, 2, 0, 3), pageOffsets: Uint32Array.of(0, 5, 5, 6),
 * };
 * const target = new Uint32Array(12);
 * writeProgramPages(target, 0, kv, programPageOffsets(kv));
 * console.log(Array.from(target)); // [ 5, 1, 7, 2, 0, 0, 0, 0, 3, 3, 3, 3 ]
 * ```
 */
export function writeProgramPages(
  target: Uint32Array,
  at: number,
  kv: PagedKV,
  offsets: Uint32Array,
): void {
  const n = kv.pageOffsets.length - 1;
  for (let s = 0; s < n; s++) {
    const from = kv.pageOffsets[s];
    const to = kv.pageOffsets[s + 1];
    if (to === from) continue;
    target.set(kv.pages.subarray(from, to), at + offsets[s]);
    target.fill(kv.pages[to - 1], at + offsets[s] + to - from, at + offsets[s + 1]);
  }
}

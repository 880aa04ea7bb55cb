/**
 * Rewrites of the matrix-unit kernel's WGSL for the diagnostics (bench/diag_matrix_time.ts),
 * pure functions of the generated code so that tests/bench can check them without a GPU: each
 * fails loudly where the kernel lacks what it rewrites.
 *
 * @module
 */

/** Replaces every match of `re` (which must match at least once). */
export const everywhere = (re: RegExp, to: string): (code: string) => string => (code: string) => {
  if (!re.test(code)) throw new Error(`no ${re} in the matrix kernel`);
  return code.replace(new RegExp(re.source, "g"), to);
};

/**
 * The matrix kernel with the next tile's K loads moved to right after this tile's K barrier
 * (each moved load takes a copy of its address; its V load stays where it was).
 */
export function kEarly(code: string): string {
  const marker = "      // The next tile's K and V fly during the softmax and the products.\n";
  const at = code.indexOf(marker);
  if (at < 0) throw new Error("k-early: no next-tile loads in the matrix kernel");
  const load =
    / {6}(?:if \([^\n]*\) )?\{\n {8}let idx = [^\n]*\n {8}let tok = min\(\(tile0[^\n]*\n {8}let a = [^\n]*\n( {8}kw\d+ = k_cache\[a\];\n)( {8}vw\d+ = v_cache\[a\];\n) {6}\}\n/g;
  const tail = code.slice(at);
  const loads = tail.match(load) ?? [];
  if (loads.length === 0) throw new Error("k-early: no K loads after the marker");
  const guard = tail.slice(marker.length).split("\n")[0]; // `      if (tile0 + T < tok_end) {`
  const loop = code.indexOf("for (var tile0");
  const barrier = code.indexOf("      workgroupBarrier();\n", loop) +
    "      workgroupBarrier();\n".length;
  if (loop < 0 || barrier < loop || barrier > at) throw new Error("k-early: no K barrier");
  const early =
    `      // (k-early) The next tile's K, right after this tile's K was staged.\n${guard}\n${
      loads.map((l) => l.replace(/ {8}vw\d+ = v_cache\[a\];\n/, "")).join("")
    }      }\n`;
  return code.slice(0, barrier) + early + code.slice(barrier, at) +
    tail.replace(load, (l) => l.replace(/ {8}kw\d+ = k_cache\[a\];\n/, ""));
}

/** The timing diagnostic's variants (bench/diag_matrix_time.ts): undefined keeps the kernel. */
export const MATRIX_TIME_VARIANTS: Record<string, ((code: string) => string) | undefined> = {
  "as-is": undefined,
  "k-early": kEarly,
  "no-kv-reads": everywhere(
    /[kv]_cache\[a\]/,
    "vec4<u32>(0x3c003c00u ^ (tok & 1u))",
  ),
  "no-mma": everywhere(/\n *[so]\d* = subgroupMatrixMultiplyAccumulate\([^\n]*;/, ""),
  "no-score-mma": everywhere(/\n *s = subgroupMatrixMultiplyAccumulate\([^\n]*;/, ""),
  "no-pv-mma": everywhere(/\n *o\d+ = subgroupMatrixMultiplyAccumulate\([^\n]*;/, ""),
};

/**
 * Session 54's probe of the paged E5M2 miss: a matrix kernel that reads its layer's scale pair
 * from the scale table (`kv_scales[0]`, paged caches of per-tensor scales) reads it from the
 * params block instead, as the dense kernel does (`params.k_scale`, `params.v_scale`). The
 * values are then the plan's, not the layer's: for timing only. Kernels without the pattern are
 * left as they are.
 */
export function layerScalesFromParams(code: string): string {
  return code.replace(/kv_scales\[0\]\.x/g, "params.k_scale")
    .replace(/kv_scales\[0\]\.y/g, "params.v_scale");
}

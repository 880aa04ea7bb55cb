/**
 * The WGSL rewrites of bench/diag_floors.ts's variants (diagnostic only: outputs wrong, for
 * timing): the decode kernel's token loop skipped, its dispatch or the merge's emptied or cut at a
 * point of its work, dependent rounds of reads added, barriers, query loads or later pieces
 * removed, and parts of the token loop's step removed (cached K/V rows, no lane shuffles, no
 * exponentials, no f16 unpacking). Each takes a kernel's WGSL and returns it rewritten; most
 * throw, naming what they look for, where the kernel lacks it.
 *
 * @module
 */

/** A rewrite of a kernel's WGSL. */
export type Rewrite = (code: string) => string;

/** A rewrite that replaces `from` once, and fails (naming `what`) where the kernel lacks it. */
const replacing = (what: string, from: string, to: string) => (code: string) => {
  if (!code.includes(from)) throw new Error(`no ${what} in the kernel`);
  return code.replace(from, to);
};
export const noLoop = replacing(
  "token loop to skip",
  "for (var s0 = tok_begin; s0 < tok_end; s0 += STEP)",
  "for (var s0 = tok_begin; s0 < tok_begin; s0 += STEP)",
);
/** The kernel returns at once: the dispatch of this pipeline (bindings, footprint) alone. */
export const emptyDecode = replacing(
  "workgroup index to return after",
  "let w = flat_workgroup(wid, nwg);",
  "let w = flat_workgroup(wid, nwg);\n  if (params.count != 0xfffffffeu) { return; }",
);
/** The merge kernel returns at once: a second dispatch of nothing after the decode's. */
export const emptyMerge = replacing(
  "merge workgroup index to return after",
  "let flat = flat_workgroup(wid, nwg);",
  "let flat = flat_workgroup(wid, nwg);\n  if (params.count != 0xfffffffeu) { return; }",
);
/**
 * The merge kernel returns at a point of its work (session 28): before `at` (or after it, with
 * `after`), keeping what it has read alive through a test that never holds.
 */
const mergeCut = (what: string, at: string, use: string, after = true) => {
  const cut = `  if (params.count != 0xfffffffeu) {
    if (lid == 0u && ${use}) { lse_out[0] = 1.0; }
    return;
  }`;
  return replacing(what, at, after ? `${at}\n${cut}` : `${cut}\n${at}`);
};
/** ... once it has read its reduce record. */
export const mergeAfterRecord = mergeCut(
  "merge record",
  "  let empty = n == 0u;",
  "n + seq + kv_head + first + q_start == 0x7ffffffeu",
);
/** ... once it has the row's maximum and sum (and its first slots' outputs in registers). */
export const mergeAfterMaxima = mergeCut(
  "merge maxima",
  "  let row_bad = red_bad[0] != 0u;",
  "(l_all == -1.0 || pv[0] == -2.0 || row_bad)",
);
/** ... once it has the weighted sums of its slot groups (before the output). */
export const mergeAfterSums = mergeCut(
  "merge weighted sums",
  "  let row = query_row(",
  "part[lid] == -1.0",
  false,
);
/**
 * Session 32: the cost of dependent rounds of global reads. `extraRounds(what, name, expr, k)`
 * turns `let NAME = EXPR;` into a read of EXPR and then a chain of k reads, each at an address
 * that depends on the one before (any word of the schedule), whose values change NAME only if one
 * is 0xdeadbeef: the reads after wait k more round trips, the result stays the same (for any
 * real schedule).
 */
const extraRounds = (what: string, name: string, expr: string, k: number) => {
  const chain = Array.from(
    { length: k },
    (_, i) => `  let ${name}_x${i + 1} = sched[(${name}_x${i} + ${7 + i}u) % arrayLength(&sched)];`,
  ).join("\n");
  const hit = Array.from({ length: k }, (_, i) => `${name}_x${i + 1} == 0xdeadbeefu`).join(" || ");
  return replacing(
    what,
    `let ${name} = ${expr};`,
    `let ${name}_x0 = ${expr};\n${chain}\n  let ${name} = ${name}_x0 + select(0u, 1u, ${hit});`,
  );
};
/** The merge waits k more rounds before its slots' reads. */
export const mergeRounds = (k: number): Rewrite =>
  extraRounds("merge slot count", "n", "sched[f + REDUCE_NUM_SLOTS]", k);
/** The decode kernel waits one more round before its first piece's fields. */
export const decodeRound = extraRounds("piece range", "p_begin", "sched[w]", 1);
/**
 * The merge reading its slots from another buffer at the same indices (folded into its length):
 * `out` (written by the last pass's merge) or the schedule (written once, by the host). Values
 * wrong, for timing: whether the merge's first read of the slots costs more because the decode
 * dispatch just wrote them.
 */
export const mergeReadsFrom = (buffer: "out" | "sched"): Rewrite => (code: string) => {
  if (!code.includes("partials[")) throw new Error("no slot reads in the merge");
  const read = buffer === "out"
    ? "return out[i % arrayLength(&out)];"
    : "return bitcast<f32>(sched[i % arrayLength(&sched)]);";
  return `${
    code.replace(/partials\[/g, "slot_word(")
      .replace(/slot_word\(([^\]]*)\]/g, "slot_word($1)")
  }
fn slot_word(i: u32) -> f32 {
  ${read}
}`;
};
/**
 * The early returns of workgroups past the dispatch's count removed from both kernels (valid
 * where the dispatch is one-dimensional, so exactly as large as the count): the decode kernel's
 * reads of the schedule no longer wait for `params`.
 */
export const noCountCheck = (code: string): string =>
  code.replace("if (w >= params.count) {", "if (w >= 0xffffffffu) {")
    .replace("if (e >= params.merge_count) {", "if (e >= 0xffffffffu) {");

/** Every workgroup barrier removed (outputs wrong; the barriers' cost). */
export const noBarriers = (code: string): string => code.replaceAll("workgroupBarrier();", "");
/** Query rows made from their index (no loads of q). */
export const constQuery = replacing(
  "query load to replace",
  "return q[i];",
  "return vec4<f32>(f32(i & 7u));",
);
/** Only each run's first piece (the cost of the later pieces' set-up). */
export const onePiece = replacing(
  "piece loop to cut",
  "for (var pc = p_begin; pc < p_end; pc++)",
  "for (var pc = p_begin; pc < min(p_end, p_begin + 1u); pc++)",
);
/**
 * The kernel returns at `anchor` (inside the first piece), after a write, under a condition that
 * never holds at run time, of `alive` (a WGSL f32 expression of what was computed so far), so the
 * compiler keeps that work: a bisection of the no-loop floor.
 */
const returnAt = (anchor: string, alive: (code: string) => string) => (code: string) => {
  if (!code.includes(anchor)) throw new Error(`no ${anchor} to return at`);
  const keep = `if (params.count == 0xfffffffdu) { partials[lid] = ${alive(code)}; }`;
  return code.replace(
    anchor,
    `if (params.count != 0xfffffffeu) { ${keep} return; }\n    ${anchor}`,
  );
};
const count = (code: string, name: string) =>
  Number(code.match(new RegExp(`var ${name} = array<[^,]+, (\\d+)>`))?.[1] ?? 0);
const sumOf = (name: string, n: number, f: (e: string) => string) =>
  Array.from({ length: n }, (_, i) => f(`${name}[${i}]`)).join(" + ") || "0.0";
export const afterFields = returnAt(
  "// The sequence's own rows",
  () =>
    "f32(seq + kv_head + r0 + tok_begin + tok_end + slot + kv_start + seq_len + q_start + q_len)",
);
export const beforeLoop = returnAt("for (var s0 = tok_begin;", (code) => {
  const first = [...code.matchAll(/var (n[kv]\d+_\d+) = /g)].map((m) => m[1]);
  const words = first.length ? `(${first.join(" ^ ")})` : "vec4<u32>(0u)";
  return `${sumOf("qv", count(code, "qv"), (e) => `dot(${e}, vec4<f32>(1.0))`)} + ` +
    `f32(${words}.x ^ ${words}.y ^ ${words}.z ^ ${words}.w) + f32(lim_all)`;
});
export const beforeGroupMerge = returnAt("// Merge the groups' states", (code) => {
  const rows = count(code, "m");
  return `${sumOf("o", count(code, "o"), (e) => `dot(${e}, vec4<f32>(1.0))`)} + ` +
    `${sumOf("m", rows, (e) => e)} + ${sumOf("l", rows, (e) => e)} + f32(${
      sumOf("bad", rows, (e) => e).replaceAll("0.0", "0u")
    })`;
});
export const beforeOutput = returnAt(
  "// Write the final output",
  () => "dot(acc[lid % 4u], vec4<f32>(1.0)) + l_sh[0] + mm[0]",
);
// Session 22: parts of the token loop's step removed (outputs wrong; what each part costs).
/** Every token's K and V rows read from the first 256 tokens (L2 hits): the loop's compute. */
export const cachedLoads = replacing(
  "dense K/V row to fold",
  "return base + t;",
  "return base + t % 256u;",
);
/** A regex rewrite that must match (naming `what`) where the kernel lacks it. */
const replacingAll = (what: string, from: RegExp, to: string) => (code: string) => {
  if (!from.test(code)) throw new Error(`no ${what} in the kernel`);
  return code.replace(from, to);
};
/** The lanes' partial scores not added across lanes (no shuffles in the token loop). */
export const noLaneShuffles = replacingAll(
  "lane shuffles",
  /subgroupShuffleXor\((d\d+_\d+), \d+u\)/g,
  "($1 * 0.5)",
);
/** The scores' exponentials replaced by their arguments. */
// (Row scatter's kernels weigh a lane's own row, `own{u}` or `so{u}` against `mxo`.)
export const noExp = replacingAll(
  "score exponentials",
  /exp2\(((?:d\d+_\d+|own\d+|so\d+) - mx\w*)\)/g,
  "($1)",
);
/** K and V words reinterpreted as floats instead of unpacked from f16. */
export const noUnpack = replacing(
  "f16 unpacking",
  "vec4<f32>(unpack_pair(w.x), unpack_pair(w.y)),\n    vec4<f32>(unpack_pair(w.z), unpack_pair(w.w)),",
  "bitcast<vec4<f32>>(w),\n    bitcast<vec4<f32>>(w.yzwx),",
);
export const both = (...fs: ((code: string) => string)[]): Rewrite => (code: string) =>
  fs.reduce((c, f) => f(c), code);

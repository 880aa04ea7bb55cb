/**
 * Diagnostic of issue 13 (session 20): what a decode pass costs besides streaming K and V. Times
 * lean on a few shapes with parts of the pass removed (diagnostic only: outputs are not read):
 * the whole pass; the decode kernel's token loop skipped (its WGSL rewritten: the piece's set-up,
 * first loads and the workgroup's merge of its groups remain); the merge dispatch skipped; the
 * decode dispatch skipped (the merge alone; a pass with nothing in it is the benchmark's empty
 * pass, and cannot be warmed by time: its recordings take none). Then a plain streaming read of
 * the same bytes at two grids. The shapes separate the 4-row GQA kernel from the 1-row kernel
 * over the same bytes (`h8/8`) and from one KV head per sequence (`b8 h4/1`, each workgroup's K/V
 * rows contiguous). (Session 20's first runs also cut the groups' one-by-one merge to one group;
 * the kernels now merge the groups in parallel, so that variant is gone: bench/notes.md.)
 *
 * Session 21 adds variants that take the no-loop floor apart (`--variants=NAME|...`, default the
 * first four): the decode kernel returning at once, its barriers removed, its query loads
 * replaced by constants, and each run cut to its first piece. Session 22's take the token loop's
 * step apart: K/V rows read from the first 256 tokens (cached), the lanes' shuffles, the scores'
 * exponentials or the f16 unpacking removed, alone and with cached rows ("cached/bare": all
 * three removed, leaving the loads, the multiply-adds and the loop's control).
 *
 * Session 27 times the cells back to back too (`--stream-ms=2`: the benchmark's stream column),
 * where the targets are judged: an empty pass of both dispatches, back to back, is the least any
 * kernel of this two-dispatch design can take.
 *
 * The first variant's kernels calibrate the process's lean grids (cached per kernel class), so
 * a list should start with `lean`: a rewritten kernel calibrates to its own grid.
 *
 * Usage: deno run -A --unstable-webgpu bench/diag_floors.ts [--only=SUBSTRING|...]
 *   [--variants=NAME|...] [--stream-ms=MS] [--bench-cases=NAME|...] [--out=FILE]
 */

import {
  diagCases,
  type DispatchSkip,
  fenceIssue,
  installDispatchFilter,
  installShaderRewrite,
  INT8_BY_CONVERSION,
  INT8_BY_HALVES,
  INT8_NO_ADD,
  int8Unpack,
  pinPrefetch,
  reloadSharedQuery,
  timeLeanCell,
} from "./diag_lib.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { BufferUsage } from "../src/gpu/gpu_runtime.ts";
import { median, timeWarm } from "../src/gpu/gpu_timing.ts";
import { type BenchCase, loadCases } from "./bench_cases.ts";
import type { DecoderOptions } from "../mod.ts";

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
const out = flag("out");
const only = flag("only")?.split("|");
/** `--stream-ms=N`: also time passes of N ms of runs back to back (the benchmark's stream column). */
const streamMs = flag("stream-ms") ? Number(flag("stream-ms")) : undefined;

// The variants' hooks: a filter on the pass's dispatches and a rewrite of the decode kernel's WGSL.
const filter = installDispatchFilter();
let rewrite: ((code: string) => string) | undefined;
let rewriteMerge: ((code: string) => string) | undefined;
installShaderRewrite((code) =>
  rewrite && code.startsWith("// lean-attention decode kernel")
    ? rewrite(code)
    : rewriteMerge && code.startsWith("// lean-attention merge kernel")
    ? rewriteMerge(code)
    : code
);

/** A rewrite that replaces `from` once, and fails (naming `what`) where the kernel lacks it. */
const replacing = (what: string, from: string, to: string) => (code: string) => {
  if (!code.includes(from)) throw new Error(`no ${what} in the kernel`);
  return code.replace(from, to);
};
const noLoop = replacing(
  "token loop to skip",
  "for (var s0 = tok_begin; s0 < tok_end; s0 += STEP)",
  "for (var s0 = tok_begin; s0 < tok_begin; s0 += STEP)",
);
/** The kernel returns at once: the dispatch of this pipeline (bindings, footprint) alone. */
const emptyDecode = replacing(
  "workgroup index to return after",
  "let w = flat_workgroup(wid, nwg);",
  "let w = flat_workgroup(wid, nwg);\n  if (params.count != 0xfffffffeu) { return; }",
);
/** The merge kernel returns at once: a second dispatch of nothing after the decode's. */
const emptyMerge = replacing(
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
const mergeAfterRecord = mergeCut(
  "merge record",
  "  let empty = n == 0u;",
  "n + seq + kv_head + first + q_start == 0x7ffffffeu",
);
/** ... once it has the row's maximum and sum (and its first slots' outputs in registers). */
const mergeAfterMaxima = mergeCut(
  "merge maxima",
  "  let row_bad = red_bad[0] != 0u;",
  "(l_all == -1.0 || pv[0] == -2.0 || row_bad)",
);
/** ... once it has the weighted sums of its slot groups (before the output). */
const mergeAfterSums = mergeCut(
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
const mergeRounds = (k: number) =>
  extraRounds("merge slot count", "n", "sched[f + REDUCE_NUM_SLOTS]", k);
/** The decode kernel waits one more round before its first piece's fields. */
const decodeRound = extraRounds("piece range", "p_begin", "sched[w]", 1);
/**
 * The merge reading its slots from another buffer at the same indices (folded into its length):
 * `out` (written by the last pass's merge) or the schedule (written once, by the host). Values
 * wrong, for timing: whether the merge's first read of the slots costs more because the decode
 * dispatch just wrote them.
 */
const mergeReadsFrom = (buffer: "out" | "sched") => (code: string) => {
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
const noCountCheck = (code: string) =>
  code.replace("if (w >= params.count) {", "if (w >= 0xffffffffu) {")
    .replace("if (e >= params.merge_count) {", "if (e >= 0xffffffffu) {");

/** Every workgroup barrier removed (outputs wrong; the barriers' cost). */
const noBarriers = (code: string) => code.replaceAll("workgroupBarrier();", "");
/** Query rows made from their index (no loads of q). */
const constQuery = replacing(
  "query load to replace",
  "return q[i];",
  "return vec4<f32>(f32(i & 7u));",
);
/** Only each run's first piece (the cost of the later pieces' set-up). */
const onePiece = replacing(
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
const afterFields = returnAt(
  "// The sequence's own rows",
  () =>
    "f32(seq + kv_head + r0 + tok_begin + tok_end + slot + kv_start + seq_len + q_start + q_len)",
);
const beforeLoop = returnAt("for (var s0 = tok_begin;", (code) => {
  const first = [...code.matchAll(/var (n[kv]\d+_\d+) = /g)].map((m) => m[1]);
  const words = first.length ? `(${first.join(" ^ ")})` : "vec4<u32>(0u)";
  return `${sumOf("qv", count(code, "qv"), (e) => `dot(${e}, vec4<f32>(1.0))`)} + ` +
    `f32(${words}.x ^ ${words}.y ^ ${words}.z ^ ${words}.w) + f32(lim_all)`;
});
const beforeGroupMerge = returnAt("// Merge the groups' states", (code) => {
  const rows = count(code, "m");
  return `${sumOf("o", count(code, "o"), (e) => `dot(${e}, vec4<f32>(1.0))`)} + ` +
    `${sumOf("m", rows, (e) => e)} + ${sumOf("l", rows, (e) => e)} + f32(${
      sumOf("bad", rows, (e) => e).replaceAll("0.0", "0u")
    })`;
});
const beforeOutput = returnAt(
  "// Write the final output",
  () => "dot(acc[lid % 4u], vec4<f32>(1.0)) + l_sh[0] + mm[0]",
);
// Session 22: parts of the token loop's step removed (outputs wrong; what each part costs).
/** Every token's K and V rows read from the first 256 tokens (L2 hits): the loop's compute. */
const cachedLoads = replacing(
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
const noLaneShuffles = replacingAll(
  "lane shuffles",
  /subgroupShuffleXor\((d\d+_\d+), \d+u\)/g,
  "($1 * 0.5)",
);
/** The scores' exponentials replaced by their arguments. */
// (Row scatter's kernels weigh a lane's own row, `own{u}` or `so{u}` against `mxo`.)
const noExp = replacingAll(
  "score exponentials",
  /exp2\(((?:d\d+_\d+|own\d+|so\d+) - mx\w*)\)/g,
  "($1)",
);
/** K and V words reinterpreted as floats instead of unpacked from f16. */
const noUnpack = replacing(
  "f16 unpacking",
  "vec4<f32>(unpack_pair(w.x), unpack_pair(w.y)),\n    vec4<f32>(unpack_pair(w.z), unpack_pair(w.w)),",
  "bitcast<vec4<f32>>(w),\n    bitcast<vec4<f32>>(w.yzwx),",
);
const both = (...fs: ((code: string) => string)[]) => (code: string) =>
  fs.reduce((c, f) => f(c), code);
/** Query rows in workgroup memory, each tensor's next rows requested once it is used. */
const qsSplit = { queryShared: true, prefetch: "split" as const };
type Variant = {
  name: string;
  skip?: DispatchSkip;
  rewrite?: (code: string) => string;
  /** Decoder options of the variant (kernel tunings). */
  options?: Partial<DecoderOptions>;
  /** A rewrite of the merge kernel's WGSL. */
  rewriteMerge?: (code: string) => string;
};
const allVariants: Variant[] = [
  { name: "lean" },
  { name: "no loop", rewrite: noLoop },
  { name: "no merge", skip: "merge" },
  { name: "merge only", skip: "decode" },
  // Session 21: the no-loop floor taken apart.
  { name: "empty decode", rewrite: emptyDecode },
  { name: "empty, no merge", rewrite: emptyDecode, skip: "merge" },
  // Session 27: both dispatches of nothing (the least a pass of two dispatches can take).
  { name: "empty both", rewrite: emptyDecode, rewriteMerge: emptyMerge },
  { name: "no loop/merge", rewrite: noLoop, skip: "merge" },
  { name: "no loop/barrier", rewrite: both(noLoop, noBarriers) },
  { name: "no loop/q", rewrite: both(noLoop, constQuery) },
  { name: "no loop/1 piece", rewrite: both(noLoop, onePiece) },
  { name: "1 piece", rewrite: onePiece },
  // Session 21's second call: the no-loop kernel cut at four points of its first piece.
  { name: "cut: fields", rewrite: both(noLoop, afterFields) },
  { name: "cut: pre-loop", rewrite: both(noLoop, beforeLoop) },
  { name: "cut: pre-merge", rewrite: both(noLoop, beforeGroupMerge) },
  { name: "cut: pre-output", rewrite: both(noLoop, beforeOutput) },
  // Session 21's third call: the groups of a subgroup added with shuffles first (the default
  // since) against the merge of every group through workgroup memory, whole and without the loop.
  { name: "no shuffle merge", options: { kernel: { shuffleGroups: 1 } } },
  { name: "no loop/no shuffle", rewrite: noLoop, options: { kernel: { shuffleGroups: 1 } } },
  { name: "shuffle 2 groups", options: { kernel: { shuffleGroups: 2 } } },
  // Session 22: the token loop's step taken apart.
  { name: "cached loads", rewrite: cachedLoads },
  { name: "no lane shuffles", rewrite: noLaneShuffles },
  { name: "no exp", rewrite: noExp },
  { name: "no unpack", rewrite: noUnpack },
  { name: "cached/no shuffles", rewrite: both(cachedLoads, noLaneShuffles) },
  { name: "cached/no unpack", rewrite: both(cachedLoads, noUnpack) },
  { name: "cached/no exp", rewrite: both(cachedLoads, noExp) },
  { name: "cached/bare", rewrite: both(cachedLoads, noLaneShuffles, noExp, noUnpack) },
  // Session 27: fewer registers for the 4-row kernel (bench/notes.md). Workgroups of 512
  // threads, which make the driver fit a thread in 128 registers, ran at commit 5d760bc (the
  // planner allowed them then) and lost everywhere; query rows in workgroup memory, read again
  // every step (otherwise the compiler hoists them back into registers), and packed f16 scores.
  { name: "W256", options: { workgroupSize: 256 } },
  { name: "W64", options: { workgroupSize: 64 } },
  { name: "qs reload", rewrite: reloadSharedQuery, options: { kernel: qsSplit } },
  {
    name: "L16 qs reload",
    rewrite: reloadSharedQuery,
    options: { kernel: { ...qsSplit, lanes: 16 } },
  },
  { name: "half math", options: { kernel: { halfMath: true } } },
  // Session 33: packed f16 over 8-bit K and V (int8, E4M3), its arithmetic alone, and its f16
  // sums of V added into the f32 state every 1, 2, 4 or 8 steps (default 4 in its first run,
  // 1 since).
  { name: "half cached", rewrite: cachedLoads, options: { kernel: { halfMath: true } } },
  { name: "half s1", options: { kernel: { halfMath: true, halfSteps: 1 } } },
  { name: "half s2", options: { kernel: { halfMath: true, halfSteps: 2 } } },
  { name: "half s4", options: { kernel: { halfMath: true, halfSteps: 4 } } },
  { name: "half s8", options: { kernel: { halfMath: true, halfSteps: 8 } } },
  // Session 34: f16 V's weighted sums in packed f16 as well (its halves used as stored), added
  // into the f32 state every step or every 2 steps, and their arithmetic alone.
  { name: "half values", options: { kernel: { halfMath: true, halfValues: true } } },
  {
    name: "half values s2",
    options: { kernel: { halfMath: true, halfValues: true, halfSteps: 2 } },
  },
  {
    name: "half values cached",
    rewrite: cachedLoads,
    options: { kernel: { halfMath: true, halfValues: true } },
  },
  // ... and f16 keys with their query rows in f16 (half the registers of f32 rows) at twice the
  // tokens per step in 128-token tiles, as int8's integer keys allowed; plain f16 beside them.
  { name: "half T128 U8", options: { tileTokens: 128, kernel: { halfMath: true, unroll: 8 } } },
  {
    name: "half T128 U8 split",
    options: { tileTokens: 128, kernel: { halfMath: true, unroll: 8, prefetch: "split" } },
  },
  {
    name: "half T128 U8 vpt",
    options: { tileTokens: 128, kernel: { halfMath: true, unroll: 8, vPerToken: true } },
  },
  { name: "T128 U8", options: { tileTokens: 128, kernel: { unroll: 8 } } },
  // ... and the int8 kernels' next-step loads left where the compiler sinks them (the end of the
  // loop body), against the default since session 34 (issued at its top: `earlyLoads`).
  { name: "late loads", options: { kernel: { earlyLoads: false } } },
  // Session 35: early loads asked for where they are not the default (per-token scales: the
  // next step's scale pairs used early too, or, as session 34's paged int8 had them, left late),
  // and with the registers of 16 lanes per token or of 128-token tiles at unroll 8.
  { name: "early", options: { kernel: { earlyLoads: true } } },
  { name: "half early", options: { kernel: { halfMath: true, earlyLoads: true } } },
  {
    name: "early sc late",
    rewrite: (code) => code.replaceAll(/ \^ bitcast<u32>\(nsc\d+\.x\)/g, ""),
    options: { kernel: { earlyLoads: true } },
  },
  { name: "L16 late", options: { kernel: { lanes: 16, earlyLoads: false } } },
  { name: "T128 U8 late", options: { tileTokens: 128, kernel: { unroll: 8, earlyLoads: false } } },
  // ... and int8 keys by packed integer dot products (`intDots`), with real and cached loads.
  { name: "int dots", options: { kernel: { intDots: true } } },
  { name: "int cached", rewrite: cachedLoads, options: { kernel: { intDots: true } } },
  { name: "f32 dots", options: { kernel: { intDots: false } } },
  // ... and with the 32 registers per thread that integer keys free (query rows as bytes): twice
  // the tokens per step, through 128-token tiles or two row sets, with or without prefetch.
  { name: "RS2 U8 pf", options: { kernel: { rowSets: 2, unroll: 8, prefetch: true } } },
  { name: "T128 split", options: { tileTokens: 128, kernel: { prefetch: "split" } } },
  // Session 28: the prefetch's loads used before the step's split, so NVIDIA's compiler cannot
  // sink them to the end of the loop body (K and V, or K only).
  { name: "pin", rewrite: pinPrefetch },
  { name: "pin K", rewrite: (code) => pinPrefetch(code, "k") },
  // ... and with tunings that leave the compiler registers to hold them (no extra spills).
  { name: "U2", options: { kernel: { unroll: 2 } } },
  { name: "U2 pin", rewrite: pinPrefetch, options: { kernel: { unroll: 2 } } },
  { name: "L16", options: { kernel: { lanes: 16 } } },
  { name: "L16 pin", rewrite: pinPrefetch, options: { kernel: { lanes: 16 } } },
  { name: "RS2 pin", rewrite: pinPrefetch, options: { kernel: { rowSets: 2 } } },
  // ... and with the query rows read from workgroup memory every step (64 registers freed).
  {
    name: "qs reload pin",
    rewrite: both(reloadSharedQuery, pinPrefetch),
    options: { kernel: qsSplit },
  },
  {
    name: "qs reload pin K",
    rewrite: both(reloadSharedQuery, (code) => pinPrefetch(code, "k")),
    options: { kernel: qsSplit },
  },
  // Session 29: a barrier after the next step's requests keeps them in flight through the
  // step's arithmetic (the pins above also made the warp wait for them).
  { name: "bar", rewrite: fenceIssue },
  { name: "split bar", rewrite: fenceIssue, options: { kernel: { prefetch: "split" } } },
  {
    name: "qs reload bar",
    rewrite: both(reloadSharedQuery, fenceIssue),
    options: { kernel: { queryShared: true } },
  },
  {
    name: "qs reload split bar",
    rewrite: both(reloadSharedQuery, fenceIssue),
    options: { kernel: qsSplit },
  },
  { name: "U2 bar", rewrite: fenceIssue, options: { kernel: { unroll: 2 } } },
  // ... and twice the tokens per step (128 words of K and V per lane) in the registers that
  // query rows read from workgroup memory leave, without prefetch (the compiler turns it into
  // load-then-wait anyway) or with each tensor's requests after its use.
  {
    name: "qs reload U8",
    rewrite: reloadSharedQuery,
    options: { tileTokens: 128, kernel: { queryShared: true, unroll: 8, prefetch: false } },
  },
  {
    name: "qs reload U8 split",
    rewrite: reloadSharedQuery,
    options: { tileTokens: 128, kernel: { queryShared: true, unroll: 8, prefetch: "split" } },
  },
  { name: "U8 nopf", options: { tileTokens: 128, kernel: { unroll: 8, prefetch: false } } },
  { name: "RS2 U8", options: { kernel: { rowSets: 2, unroll: 8, prefetch: false } } },
  // Tiles of 128 tokens: 8-bit rows get the unroll the kernel choice means them to have (twice
  // f16's), which 64-token tiles cap at f16's (16 groups x 4 tokens: half f16's bytes in
  // flight); f16 keeps its unroll. And 8-bit rows at twice that again.
  { name: "T128", options: { tileTokens: 128 } },
  { name: "T256 U16", options: { tileTokens: 256, kernel: { unroll: 16 } } },
  // V unpacked one token at a time inside the softmax update (`vPerToken`: a token's V floats
  // live for its multiply-adds only), alone, with 8-bit rows at their meant unroll, and with
  // unroll 8 in the registers shared query rows leave.
  { name: "vpt", options: { kernel: { vPerToken: true } } },
  { name: "vpt T128", options: { tileTokens: 128, kernel: { vPerToken: true } } },
  {
    name: "vpt qs reload U8",
    rewrite: reloadSharedQuery,
    options: {
      tileTokens: 128,
      kernel: { queryShared: true, unroll: 8, prefetch: false, vPerToken: true },
    },
  },
  { name: "vpt split", options: { kernel: { vPerToken: true, prefetch: "split" } } },
  // Each lane adds and weighs one row's scores, the others' weights come by shuffles
  // (`rowScatter`), alone and with V unpacked per token.
  { name: "rsc", options: { kernel: { rowScatter: true } } },
  { name: "rsc vpt", options: { kernel: { rowScatter: true, vPerToken: true } } },
  // Session 30: each piece's query rows read once per workgroup into workgroup memory, then
  // copied into the threads' registers (`queryStaged`), instead of every lane group reading them
  // from memory; and for the classes whose table keeps them in workgroup memory (r4 d64, d256),
  // those rows in registers without and with staging.
  { name: "qst", options: { kernel: { queryStaged: true } } },
  { name: "regs", options: { kernel: { queryShared: false } } },
  { name: "qst regs", options: { kernel: { queryShared: false, queryStaged: true } } },
  // Session 31: the r4 d256 class keeps its rows in registers; "shared" is its choice before.
  { name: "shared", options: { kernel: { queryShared: true } } },
  // Session 32: one more dependent round of reads in the merge, two, one more at the decode
  // kernel's start; the count checks removed (the params read off the schedule reads' path).
  { name: "merge +1 round", rewriteMerge: mergeRounds(1) },
  { name: "merge +2 rounds", rewriteMerge: mergeRounds(2) },
  { name: "decode +1 round", rewrite: decodeRound },
  { name: "no count checks", rewrite: noCountCheck, rewriteMerge: noCountCheck },
  // ... and the merge's slot reads from a buffer the decode dispatch did not just write.
  { name: "merge reads out", rewriteMerge: mergeReadsFrom("out") },
  { name: "merge reads sched", rewriteMerge: mergeReadsFrom("sched") },
  // Session 28: int8 bytes unpacked by the signed-byte conversion (the kernels before session
  // 28), or as f16 halves (the library's are f32 magic numbers since: see src/core/kv8_dtypes.ts).
  { name: "int8 I2F", rewrite: int8Unpack(INT8_BY_CONVERSION) },
  { name: "int8 halves", rewrite: int8Unpack(INT8_BY_HALVES) },
  // Session 32: int8 bytes unpacked without the add (values wrong: what one add per element costs).
  { name: "int8 no add", rewrite: int8Unpack(INT8_NO_ADD) },
  // ... and the merge kernel cut at four points of its work, after the whole decode kernel.
  { name: "merge cut: start", rewriteMerge: emptyMerge },
  { name: "merge cut: record", rewriteMerge: mergeAfterRecord },
  { name: "merge cut: maxima", rewriteMerge: mergeAfterMaxima },
  { name: "merge cut: sums", rewriteMerge: mergeAfterSums },
];
const picked = flag("variants")?.split("|");
const variants = picked
  ? allVariants.filter((v) => picked.includes(v.name))
  : allVariants.slice(0, 4);

const kib = (n: number) => n * 1024;
const shape = (
  name: string,
  seqs: number,
  ctx: number,
  numHeads: number,
  numKVHeads: number,
): BenchCase => ({
  name,
  group: "diag",
  seqLens: Array(seqs).fill(kib(ctx)),
  numHeads,
  numKVHeads,
  headDim: 128,
  qLen: 1,
  kvDtype: "f16",
});
/** `--bench-cases=NAME|...`: the benchmark's cases of these exact names instead of the shapes below. */
const benchCases = flag("bench-cases")?.split("|");
const shapes: BenchCase[] = [
  shape("gqa32/8 2k", 1, 2, 32, 8),
  shape("gqa32/8 32k", 1, 32, 32, 8),
  shape("gqa32/8 128k", 1, 128, 32, 8),
  shape("b8 h4/1 128k", 8, 128, 4, 1),
  shape("h8/8 128k", 1, 128, 8, 8),
  shape("b1 h32 32k", 1, 32, 32, 32),
];
const cases = benchCases ? (await loadCases()).filter((c) => benchCases.includes(c.name)) : shapes;

// Held for the whole run: Deno's WebGPU panics ("Adapter does not exist") once a collected
// adapter's device is used.
const adapter = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
const device = await requestDevice(adapter);
const results: Record<string, unknown>[] = [];
console.log(
  `${"case".padEnd(14)} ${variants.map((v) => v.name.padStart(streamMs ? 25 : 18)).join("")}` +
    `${"read 264x128".padStart(18)}${"read 1056x256".padStart(18)}`,
);
for (const { c, input, kvBytes, kvSets } of diagCases(cases, only)) {
  const cells: string[] = [];
  for (const v of variants) {
    rewrite = v.rewrite;
    rewriteMerge = v.rewriteMerge;
    const cell = await timeLeanCell(
      device,
      input,
      kvSets,
      v.options ?? {},
      filter,
      v.skip,
      streamMs,
    );
    rewrite = undefined;
    rewriteMerge = undefined;
    cells.push(cell.text);
    if (cell.row) results.push({ case: c.name, variant: v.name, ...cell.row, kvBytes });
  }
  for (const [groups, size] of [[264, 128], [1056, 256]]) {
    const t = await readTime(kvBytes, kvSets, groups, size);
    cells.push(`${t.medianMs.toFixed(4)}/${t.lastWarmMs.toFixed(4)}`.padStart(18));
    results.push({ case: c.name, variant: `read ${groups}x${size}`, ...t, kvBytes });
  }
  const lean = results.find((r) => r.case === c.name && "pieces" in r);
  const shapeNote = lean ? ` (${lean.workgroups} workgroups, ${lean.pieces} pieces)` : "";
  console.log(`${c.name.padEnd(14)} ${cells.join("")}${shapeNote}`);
}
if (out) await Deno.writeTextFile(out, JSON.stringify({ results }, null, 1));

/** A grid-stride read of `bytes` (rotating over `sets` buffers), timed warm. */
async function readTime(bytes: number, sets: number, groups: number, size: number) {
  const module = device.createShaderModule({
    code: `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
@compute @workgroup_size(${size})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  var acc = vec4<u32>(0u);
  let stride = nwg.x * ${size}u;
  let n = arrayLength(&src);
  for (var i = gid.x; i < n; i += stride) { acc ^= src[i]; }
  if (all(acc == vec4<u32>(0x9e3779b9u))) { sink[0] = acc.x; }
}`,
  });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const sink = device.createBuffer({ size: 16, usage: BufferUsage.STORAGE });
  const srcs = Array.from(
    { length: sets },
    () => device.createBuffer({ size: Math.ceil(bytes / 16) * 16, usage: BufferUsage.STORAGE }),
  );
  const groupsOf = srcs.map((src) =>
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: src } }, {
        binding: 1,
        resource: { buffer: sink },
      }],
    })
  );
  try {
    const t = await timeWarm(device, (pass, i) => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, groupsOf[i % sets]);
      pass.dispatchWorkgroups(groups);
    }, { runs: 25, warmupMs: 400 });
    return { medianMs: median(t.samplesMs), lastWarmMs: t.lastWarmMs };
  } finally {
    for (const s of srcs) s.destroy();
    sink.destroy();
  }
}

/**
 * bench/diag_floors.ts's variants: lean whole and with parts of the pass removed (dispatches
 * skipped, kernels rewritten by bench/diag_floors_rewrites.ts or bench/diag_lib.ts), and with
 * kernel tunings, as sessions 20-35 added them. `--variants=NAME|...` picks them by name; the
 * first four are the default.
 *
 * @module
 */

import {
  type DispatchSkip,
  fenceIssue,
  INT8_BY_CONVERSION,
  INT8_BY_HALVES,
  INT8_NO_ADD,
  int8Unpack,
  pinPrefetch,
  reloadSharedQuery,
} from "./diag_lib.ts";
import {
  afterFields,
  beforeGroupMerge,
  beforeLoop,
  beforeOutput,
  both,
  cachedLoads,
  constQuery,
  decodeRound,
  emptyDecode,
  emptyMerge,
  mergeAfterMaxima,
  mergeAfterRecord,
  mergeAfterSums,
  mergeReadsFrom,
  mergeRounds,
  noBarriers,
  noCountCheck,
  noExp,
  noLaneShuffles,
  noLoop,
  noUnpack,
  onePiece,
} from "./diag_floors_rewrites.ts";
import type { DecoderOptions } from "../mod.ts";

/** Query rows in workgroup memory, each tensor's next rows requested once it is used. */
const qsSplit = { queryShared: true, prefetch: "split" as const };
export type Variant = {
  name: string;
  skip?: DispatchSkip;
  rewrite?: (code: string) => string;
  /** Decoder options of the variant (kernel tunings). */
  options?: Partial<DecoderOptions>;
  /** A rewrite of the merge kernel's WGSL. */
  rewriteMerge?: (code: string) => string;
};
export const allVariants: Variant[] = [
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

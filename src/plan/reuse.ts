/**
 * Plans of consecutive decode steps: each step adds a token to every sequence, which changes a
 * sequence's tile count only once every `tileTokens` steps. The partition and the schedule's
 * structure are functions of the tile counts alone (plus grid, strategy and tile geometry), so
 * while the tile counts hold, a step's plan is the previous plan with its length fields patched:
 * O(pieces) instead of partitioning and scheduling again. The result is identical, field for
 * field, to a fresh `createPlan` (tested against it).
 *
 * @module
 */

import type { Plan, PlanOptions } from "./plan.ts";
import type { Problem } from "../core/problem.ts";
import { PIECE, PIECE_STRIDE, type Schedule } from "./schedule.ts";
import { tileConfig } from "./tiles.ts";
import { skippedTiles } from "./sliding_window.ts";

/**
 * The plan for `problem` derived from `previous`, or `undefined` when `previous` cannot serve:
 * another shape (sequences, heads, head dim, query length, dtype), another tile count for some
 * sequence (or other tiles skipped before a sliding window), other options, or a windowed or batch-invariant plan (those are cut by token
 * positions and are planned afresh). `problem` must be validated.
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { validateShape } from "@lean/attention/plan";
 * import { reusePlan } from "./reuse.ts";
 * const options = { grid: 8 };
 * const step1 = createPlan({ seqLens: [100, 30], numHeads: 2, numKVHeads: 1, headDim: 8 }, options);
 * const shape2 = { seqLens: [101, 31], numHeads: 2, numKVHeads: 1, headDim: 8 };
 * const step2 = reusePlan(step1, validateShape(shape2), options);
 * console.log(step2?.problem.seqLens, step2?.partition === step1.partition); // Uint32Array(2) [ 101, 31 ] true
 * ```
 */
export function reusePlan(
  previous: Plan,
  problem: Problem,
  options: PlanOptions,
): Plan | undefined {
  const old = previous.problem;
  if (
    previous.batchInvariant ||
    (options.batchInvariant !== undefined && options.batchInvariant !== false) ||
    previous.schedule.windows.length !== 1 ||
    (options.maxBindingBytes !== undefined &&
      options.maxBindingBytes !== Number.POSITIVE_INFINITY) ||
    previous.grid !== options.grid || previous.strategy !== (options.strategy ?? "lean") ||
    old.numSeqs !== problem.numSeqs || old.numHeads !== problem.numHeads ||
    old.numKVHeads !== problem.numKVHeads || old.headDim !== problem.headDim ||
    old.qLen !== problem.qLen || old.kvDtype !== problem.kvDtype ||
    old.headDimV !== problem.headDimV || old.vFromK !== problem.vFromK
  ) return undefined;
  for (let s = 0; s < problem.numSeqs; s++) {
    if (old.qLens[s] !== problem.qLens[s]) return undefined;
  }
  const tiles = tileConfig(problem, options);
  const was = previous.tiles;
  if (
    tiles.tileTokens !== was.tileTokens || tiles.workgroupSize !== was.workgroupSize ||
    tiles.rowsPerBlock !== was.rowsPerBlock || tiles.rowBlocks !== was.rowBlocks
  ) return undefined;
  const T = tiles.tileTokens;
  const lens = problem.seqLens;
  const oldLens = old.seqLens;
  for (let s = 0; s < problem.numSeqs; s++) {
    if (Math.ceil(lens[s] / T) !== Math.ceil(oldLens[s] / T)) return undefined;
  }
  // A sliding window's skipped tiles move as sequences grow: the same ones, or plan afresh.
  const skip = skippedTiles(problem, T);
  const oldSkip = skippedTiles(old, T);
  if (skip || oldSkip) {
    if (!skip || !oldSkip || skip.some((n, s) => n !== oldSkip[s])) return undefined;
  }
  const before = previous.schedule;
  const pieces = before.pieces.slice();
  const kvStarts = problem.kvStarts;
  for (let o = 0; o < pieces.length; o += PIECE_STRIDE) {
    const seq = pieces[o + PIECE.seq];
    // A piece that reached its sequence's last token still does; others end on a tile boundary.
    if (pieces[o + PIECE.tokenEnd] === oldLens[seq]) pieces[o + PIECE.tokenEnd] = lens[seq];
    pieces[o + PIECE.seqLen] = lens[seq];
    pieces[o + PIECE.kvStart] = kvStarts[seq];
  }
  const schedule: Schedule = {
    ...before,
    pieces,
    windows: [{
      tokenBegin: 0,
      tokenEnd: problem.totalTokens,
      workgroupBegin: 0,
      workgroupEnd: before.workgroups,
    }],
  };
  // A paged plan's caller puts its own page tables back over the dense addressing.
  return {
    ...previous,
    problem,
    tiles,
    schedule,
    kv: { kind: "dense", windows: schedule.windows },
  };
}

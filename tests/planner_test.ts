/**
 * Planner and scheduler invariants over random shapes and grids: exact tile coverage, balance,
 * bounded partial states, DIRECT pieces, ordered reduce records, determinism and O(segments +
 * grid) planning cost.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createPlan, describePlan, type Plan, STRATEGIES, type Strategy } from "../mod.ts";
import {
  ALIGNED_MARGIN,
  alignedCut,
  chooseSplits,
  DIRECT,
  partition,
  partitionCost,
  PIECE,
  PIECE_STRIDE,
  preferAligned,
  REDUCE,
  REDUCE_STRIDE,
  schedule,
  segmentTiles,
  tileConfig,
  validateShape,
} from "../plan.ts";
import { fcParams } from "./helpers.ts";

interface PieceView {
  workgroup: number;
  seq: number;
  kvHead: number;
  rowBlock: number;
  tokenBegin: number;
  tokenEnd: number;
  slot: number;
  kvStart: number;
  seqLen: number;
}

function piecesOf(plan: Plan): PieceView[] {
  const s = plan.schedule;
  const out: PieceView[] = [];
  for (let w = 0; w < s.workgroups; w++) {
    for (let i = s.pieceOffsets[w]; i < s.pieceOffsets[w + 1]; i++) {
      const f = i * PIECE_STRIDE;
      out.push({
        workgroup: w,
        seq: s.pieces[f + PIECE.seq],
        kvHead: s.pieces[f + PIECE.kvHead],
        rowBlock: s.pieces[f + PIECE.rowBlock],
        tokenBegin: s.pieces[f + PIECE.tokenBegin],
        tokenEnd: s.pieces[f + PIECE.tokenEnd],
        slot: s.pieces[f + PIECE.slot],
        kvStart: s.pieces[f + PIECE.kvStart],
        seqLen: s.pieces[f + PIECE.seqLen],
      });
    }
  }
  return out;
}

/** Segment index of a (seq, kvHead, rowBlock) triple in the planner's order. */
function segmentOf(plan: Plan, seq: number, kvHead: number, rowBlock: number): number {
  return (seq * plan.problem.numKVHeads + kvHead) * plan.tiles.rowBlocks + rowBlock;
}

/** The invariants every plan satisfies, whatever its strategy. */
function checkCommon(plan: Plan): PieceView[][] {
  const { problem: p, tiles, schedule: s, partition: part } = plan;
  const T = tiles.tileTokens;
  const numSegments = p.numSeqs * p.numKVHeads * tiles.rowBlocks;
  assert.equal(plan.numSegments, numSegments);
  let expectedTiles = 0;
  for (const len of p.seqLens) expectedTiles += Math.ceil(len / T) * p.numKVHeads * tiles.rowBlocks;
  assert.equal(plan.numTiles, expectedTiles);

  // Runs: contiguous, non-empty, covering every tile.
  assert.equal(s.workgroups, part.runStarts.length - 1);
  assert.equal(part.runStarts[0], 0);
  assert.equal(part.runStarts[s.workgroups], plan.numTiles);
  for (let w = 0; w < s.workgroups; w++) assert.ok(part.runStarts[w] < part.runStarts[w + 1]);

  // Piece tables.
  assert.equal(s.pieceOffsets.length, s.workgroups + 1);
  assert.equal(s.pieceOffsets[0], 0);
  assert.equal(s.pieces.length, s.pieceOffsets[s.workgroups] * PIECE_STRIDE);
  const pieces = piecesOf(plan);
  assert.ok(pieces.length <= s.workgroups + numSegments - 1, "at most one cut per run boundary");

  const bySegment: PieceView[][] = Array.from({ length: numSegments }, () => []);
  for (let w = 0; w < s.workgroups; w++) {
    let tilesInRun = 0;
    let lastGlobal = -1;
    for (const pc of pieces.filter((x) => x.workgroup === w)) {
      assert.ok(pc.seq < p.numSeqs && pc.kvHead < p.numKVHeads && pc.rowBlock < tiles.rowBlocks);
      assert.equal(pc.seqLen, p.seqLens[pc.seq]);
      assert.equal(pc.kvStart, p.kvStarts[pc.seq]);
      assert.equal(pc.tokenBegin % T, 0, "pieces start on a tile boundary");
      assert.ok(pc.tokenBegin < pc.tokenEnd && pc.tokenEnd <= pc.seqLen);
      assert.ok(pc.tokenEnd === pc.seqLen || pc.tokenEnd % T === 0);
      const seg = segmentOf(plan, pc.seq, pc.kvHead, pc.rowBlock);
      const global = part.segmentTileStarts[seg] + pc.tokenBegin / T;
      if (lastGlobal < 0) assert.equal(global, part.runStarts[w], "a run starts at its first tile");
      else assert.equal(global, lastGlobal, "a run's pieces follow each other");
      const n = Math.ceil((pc.tokenEnd - pc.tokenBegin) / T);
      lastGlobal = global + n;
      tilesInRun += n;
      bySegment[seg].push(pc);
    }
    assert.equal(tilesInRun, part.runStarts[w + 1] - part.runStarts[w], `tiles of run ${w}`);
  }

  // Every token of every segment covered exactly once; DIRECT iff the piece is the whole segment.
  const partialSlots = new Set<number>();
  bySegment.forEach((list, seg) => {
    const seq = Math.floor(seg / (p.numKVHeads * tiles.rowBlocks));
    list.sort((a, b) => a.tokenBegin - b.tokenBegin);
    assert.ok(list.length > 0, `segment ${seg} has no piece`);
    let at = 0;
    for (const pc of list) {
      assert.equal(pc.tokenBegin, at, `segment ${seg}: gap or overlap at token ${at}`);
      at = pc.tokenEnd;
      const whole = pc.tokenBegin === 0 && pc.tokenEnd === p.seqLens[seq];
      assert.equal(pc.slot === DIRECT, whole, `segment ${seg}: DIRECT iff whole segment`);
      if (pc.slot !== DIRECT) {
        assert.ok(!partialSlots.has(pc.slot), `slot ${pc.slot} written twice`);
        partialSlots.add(pc.slot);
      }
    }
    assert.equal(at, p.seqLens[seq], `segment ${seg} must end at its context length`);
  });
  assert.equal(partialSlots.size, s.partialSlots);
  for (let i = 0; i < s.partialSlots; i++) assert.ok(partialSlots.has(i), `slot ${i} unused`);

  // One reduce record per split segment, over its slots: consecutive, ascending in token order.
  assert.equal(s.reduce.length % REDUCE_STRIDE, 0);
  const reduced = new Set<number>();
  for (let r = 0; r < s.reduce.length; r += REDUCE_STRIDE) {
    const seg = segmentOf(
      plan,
      s.reduce[r + REDUCE.seq],
      s.reduce[r + REDUCE.kvHead],
      s.reduce[r + REDUCE.rowBlock],
    );
    assert.ok(seg < numSegments && !reduced.has(seg), `reduce record for segment ${seg}`);
    reduced.add(seg);
    const first = s.reduce[r + REDUCE.firstSlot];
    const count = s.reduce[r + REDUCE.numSlots];
    const list = bySegment[seg];
    assert.equal(count, list.length, "a record covers all pieces of its segment");
    assert.ok(count >= 2);
    list.forEach((pc, i) => assert.equal(pc.slot, first + i, "slots ascend in token order"));
  }
  bySegment.forEach((list, seg) => assert.equal(reduced.has(seg), list.length > 1));
  return bySegment;
}

function checkStrategy(plan: Plan, bySegment: PieceView[][]): void {
  const { schedule: s, partition: part } = plan;
  const runLengths = Array.from(
    { length: s.workgroups },
    (_, w) => part.runStarts[w + 1] - part.runStarts[w],
  );
  const segTiles = bySegment.map((_, i) =>
    part.segmentTileStarts[i + 1] - part.segmentTileStarts[i]
  );
  if (plan.strategy === "lean" && part.streamK) {
    assert.equal(s.workgroups, Math.min(plan.grid, plan.numTiles));
    assert.ok(Math.max(...runLengths) - Math.min(...runLengths) <= 1, "lean runs are balanced");
    assert.ok(s.partialSlots <= 2 * s.workgroups, "at most two partial pieces per run");
    const aligned = alignedCut(part.segmentTileStarts, plan.grid);
    assert.ok(
      !preferAligned(part.segmentTileStarts, aligned.runStarts, part.runStarts, plan.grid),
      "stream-K is taken only when the aligned cut is not preferred",
    );
    assert.ok(
      partitionCost(part.segmentTileStarts, part.runStarts, plan.grid) <
        partitionCost(part.segmentTileStarts, aligned.runStarts, plan.grid),
      "stream-K is taken only when it is cheaper than the aligned cut",
    );
  } else if (plan.strategy === "lean") {
    // The aligned cut, taken because it costs at most ALIGNED_MARGIN times what equal runs would.
    const aligned = alignedCut(part.segmentTileStarts, plan.grid);
    assert.deepStrictEqual([...part.runStarts], [...aligned.runStarts]);
    const g = Math.max(1, Math.min(plan.grid, plan.numTiles));
    const equal = Uint32Array.from(
      { length: g + 1 },
      (_, i) => i * Math.floor(plan.numTiles / g) + Math.min(i, plan.numTiles % g),
    );
    assert.ok(preferAligned(part.segmentTileStarts, part.runStarts, equal, plan.grid));
    assert.ok(
      partitionCost(part.segmentTileStarts, part.runStarts, plan.grid) <=
        ALIGNED_MARGIN * partitionCost(part.segmentTileStarts, equal, plan.grid),
    );
  } else if (plan.strategy === "single") {
    assert.equal(s.workgroups, plan.numSegments);
    assert.equal(s.partialSlots, 0);
    assert.equal(s.reduce.length, 0);
    bySegment.forEach((list) => assert.equal(list.length, 1));
  } else {
    const maxTiles = Math.max(...segTiles);
    assert.equal(part.splits, chooseSplits(plan.numSegments, maxTiles, plan.grid));
    bySegment.forEach((list, seg) => {
      assert.equal(list.length, Math.min(part.splits, segTiles[seg]), `chunks of segment ${seg}`);
      const sizes = list.map((pc) =>
        Math.ceil((pc.tokenEnd - pc.tokenBegin) / plan.tiles.tileTokens)
      );
      assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `chunks of ${seg} are balanced`);
    });
    for (let w = 0; w < s.workgroups; w++) {
      assert.equal(s.pieceOffsets[w + 1] - s.pieceOffsets[w], 1, "split runs stay in a segment");
    }
  }
}

function checkPlan(plan: Plan): void {
  checkStrategy(plan, checkCommon(plan));
}

const seqLenArb = fc.oneof(
  fc.integer({ min: 1, max: 4 }),
  fc.integer({ min: 1, max: 3000 }),
  fc.integer({ min: 1, max: 200_000 }),
);

const planArb = fc.record({
  seqLens: fc.array(seqLenArb, { minLength: 1, maxLength: 12 }),
  numKVHeads: fc.integer({ min: 1, max: 8 }),
  group: fc.integer({ min: 1, max: 8 }),
  headDim: fc.integer({ min: 1, max: 32 }).map((n) => 8 * n),
  qLen: fc.integer({ min: 1, max: 16 }),
  tileTokens: fc.constantFrom(16, 32, 64, 128, 256),
  grid: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 300 })),
  strategy: fc.constantFrom(...STRATEGIES),
}).map((r) => ({
  shape: {
    seqLens: r.seqLens.map((l) => Math.max(l, r.qLen)),
    numHeads: r.numKVHeads * r.group,
    numKVHeads: r.numKVHeads,
    headDim: r.headDim,
    qLen: r.qLen,
  },
  options: { grid: r.grid, tileTokens: r.tileTokens, strategy: r.strategy as Strategy },
}));

Deno.test("plans cover every tile exactly once and keep each strategy's invariants", () => {
  fc.assert(
    fc.property(planArb, ({ shape, options }) => checkPlan(createPlan(shape, options))),
    fcParams(300),
  );
});

Deno.test("fixed plans keep the invariants (small grids, huge grids, MQA with qLen 16)", () => {
  const shapes = [
    { seqLens: [1], numHeads: 1, numKVHeads: 1, headDim: 8 },
    { seqLens: [1, 5000, 1], numHeads: 32, numKVHeads: 8, headDim: 128 },
    { seqLens: [64, 65, 63, 128], numHeads: 4, numKVHeads: 4, headDim: 64 },
    { seqLens: [16, 300], numHeads: 8, numKVHeads: 1, headDim: 256, qLen: 16 },
  ];
  for (const shape of shapes) {
    for (const strategy of STRATEGIES) {
      for (const grid of [1, 2, 16, 132, 100_000]) checkPlan(createPlan(shape, { grid, strategy }));
    }
  }
});

Deno.test("the same input gives the same plan", () => {
  fc.assert(
    fc.property(planArb, ({ shape, options }) => {
      const a = createPlan(shape, options);
      const b = createPlan({ ...shape, seqLens: shape.seqLens.slice() }, { ...options });
      assert.deepStrictEqual(a, b);
    }),
    fcParams(100),
  );
});

Deno.test("lean uses min(grid, tiles) workgroups", () => {
  const shape = { seqLens: [100], numHeads: 2, numKVHeads: 2, headDim: 64 }; // 2 x 2 tiles
  for (const grid of [3, 4, 1000]) {
    const plan = createPlan(shape, { grid });
    if (plan.partition.streamK) assert.equal(plan.schedule.workgroups, Math.min(grid, 4));
    else assert.ok(plan.schedule.workgroups <= 4);
  }
  // Three segments of 100 tiles on 8 workgroups: equal runs (38 tiles, 2 pieces) beat the
  // aligned cut (5 chunks of 20 per segment: 15 runs, two waves).
  const long = { seqLens: [6400], numHeads: 3, numKVHeads: 3, headDim: 64 };
  const plan = createPlan(long, { grid: 8 });
  assert.ok(plan.partition.streamK);
  assert.equal(plan.schedule.workgroups, 8);
  assert.equal(createPlan(shape, { grid: 1000, strategy: "single" }).schedule.workgroups, 2);
});

Deno.test("planning does no per-token work", () => {
  // A 512k-token sequence: the tables depend on the grid and the segments only.
  const shape = { seqLens: [512 * 1024], numHeads: 32, numKVHeads: 8, headDim: 128 };
  for (const strategy of STRATEGIES) {
    const plan = createPlan(shape, { grid: 132, strategy });
    checkPlan(plan);
    assert.equal(plan.numTiles, 8 * 8192);
    // Split runs at most 128 chunks per segment; the others at most grid + segments runs.
    const maxRuns = strategy === "split" ? 8 * 128 : 132 + 8;
    const { workgroups, pieces, reduce } = plan.schedule;
    assert.ok(workgroups <= maxRuns, `${strategy}: ${workgroups} workgroups`);
    assert.ok(pieces.length <= (maxRuns + 8) * PIECE_STRIDE);
    assert.ok(reduce.length <= 8 * REDUCE_STRIDE);
    assert.ok(plan.partition.runStarts.length <= maxRuns + 1);
  }
  // Four billion tokens would take seconds to touch one by one; planning them takes moments.
  const huge = { seqLens: [4_000_000_000], numHeads: 8, numKVHeads: 1, headDim: 128 };
  const t0 = performance.now();
  for (const strategy of STRATEGIES) {
    const plan = createPlan(huge, { grid: 132, strategy, tileTokens: 256 });
    assert.equal(plan.numTiles, Math.ceil(4_000_000_000 / 256));
    assert.ok(plan.schedule.pieces.length <= 133 * PIECE_STRIDE);
  }
  const elapsed = performance.now() - t0;
  assert.ok(elapsed < 1000, `planning 4e9 tokens took ${elapsed} ms`);
});

Deno.test("partition cuts arbitrary segment sizes into contiguous runs", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 2000 }), { minLength: 1, maxLength: 60 }),
      fc.integer({ min: 1, max: 500 }),
      fc.constantFrom(...STRATEGIES),
      (sizes, grid, strategy) => {
        const starts = new Uint32Array(sizes.length + 1);
        sizes.forEach((n, i) => starts[i + 1] = starts[i] + n);
        const total = starts[sizes.length];
        const part = partition(starts, strategy, grid);
        const runs = part.runStarts;
        assert.equal(runs[0], 0);
        assert.equal(runs[runs.length - 1], total);
        for (let i = 0; i + 1 < runs.length; i++) assert.ok(runs[i] < runs[i + 1]);
        const runSet = new Set(runs);
        if (strategy === "single") {
          assert.deepStrictEqual([...runs], [...starts]);
        } else if (strategy === "lean" && part.streamK) {
          assert.equal(runs.length - 1, Math.min(grid, total));
        } else if (strategy === "lean") {
          for (const s of starts) assert.ok(runSet.has(s), "the aligned cut keeps segment bounds");
        } else {
          // Every segment boundary is a cut, and each segment is cut into min(splits, size) runs.
          for (const s of starts) assert.ok(runSet.has(s));
          sizes.forEach((n, i) => {
            const inside = [...runs].filter((r) => r >= starts[i] && r < starts[i + 1]);
            assert.equal(inside.length, Math.min(part.splits, n));
          });
        }
      },
    ),
    fcParams(200),
  );
});

Deno.test("chooseSplits stays within its bounds", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2000 }),
      fc.integer({ min: 1, max: 100_000 }),
      fc.integer({ min: 1, max: 1000 }),
      (segments, maxTiles, grid) => {
        const n = chooseSplits(segments, maxTiles, grid);
        assert.ok(Number.isInteger(n) && n >= 1);
        assert.ok(n <= Math.max(1, Math.min(128, grid, maxTiles)));
        if (segments >= 0.8 * grid) assert.equal(n, 1);
      },
    ),
    fcParams(300),
  );
  // One long sequence on a big GPU is split; a batch that fills the GPU is not.
  assert.ok(chooseSplits(8, 1000, 132) > 1);
  assert.equal(chooseSplits(200, 1000, 132), 1);
});

Deno.test("segmentTiles counts the tiles of each (seq, kvHead, rowBlock) in order", () => {
  const problem = validateShape({
    seqLens: [4, 64, 65, 200],
    numHeads: 6,
    numKVHeads: 1,
    headDim: 256,
    qLen: 4,
  });
  const tiles = tileConfig(problem, { tileTokens: 64 });
  assert.equal(tiles.rowBlocks, 6); // 24 rows, at most 4 per block at headDim 256
  const starts = segmentTiles(problem, tiles);
  const counts = Array.from(starts.subarray(1), (v, i) => v - starts[i]);
  assert.deepStrictEqual(counts, [1, 1, 2, 4].flatMap((n) => Array(6).fill(n)));
});

Deno.test("schedule is a pure function of the partition", () => {
  const problem = validateShape({ seqLens: [700, 30], numHeads: 4, numKVHeads: 2, headDim: 64 });
  const tiles = tileConfig(problem);
  const part = partition(segmentTiles(problem, tiles), "lean", 7);
  assert.deepStrictEqual(schedule(problem, tiles, part), schedule(problem, tiles, part));
});

Deno.test("describePlan summarises sizes, balance and merges", () => {
  const plan = createPlan(
    { seqLens: [4096, 100], numHeads: 32, numKVHeads: 8, headDim: 128 },
    { strategy: "lean", grid: 132 },
  );
  const text = describePlan(plan);
  assert.match(text, /^lean: 2 seq x 8 kv heads x 1 row blocks = 16 segments, 528 tiles of 64/);
  assert.match(text, /\d+ workgroups \(grid 132(, \d+ splits)?\), \d+\.\.\d+ tiles each/);
  assert.match(text, new RegExp(`${plan.schedule.partialSlots} partial states merged into`));
});

Deno.test("lean cuts uniform segments in step when they fill the grid: GQA 32/8 at 128k on 264 workgroups", () => {
  // 8 segments of 2,048 tiles: equal runs of 62-63 tiles would cross head boundaries (two
  // pieces each); 33 chunks per segment give every workgroup one piece, its heads in step.
  const plan = createPlan(
    { seqLens: [131072], numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype: "f16" },
    { grid: 264 },
  );
  assert.equal(plan.partition.streamK, false);
  assert.equal(plan.partition.splits, 33);
  assert.equal(plan.schedule.workgroups, 264);
  // More equal segments than the grid holds: one run per segment, past one wave, costs no more
  // than equal runs where 80% of a GPU grid saturates the memory (64 x 16k GQA on 264).
  const wide = createPlan(
    { seqLens: Array(64).fill(16384), numHeads: 32, numKVHeads: 8, headDim: 128, kvDtype: "f16" },
    { grid: 264 },
  );
  assert.equal(wide.partition.streamK, false);
  assert.equal(wide.schedule.workgroups, 512);
  // On a small (CPU-sized) grid the second wave costs a whole wave: equal runs win.
  const small = createPlan(
    { seqLens: Array(12).fill(1024), numHeads: 4, numKVHeads: 1, headDim: 64 },
    { grid: 8 },
  );
  assert.ok(small.partition.streamK);
  // Ragged batches keep stream-K: one long sequence among short ones.
  const ragged = createPlan(
    { seqLens: [262144, ...Array(15).fill(2048)], numHeads: 32, numKVHeads: 8, headDim: 128 },
    { grid: 264 },
  );
  assert.ok(ragged.partition.streamK);
});

/**
 * KV windows and batch-invariant plans, on the planner and the CPU backend: window bounds fit the
 * binding limit, no piece crosses a window, every token of every segment is covered once, partial
 * slots stay consecutive in token order across windows, a one-window windowed plan is the plain
 * plan, and the CPU executes split plans against the float64 reference.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { createDecoder, createPlan, type Plan, STRATEGIES, type Strategy } from "../mod.ts";
import {
  DIRECT,
  executePlanOnCpu,
  INVARIANT_CHUNK_TILES,
  kvRowBytes,
  kvWindowBounds,
  PIECE,
  PIECE_STRIDE,
  REDUCE,
  REDUCE_STRIDE,
  resolveScale,
  scheduleWindows,
  unitRuns,
  validateShape,
} from "../plan.ts";
import { assertMatchesReference, fcParams, makeInput } from "./helpers.ts";

interface GlobalPiece {
  window: number;
  workgroup: number;
  seg: number;
  seq: number;
  /** Sequence-relative tokens. */
  begin: number;
  end: number;
  slot: number;
}

/** Checks the window invariants of a plan and returns its pieces in sequence coordinates. */
function checkWindowedPlan(plan: Plan, maxBindingBytes: number): GlobalPiece[] {
  const { problem: p, schedule: s, tiles } = plan;
  const rowBytes = kvRowBytes(p);
  const out: GlobalPiece[] = [];
  assert.equal(s.windows[0].tokenBegin, 0);
  assert.equal(s.windows[0].workgroupBegin, 0);
  assert.equal(s.windows[s.windows.length - 1].tokenEnd, p.totalTokens);
  assert.equal(s.windows[s.windows.length - 1].workgroupEnd, s.workgroups);
  s.windows.forEach((win, wi) => {
    if (wi > 0) {
      assert.equal(win.tokenBegin, s.windows[wi - 1].tokenEnd, "windows are contiguous");
      assert.equal(win.workgroupBegin, s.windows[wi - 1].workgroupEnd);
    }
    const rows = win.tokenEnd - win.tokenBegin;
    assert.ok(rows > 0 && win.workgroupEnd > win.workgroupBegin, `window ${wi} is empty`);
    if (s.windows.length > 1) {
      assert.ok(rows * rowBytes <= maxBindingBytes, `window ${wi}: ${rows} rows do not fit`);
    }
    for (let w = win.workgroupBegin; w < win.workgroupEnd; w++) {
      for (let i = s.pieceOffsets[w]; i < s.pieceOffsets[w + 1]; i++) {
        const f = i * PIECE_STRIDE;
        const seq = s.pieces[f + PIECE.seq];
        const kvStart = s.pieces[f + PIECE.kvStart];
        const tb = s.pieces[f + PIECE.tokenBegin];
        const te = s.pieces[f + PIECE.tokenEnd];
        const seqLen = s.pieces[f + PIECE.seqLen];
        assert.ok(tb < te && te <= seqLen, `piece ${i}: tokens ${tb}..${te} of ${seqLen}`);
        assert.ok(kvStart + te <= rows, `piece ${i} reads past its window`);
        assert.ok(seqLen >= p.qLen, `piece ${i}: shifted length ${seqLen} < qLen`);
        // Back to sequence coordinates: the shift is the sequence's tokens before the window.
        const shift = p.seqLens[seq] - seqLen;
        assert.equal(
          win.tokenBegin + kvStart,
          p.kvStarts[seq] + shift,
          `piece ${i}: kvStart is the sequence's first row in the window`,
        );
        const seg = (seq * p.numKVHeads + s.pieces[f + PIECE.kvHead]) * tiles.rowBlocks +
          s.pieces[f + PIECE.rowBlock];
        out.push({
          window: wi,
          workgroup: w,
          seg,
          seq,
          begin: tb + shift,
          end: te + shift,
          slot: s.pieces[f + PIECE.slot],
        });
      }
    }
  });
  // Coverage, DIRECT and slots per segment.
  const bySeg = new Map<number, GlobalPiece[]>();
  for (const pc of out) bySeg.set(pc.seg, [...(bySeg.get(pc.seg) ?? []), pc]);
  assert.equal(bySeg.size, plan.numSegments, "every segment has pieces");
  const slots = new Set<number>();
  for (const [seg, list] of bySeg) {
    const seq = list[0].seq;
    let at = 0;
    list.forEach((pc, i) => {
      assert.equal(pc.begin, at, `segment ${seg}: gap or overlap at ${at}`);
      at = pc.end;
      assert.equal(pc.slot === DIRECT, list.length === 1, `segment ${seg}: DIRECT iff one piece`);
      if (list.length > 1) {
        assert.equal(pc.slot, list[0].slot + i, `segment ${seg}: slots ascend in token order`);
        assert.ok(!slots.has(pc.slot));
        slots.add(pc.slot);
      }
    });
    assert.equal(at, p.seqLens[seq]);
  }
  assert.equal(slots.size, s.partialSlots);
  // One reduce record per split segment, in segment order.
  let lastSeg = -1;
  for (let r = 0; r < s.reduce.length; r += REDUCE_STRIDE) {
    const seg = (s.reduce[r + REDUCE.seq] * p.numKVHeads + s.reduce[r + REDUCE.kvHead]) *
        tiles.rowBlocks + s.reduce[r + REDUCE.rowBlock];
    assert.ok(seg > lastSeg, "reduce records in segment order");
    lastSeg = seg;
    const list = bySeg.get(seg)!;
    assert.equal(s.reduce[r + REDUCE.firstSlot], list[0].slot);
    assert.equal(s.reduce[r + REDUCE.numSlots], list.length);
  }
  assert.equal(
    s.reduce.length / REDUCE_STRIDE,
    [...bySeg.values()].filter((l) => l.length > 1).length,
  );
  return out;
}

const shapeArb = fc.record({
  seqLens: fc.array(
    fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 5000 })),
    { minLength: 1, maxLength: 8 },
  ),
  numKVHeads: fc.integer({ min: 1, max: 4 }),
  group: fc.integer({ min: 1, max: 4 }),
  headDim: fc.integer({ min: 1, max: 16 }).map((n) => 8 * n),
  qLen: fc.integer({ min: 1, max: 16 }),
  kvDtype: fc.constantFrom("f32", "f16", "bf16") as fc.Arbitrary<"f32" | "f16" | "bf16">,
  tileTokens: fc.constantFrom(16, 32, 64, 128),
  grid: fc.integer({ min: 1, max: 50 }),
  strategy: fc.constantFrom(...STRATEGIES),
  /** Rows per window beyond one tile, before rounding to bytes. */
  windowRows: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 4000 })),
  batchInvariant: fc.boolean(),
}).map((r) => {
  const shape = {
    seqLens: r.seqLens.map((l) => Math.max(l, r.qLen)),
    numHeads: r.numKVHeads * r.group,
    numKVHeads: r.numKVHeads,
    headDim: r.headDim,
    qLen: r.qLen,
    kvDtype: r.kvDtype,
  };
  const rowBytes = kvRowBytes(shape);
  return {
    shape,
    options: {
      grid: r.grid,
      tileTokens: r.tileTokens,
      workgroupSize: 16,
      strategy: r.strategy as Strategy,
      maxBindingBytes: (r.tileTokens + r.windowRows) * rowBytes + (r.windowRows % 7),
      batchInvariant: r.batchInvariant,
    },
  };
});

Deno.test("windowed plans fit the binding, never cross a window and cover every token once", () => {
  fc.assert(
    fc.property(shapeArb, ({ shape, options }) => {
      checkWindowedPlan(createPlan(shape, options), options.maxBindingBytes);
    }),
    fcParams(300),
  );
});

Deno.test("window cuts fall on tiles of the sequence and leave qLen tokens after them", () => {
  fc.assert(
    fc.property(shapeArb, ({ shape, options }) => {
      const p = validateShape(shape);
      const T = options.tileTokens;
      const bounds = kvWindowBounds(p, { ...options, tileTokens: T, alignTokens: T });
      for (let i = 1; i + 1 < bounds.length; i++) {
        const cut = bounds[i];
        const seq = p.kvStarts.findIndex((start, j) =>
          j < p.numSeqs && cut < p.kvStarts[j + 1] && cut >= start
        );
        const start = p.kvStarts[seq];
        if (cut === start) continue;
        assert.ok(p.kvStarts[seq + 1] - cut >= p.qLen, `cut ${cut} leaves fewer than qLen tokens`);
        // Off the tile grid only where the qLen rule forbids the tile boundary before it.
        if ((cut - start) % T !== 0) {
          assert.equal(cut, p.kvStarts[seq + 1] - p.qLen, `cut ${cut} off the tile grid`);
        }
      }
    }),
    fcParams(200),
  );
});

Deno.test("a windowed schedule with one window is the plain schedule", () => {
  fc.assert(
    fc.property(shapeArb, ({ shape, options }) => {
      const plain = createPlan(shape, {
        ...options,
        maxBindingBytes: undefined,
        batchInvariant: false,
      });
      const p = plain.problem;
      const windowed = scheduleWindows(p, plain.tiles, {
        strategy: options.strategy,
        grid: options.grid,
        bounds: Float64Array.of(0, p.totalTokens),
        batchInvariant: false,
      });
      assert.deepStrictEqual(windowed.schedule, plain.schedule);
      assert.deepStrictEqual(windowed.partition, plain.partition);
      assert.equal(windowed.numTiles, plain.numTiles);
    }),
    fcParams(150),
  );
});

Deno.test("bindings smaller than one tile of rows are rejected", () => {
  const shape = { seqLens: [1000], numHeads: 2, numKVHeads: 2, headDim: 64 }; // 512-byte rows
  assert.throws(
    () => createPlan(shape, { grid: 4, maxBindingBytes: 63 * 512 }),
    (e: Error) =>
      e instanceof RangeError &&
      /^maxBindingBytes must hold one tile .*: got 32256$/.test(e.message),
  );
  assert.throws(() => createPlan(shape, { grid: 4, maxBindingBytes: 0 }), RangeError);
  assert.throws(() => createPlan(shape, { grid: 4, maxBindingBytes: 1.5 }), RangeError);
  assert.throws(
    () => createPlan(shape, { grid: 4, maxBindingBytes: "1" as unknown as number }),
    TypeError,
  );
  assert.throws(
    () => createPlan(shape, { grid: 4, batchInvariant: 1 as unknown as boolean }),
    (e: Error) =>
      e instanceof TypeError && e.message === "batchInvariant must be a boolean: got number",
  );
  assert.equal(
    createPlan(shape, { grid: 4, maxBindingBytes: 64 * 512 }).schedule.windows.length,
    16,
  );
});

Deno.test("the CPU executes windowed and batch-invariant plans like the reference", () => {
  fc.assert(
    fc.property(shapeArb, fc.integer({ min: 0, max: 1 << 30 }), ({ shape, options }, seed) => {
      const tokens = shape.seqLens.reduce((a, b) => a + b, 0);
      const work = tokens * shape.numHeads * shape.headDim * shape.qLen;
      const scaleDown = Math.min(1, 400_000 / work);
      const seqLens = shape.seqLens.map((l) => Math.max(shape.qLen, Math.floor(l * scaleDown)));
      const s = { ...shape, seqLens };
      const input = makeInput({ ...s, seed });
      const plan = createPlan(s, options);
      checkWindowedPlan(plan, options.maxBindingBytes);
      assertMatchesReference(input, executePlanOnCpu(plan, input, resolveScale(input)));
    }),
    fcParams(80),
  );
});

Deno.test("batch-invariant plans cut sequences every chunk and balance chunks over the grid", () => {
  fc.assert(
    fc.property(shapeArb, ({ shape, options }) => {
      const plan = createPlan(shape, {
        ...options,
        maxBindingBytes: undefined,
        batchInvariant: true,
      });
      const pieces = checkWindowedPlan(plan, Infinity);
      const chunk = INVARIANT_CHUNK_TILES * plan.tiles.tileTokens;
      if (options.strategy === "single") {
        assert.equal(pieces.length, plan.numSegments);
        return;
      }
      for (const pc of pieces) {
        assert.equal(pc.begin % chunk, 0, "a piece starts on a chunk");
        assert.ok(pc.end - pc.begin <= chunk);
        assert.ok(pc.end === plan.problem.seqLens[pc.seq] || pc.end % chunk === 0);
      }
      if (options.strategy === "lean") {
        const runs = plan.partition.runStarts;
        const g = runs.length - 1;
        assert.ok(g <= options.grid);
        const ceilAvg = Math.ceil(plan.numTiles / g);
        for (let w = 0; w < g; w++) {
          assert.ok(runs[w + 1] - runs[w] <= ceilAvg + INVARIANT_CHUNK_TILES, `run ${w} too long`);
        }
      } else {
        assert.equal(plan.schedule.workgroups, pieces.length, "split: one workgroup per chunk");
      }
    }),
    fcParams(200),
  );
});

Deno.test("unitRuns cuts only between units, within one unit of the average", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 200 }),
      fc.integer({ min: 1, max: 300 }),
      (sizes, grid) => {
        const starts = new Uint32Array(sizes.length + 1);
        sizes.forEach((n, i) => starts[i + 1] = starts[i] + n);
        const runs = unitRuns(starts, grid);
        const total = starts[sizes.length];
        assert.equal(runs[0], 0);
        assert.equal(runs[runs.length - 1], total);
        const g = runs.length - 1;
        assert.ok(g >= 1 && g <= Math.min(grid, sizes.length));
        const boundaries = new Set(starts);
        for (let i = 0; i < g; i++) {
          assert.ok(runs[i] < runs[i + 1] && boundaries.has(runs[i + 1]));
          assert.ok(runs[i + 1] - runs[i] <= Math.ceil(total / g) + 8);
        }
      },
    ),
    fcParams(200),
  );
});

Deno.test("a sequence's batch-invariant pieces do not depend on the rest of the batch", () => {
  fc.assert(
    fc.property(
      shapeArb,
      fc.array(fc.integer({ min: 1, max: 3000 }), { maxLength: 6 }),
      fc.nat(),
      (c, others, at) => {
        const { shape, options } = c;
        const opts = { ...options, maxBindingBytes: undefined, batchInvariant: true };
        const pick = at % shape.seqLens.length;
        const len = shape.seqLens[pick];
        const piecesOf = (lens: number[], index: number) => {
          const plan = createPlan({ ...shape, seqLens: lens }, opts);
          return checkWindowedPlan(plan, Infinity).filter((pc) => pc.seq === index).map((pc) => ({
            seg: pc.seg - index * shape.numKVHeads * plan.tiles.rowBlocks,
            begin: pc.begin,
            end: pc.end,
            direct: pc.slot === DIRECT,
          })).sort((a, b) => a.seg - b.seg || a.begin - b.begin);
        };
        const alone = piecesOf([len], 0);
        const padded = others.map((l) => Math.max(l, shape.qLen));
        const batch = [...padded.slice(0, 3), len, ...padded.slice(3)];
        assert.deepStrictEqual(piecesOf(batch, Math.min(3, padded.length)), alone);
      },
    ),
    fcParams(150),
  );
});

Deno.test("the CPU decoder splits KV over windows through maxBindingBytes", async () => {
  const spec = { seqLens: [3000, 70, 1900], numHeads: 8, numKVHeads: 2, headDim: 64, seed: 3 };
  const input = makeInput(spec);
  const decoder = await createDecoder({ backend: "cpu", maxBindingBytes: 1 << 18 });
  try {
    assert.equal(decoder.profile.maxBindingBytes, 1 << 18);
    for (const strategy of STRATEGIES) {
      const plan = decoder.plan(input, { strategy });
      assert.ok(plan.schedule.windows.length >= 9, `${plan.schedule.windows.length} windows`);
      assertMatchesReference(input, await decoder.decode({ ...input, strategy }), strategy);
    }
  } finally {
    await decoder.dispose();
  }
  await assert.rejects(() => createDecoder({ backend: "cpu", maxBindingBytes: -1 }), RangeError);
  await assert.rejects(
    () => createDecoder({ backend: "cpu", batchInvariant: "yes" as unknown as boolean }),
    TypeError,
  );
});

/**
 * Tile geometry: row blocks bound the per-block query state, hold every row with no empty block,
 * are as few as the bound allows, and tuning options are checked.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { KV_DTYPES, MAX_HEAD_DIM } from "../mod.ts";
import { tileConfig } from "../plan.ts";
import { fcParams } from "./helpers.ts";

Deno.test("row blocks bound the query state, hold every row and are as few as possible", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: MAX_HEAD_DIM / 8 }).map((n) => 8 * n),
      fc.oneof(fc.integer({ min: 1, max: 32 }), fc.integer({ min: 1, max: 2048 })),
      fc.constantFrom(...KV_DTYPES),
      (headDim, rowsPerGroup, kvDtype) => {
        const c = tileConfig({ headDim, rowsPerGroup, kvDtype });
        // Head dims above 256 (MLA's class, 32 lanes per token): up to 4 rows, 2048 floats.
        const [most, floats] = headDim > 256 ? [4, 2048] : [8, 1024];
        const limit = Math.max(1, Math.min(most, Math.floor(floats / headDim)));
        assert.ok(c.rowsPerBlock >= 1 && c.rowsPerBlock <= limit, `rowsPerBlock ${c.rowsPerBlock}`);
        assert.ok(c.rowsPerBlock * headDim <= floats);
        assert.ok(c.rowBlocks * c.rowsPerBlock >= rowsPerGroup, "every row has a block");
        assert.ok((c.rowBlocks - 1) * c.rowsPerBlock < rowsPerGroup, "no block is empty");
        assert.ok((c.rowBlocks - 1) * limit < rowsPerGroup, "fewer blocks could not hold the rows");
        assert.equal(c.tileTokens, 64);
        assert.equal(c.workgroupSize, 128);
      },
    ),
    fcParams(500),
  );
});

Deno.test("small groups use one block", () => {
  assert.deepStrictEqual(tileConfig({ headDim: 128, rowsPerGroup: 4, kvDtype: "f16" }), {
    tileTokens: 64,
    rowsPerBlock: 4,
    rowBlocks: 1,
    workgroupSize: 128,
  });
  const c = tileConfig({ headDim: 128, rowsPerGroup: 17, kvDtype: "f32" });
  assert.deepStrictEqual([c.rowBlocks, c.rowsPerBlock], [3, 6]);
});

Deno.test("7-row blocks run as 8, the 8th masked, so two row sets split them, unless padRows is false", () => {
  const blocks = (headDim: number, rows: number, padRows?: boolean) => {
    const c = tileConfig({ headDim, rowsPerGroup: rows, kvDtype: "f16" }, { padRows });
    return [c.rowBlocks, c.rowsPerBlock];
  };
  // d128's 8-row class splits a token's rows in two row sets: 7 rows (7 per thread) run as 8,
  // 13 and 14 as 2x8.
  assert.deepStrictEqual(blocks(128, 7), [1, 8]);
  assert.deepStrictEqual(blocks(96, 7), [1, 8]);
  assert.deepStrictEqual(blocks(128, 14), [2, 8]);
  assert.deepStrictEqual(blocks(128, 13), [2, 8]);
  assert.deepStrictEqual(blocks(128, 7, false), [1, 7]);
  // d64's 8-row class has two row sets too since session 60: 7 rows run as 8 there as well.
  assert.deepStrictEqual(blocks(64, 7), [1, 8]);
  assert.deepStrictEqual(blocks(64, 7, false), [1, 7]);
  // 5 rows (5 per thread), 3 at d64 and d256 keep theirs.
  assert.deepStrictEqual(blocks(128, 5), [1, 5]);
  assert.deepStrictEqual(blocks(64, 3), [1, 3]);
  assert.deepStrictEqual(blocks(256, 3), [1, 3]);
  for (const rows of [1, 2, 3, 4, 5, 6, 8, 9, 10, 12]) {
    assert.deepStrictEqual(blocks(128, rows), blocks(128, rows, false));
  }
  assert.throws(
    () =>
      tileConfig({ headDim: 128, rowsPerGroup: 7, kvDtype: "f16" }, {
        padRows: 1 as unknown as boolean,
      }),
    (e: unknown) =>
      e instanceof TypeError && /padRows must be a boolean: got number/.test(e.message),
  );
});

Deno.test("tile and workgroup sizes accept powers of two in range", () => {
  const p = { headDim: 64, rowsPerGroup: 1, kvDtype: "f32" as const };
  for (const tileTokens of [16, 32, 64, 128, 256]) {
    assert.equal(tileConfig(p, { tileTokens }).tileTokens, tileTokens);
  }
  for (const workgroupSize of [16, 32, 64, 128, 256]) {
    const c = tileConfig(p, { workgroupSize, tileTokens: 256 });
    assert.equal(c.workgroupSize, workgroupSize);
  }
  // Threads share tokens, so a workgroup may be wider than its tile.
  assert.equal(tileConfig(p, { tileTokens: 16 }).workgroupSize, 128);
  assert.equal(tileConfig(p, { tileTokens: 16, workgroupSize: 256 }).workgroupSize, 256);
  const bad: [object, typeof TypeError | typeof RangeError, RegExp][] = [
    [{ tileTokens: 0 }, RangeError, /^tileTokens must be a power of two from 16 to 256: got 0$/],
    [{ tileTokens: 8 }, RangeError, /^tileTokens .*got 8$/],
    [{ tileTokens: 48 }, RangeError, /^tileTokens .*got 48$/],
    [{ tileTokens: 512 }, RangeError, /^tileTokens .*got 512$/],
    [{ tileTokens: 64.5 }, RangeError, /^tileTokens .*got 64\.5$/],
    [{ tileTokens: "64" }, TypeError, /^tileTokens must be a number/],
    [
      { workgroupSize: 8 },
      RangeError,
      /^workgroupSize must be a power of two from 16 to 256: got 8$/,
    ],
    [{ workgroupSize: 96 }, RangeError, /^workgroupSize .*got 96$/],
    [{ workgroupSize: 512, tileTokens: 256 }, RangeError, /^workgroupSize .*got 512$/],
    [{ workgroupSize: true }, TypeError, /^workgroupSize must be a number/],
  ];
  for (const [options, cls, message] of bad) {
    assert.throws(
      () => tileConfig(p, options),
      (e: unknown) =>
        e instanceof cls && e.constructor === cls && message.test((e as Error).message),
      JSON.stringify(options),
    );
  }
});

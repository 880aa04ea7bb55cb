/**
 * The softmax-rescale reducer: merges are associative and commutative within float tolerance, an
 * empty state is the identity, merging the states of the parts of a token range gives the state
 * of the whole range, the kernel-side row merge agrees with `mergeStates`, and bad inputs throw.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type AttentionState, type DecodeInput, mergeStates, referenceAttention } from "../mod.ts";
import { mergePartialRow, slotFloats } from "../plan.ts";
import {
  fcParams,
  maxAbsError,
  randomFloats,
  relativeL2Error,
  type Rng,
  seededRng,
} from "./helpers.ts";

/** A random state of `rows x dim`; a row is empty (lse -Infinity) with probability `pEmpty`. */
function randomState(rng: Rng, rows: number, dim: number, pEmpty = 0): AttentionState {
  const out = randomFloats(rng, rows * dim);
  const lse = randomFloats(rng, rows, 5);
  for (let r = 0; r < rows; r++) {
    if (rng() < pEmpty) {
      lse[r] = -Infinity;
      out.fill(0, r * dim, (r + 1) * dim);
    }
  }
  return { out, lse };
}

function emptyState(rows: number, dim: number): AttentionState {
  return { out: new Float32Array(rows * dim), lse: new Float32Array(rows).fill(-Infinity) };
}

/** Asserts two states agree within `tol` (relative for values above 1). */
function assertStatesClose(a: AttentionState, b: AttentionState, tol: number, what = ""): void {
  assert.equal(a.out.length, b.out.length);
  assert.equal(a.lse.length, b.lse.length);
  for (let i = 0; i < a.lse.length; i++) {
    if (a.lse[i] === -Infinity || b.lse[i] === -Infinity) {
      assert.equal(a.lse[i], b.lse[i], `${what} lse[${i}]`);
      continue;
    }
    const d = Math.abs(a.lse[i] - b.lse[i]);
    assert.ok(d <= tol * Math.max(1, Math.abs(b.lse[i])), `${what} lse[${i}]: off by ${d}`);
  }
  for (let i = 0; i < a.out.length; i++) {
    const d = Math.abs(a.out[i] - b.out[i]);
    assert.ok(d <= tol * Math.max(1, Math.abs(b.out[i])), `${what} out[${i}]: off by ${d}`);
  }
}

/** Merges `states` as a random binary tree (order kept). */
function mergeTree(states: AttentionState[], rng: Rng): AttentionState {
  if (states.length === 1) return states[0];
  const cut = 1 + Math.floor(rng() * (states.length - 1));
  return mergeStates([mergeTree(states.slice(0, cut), rng), mergeTree(states.slice(cut), rng)]);
}

const shapeArb = fc.record({
  rows: fc.integer({ min: 1, max: 4 }),
  dim: fc.integer({ min: 1, max: 16 }),
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
});

Deno.test("((a,b),c), (a,(b,c)) and [a,b,c] agree within 1e-6", () => {
  fc.assert(
    fc.property(shapeArb, fc.double({ min: 0, max: 0.5, noNaN: true }), (s, pEmpty) => {
      const rng = seededRng(s.seed);
      const [a, b, c] = [0, 1, 2].map(() => randomState(rng, s.rows, s.dim, pEmpty));
      const flat = mergeStates([a, b, c]);
      assertStatesClose(mergeStates([mergeStates([a, b]), c]), flat, 1e-6, "((a,b),c)");
      assertStatesClose(mergeStates([a, mergeStates([b, c])]), flat, 1e-6, "(a,(b,c))");
      assertStatesClose(mergeStates([c, a, b]), flat, 1e-6, "[c,a,b]");
    }),
    fcParams(300),
  );
});

Deno.test("any grouping of many merges agrees with the flat merge", () => {
  fc.assert(
    fc.property(shapeArb, fc.integer({ min: 2, max: 12 }), (s, n) => {
      const rng = seededRng(s.seed);
      const states = Array.from({ length: n }, () => randomState(rng, s.rows, s.dim, 0.1));
      assertStatesClose(mergeTree(states, rng), mergeStates(states), 1e-6, `tree of ${n}`);
    }),
    fcParams(200),
  );
});

Deno.test("merging with an empty state is the identity", () => {
  fc.assert(
    fc.property(shapeArb, (s) => {
      const a = randomState(seededRng(s.seed), s.rows, s.dim);
      const e = emptyState(s.rows, s.dim);
      assert.deepStrictEqual(mergeStates([a, e]), a);
      assert.deepStrictEqual(mergeStates([e, a]), a);
      assert.deepStrictEqual(mergeStates([e, a, e]), a);
      assert.deepStrictEqual(mergeStates([a]), a);
    }),
    fcParams(200),
  );
});

Deno.test("merging only empty states gives an empty state", () => {
  const m = mergeStates([emptyState(3, 4), emptyState(3, 4)]);
  assert.deepStrictEqual([...m.lse], [-Infinity, -Infinity, -Infinity]);
  for (const x of m.out) assert.ok(!Number.isNaN(x));
});

Deno.test("mergeStates weights by exp(lse)", () => {
  const a = { out: new Float32Array([1, 2]), lse: new Float32Array([0]) };
  const b = { out: new Float32Array([3, 4]), lse: new Float32Array([Math.log(3)]) };
  const m = mergeStates([a, b]);
  // Weights 1 and 3: (1*1 + 3*3) / 4 = 2.5, (1*2 + 3*4) / 4 = 3.5; lse = log(4).
  assert.ok(Math.abs(m.out[0] - 2.5) < 1e-6 && Math.abs(m.out[1] - 3.5) < 1e-6);
  assert.ok(Math.abs(m.lse[0] - Math.log(4)) < 1e-6);
  // Huge lse values do not overflow.
  const big = mergeStates([
    { out: new Float32Array([1]), lse: new Float32Array([1000]) },
    { out: new Float32Array([3]), lse: new Float32Array([1000]) },
  ]);
  assert.ok(Math.abs(big.out[0] - 2) < 1e-6);
  assert.ok(Math.abs(big.lse[0] - (1000 + Math.LN2)) < 1e-3);
});

/** A one-sequence-per-part input: the same queries against consecutive slices of K/V. */
function partsInput(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  lens: number[],
  numHeads: number,
  headDim: number,
): DecodeInput {
  const qs = new Float32Array(q.length * lens.length);
  lens.forEach((_, i) => qs.set(q, i * q.length));
  return { q: qs, k, v, seqLens: lens, numHeads, numKVHeads: 1, headDim };
}

Deno.test("merging the states of the parts of a token range gives the whole range", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 400 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 8 }).map((n) => 8 * n),
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 0, max: 0x7fffffff }),
      (tokens, numHeads, headDim, numParts, seed) => {
        const rng = seededRng(seed);
        const q = randomFloats(rng, numHeads * headDim, 2);
        const k = randomFloats(rng, tokens * headDim);
        const v = randomFloats(rng, tokens * headDim);
        // Random cut points, every part non-empty.
        const cuts = new Set<number>();
        while (cuts.size < Math.min(numParts, tokens) - 1) {
          cuts.add(1 + Math.floor(rng() * (tokens - 1)));
        }
        const bounds = [0, ...[...cuts].sort((a, b) => a - b), tokens];
        const lens = bounds.slice(1).map((b, i) => b - bounds[i]);
        const whole = referenceAttention(partsInput(q, k, v, [tokens], numHeads, headDim));
        const parts = referenceAttention(partsInput(q, k, v, lens, numHeads, headDim));
        const row = numHeads * headDim;
        const states = lens.map((_, i) => ({
          out: Float32Array.from(parts.out.subarray(i * row, (i + 1) * row)),
          lse: Float32Array.from(parts.lse.subarray(i * numHeads, (i + 1) * numHeads)),
        }));
        const merged = mergeStates(states);
        assert.ok(relativeL2Error(merged.out, whole.out) < 1e-6, `out for parts ${lens}`);
        assert.ok(maxAbsError(merged.lse, whole.lse) < 1e-5, `lse for parts ${lens}`);
        // The parts are disjoint, so their order does not matter.
        const reversed = mergeStates(states.slice().reverse());
        assert.ok(relativeL2Error(reversed.out, whole.out) < 1e-6);
      },
    ),
    fcParams(100),
  );
});

Deno.test("mergePartialRow agrees with mergeStates on log2-domain partial slots", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 4 }).map((n) => 8 * n),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 0, max: 0x7fffffff }),
      (rowsPerBlock, headDim, numSlots, seed) => {
        const rng = seededRng(seed);
        const stride = slotFloats(rowsPerBlock, headDim);
        assert.equal(stride, rowsPerBlock * (headDim + 2));
        const firstSlot = Math.floor(rng() * 3);
        const partials = randomFloats(rng, (firstSlot + numSlots + 1) * stride, 50);
        const row = Math.floor(rng() * rowsPerBlock);
        const states: AttentionState[] = [];
        for (let i = 0; i < numSlots; i++) {
          const base = (firstSlot + i) * stride;
          const mAt = base + rowsPerBlock * headDim + row;
          const lAt = mAt + rowsPerBlock;
          // Slot 0 always holds tokens; later slots may be fully masked (m = -inf, l = 0).
          const empty = i > 0 && rng() < 0.3;
          partials[mAt] = empty ? -Infinity : (2 * rng() - 1) * 10;
          partials[lAt] = empty ? 0 : 0.5 + 20 * rng();
          const o = partials.subarray(base + row * headDim, base + (row + 1) * headDim);
          if (empty) o.fill(0);
          states.push({
            out: o.map((x) => x / partials[lAt] || 0),
            lse: new Float32Array([(partials[mAt] + Math.log2(partials[lAt])) * Math.LN2]),
          });
        }
        const out = new Float32Array(headDim + 5).fill(NaN);
        const lse = mergePartialRow(
          partials,
          stride,
          rowsPerBlock,
          headDim,
          firstSlot,
          numSlots,
          row,
          out,
          3,
        );
        const want = mergeStates(states);
        assert.ok(Math.abs(lse - want.lse[0]) <= 1e-5 * Math.max(1, Math.abs(want.lse[0])));
        assert.ok(relativeL2Error(out.subarray(3, 3 + headDim), want.out) < 1e-6);
        assert.ok(Number.isNaN(out[2]) && Number.isNaN(out[3 + headDim]), "writes only its row");
      },
    ),
    fcParams(200),
  );
});

Deno.test("mergePartialRow: a slot whose sum is NaN makes the row NaN, wherever it sits", () => {
  // Three slots of one row (rowsPerBlock 1, headDim 2): o[2], m, l each; the middle or last marked.
  for (const marked of [1, 2]) {
    const partials = new Float32Array([1, 2, 0, 1, 3, 4, 1, 2, 5, 6, -1, 3]);
    partials[marked * 4 + 3] = NaN;
    const out = new Float32Array(4).fill(7);
    const lse = mergePartialRow(partials, slotFloats(1, 2), 1, 2, 0, 3, 0, out, 1);
    assert.ok(Number.isNaN(lse), `slot ${marked}: lse ${lse}`);
    assert.deepEqual(Array.from(out), [7, NaN, NaN, 7], `slot ${marked}`);
  }
});

Deno.test("mergeStates rejects bad inputs", () => {
  const a = { out: new Float32Array(4), lse: new Float32Array(2) };
  const cases: [unknown, typeof TypeError | typeof RangeError, RegExp][] = [
    ["states", TypeError, /^states must be an array: got string$/],
    [undefined, TypeError, /^states must be an array: got undefined$/],
    [[], RangeError, /^states must hold at least one state: got 0$/],
    [[null], TypeError, /^states\[0\] must have Float32Array out and lse$/],
    [[a, { out: [0, 0, 0, 0], lse: [0, 0] }], TypeError, /^states\[1\] must have Float32Array/],
    [[a, { out: new Float64Array(4), lse: new Float32Array(2) }], TypeError, /^states\[1\]/],
    [[a, { out: new Float32Array(4) }], TypeError, /^states\[1\]/],
    [
      [a, { out: new Float32Array(6), lse: new Float32Array(3) }],
      RangeError,
      /^states\[1\] must match states\[0\]'s shape \(2 rows\): got 3 rows$/,
    ],
    [
      [a, { out: new Float32Array(6), lse: new Float32Array(2) }],
      RangeError,
      /^states\[1\] must match/,
    ],
    [
      [{ out: new Float32Array(5), lse: new Float32Array(2) }],
      RangeError,
      /^states\[0\]\.out length must be a multiple of its rows \(2\)$/,
    ],
  ];
  for (const [states, cls, message] of cases) {
    assert.throws(
      () => mergeStates(states as AttentionState[]),
      (e: unknown) => e instanceof Error && e.constructor === cls && message.test(e.message),
      `${cls.name} ${message}`,
    );
  }
});

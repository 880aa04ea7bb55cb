/**
 * The f16 conversions used where `Float16Array` is missing (Node 20) agree bit for bit with
 * `Float16Array` on every f16 value, every tie between neighbours, and random and edge floats.
 */

import assert from "node:assert/strict";
import { fromF16BitsPortable, toF16BitsPortable } from "../mod.ts";
import { seededRng } from "./helpers.ts";

const ALL_BITS = Uint16Array.from({ length: 65536 }, (_, i) => i);

function assertSameFloats(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i])) assert.ok(Number.isNaN(got[i]), `${what} ${i}: NaN`);
    else assert.ok(Object.is(got[i], want[i]), `${what} ${i}: got ${got[i]}, want ${want[i]}`);
  }
}

function assertSameBits(values: Float32Array, what: string): void {
  const got = toF16BitsPortable(values);
  const want = new Uint16Array(new Float16Array(values).buffer);
  for (let i = 0; i < values.length; i++) {
    const isNaN = (want[i] & 0x7c00) === 0x7c00 && (want[i] & 0x3ff) !== 0;
    if (isNaN) {
      assert.ok((got[i] & 0x7c00) === 0x7c00 && (got[i] & 0x3ff) !== 0, `${what}: NaN stays NaN`);
    } else {
      assert.equal(got[i], want[i], `${what} ${values[i]}: got ${got[i]}, want ${want[i]}`);
    }
  }
}

Deno.test("fromF16BitsPortable decodes all 65536 patterns like Float16Array", () => {
  assertSameFloats(
    fromF16BitsPortable(ALL_BITS),
    new Float32Array(new Float16Array(ALL_BITS.buffer)),
    "bits",
  );
});

Deno.test("toF16BitsPortable encodes every f16 value and every tie like Float16Array", () => {
  const exact = new Float32Array(new Float16Array(ALL_BITS.buffer));
  assertSameBits(exact, "exact");
  // Midpoints between neighbours (ties: round to even) and points just either side of them.
  const mids: number[] = [];
  for (let h = 0; h < 0x7bff; h++) {
    const a = exact[h];
    const b = exact[h + 1];
    const m = Math.fround((a + b) / 2);
    mids.push(m, -m, Math.fround(m * (1 + 2 ** -20)), Math.fround(m * (1 - 2 ** -20)));
  }
  assertSameBits(new Float32Array(mids), "midpoints");
});

Deno.test("toF16BitsPortable matches Float16Array on edge and random floats", () => {
  const edges = new Float32Array([
    0,
    -0,
    1,
    -1,
    65504,
    65519,
    65519.996,
    65520,
    -65520,
    1e6,
    -1e30,
    Infinity,
    -Infinity,
    NaN,
    2 ** -14,
    2 ** -24,
    2 ** -25,
    2 ** -25 * 1.0001,
    2 ** -26,
    1.5 * 2 ** -24,
    2.5 * 2 ** -24,
    1e-10,
    -1e-10,
    3.4e38,
    1.401298464324817e-45,
    0.1,
    1 / 3,
  ]);
  assertSameBits(edges, "edge");
  const rand = seededRng(0xf16);
  const values = new Float32Array(200_000);
  for (let i = 0; i < values.length; i++) {
    values[i] = (rand() - 0.5) * 2 ** Math.floor(rand() * 60 - 35);
  }
  assertSameBits(values, "random");
});

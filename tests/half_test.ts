/**
 * f16 and bf16 conversions: known bit patterns, exhaustive decode and round-trip over all 65536
 * patterns against an independent bit-level decoder, round-to-nearest-even on random floats,
 * agreement with `Float16Array`, and typed-array views with offsets.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeKV, encodeKV, toBf16Bits, toF16Bits } from "../mod.ts";
import { fcParams } from "./helpers.ts";

/** Independent f16 decoder: sign, 5-bit exponent (bias 15), 10-bit mantissa. */
function f16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const e = (bits >> 10) & 0x1f;
  const m = bits & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Independent bf16 decoder: sign, 8-bit exponent (bias 127), 7-bit mantissa. */
function bf16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const e = (bits >> 7) & 0xff;
  const m = bits & 0x7f;
  if (e === 0) return sign * m * 2 ** -133;
  if (e === 0xff) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 128) * 2 ** (e - 127);
}

const ALL_PATTERNS = Uint16Array.from({ length: 65536 }, (_, i) => i);

const isNaNPattern = (bits: number, expBits: number, mantMask: number) =>
  (bits & expBits) === expBits && (bits & mantMask) !== 0;

interface Format {
  name: "f16" | "bf16";
  encode: (x: Float32Array) => Uint16Array;
  value: (bits: number) => number;
  expBits: number;
  mantMask: number;
  /** Magnitude bits of the largest finite value. */
  maxFinite: number;
}

const FORMATS: Format[] = [
  {
    name: "f16",
    encode: toF16Bits,
    value: f16Value,
    expBits: 0x7c00,
    mantMask: 0x3ff,
    maxFinite: 0x7bff,
  },
  {
    name: "bf16",
    encode: toBf16Bits,
    value: bf16Value,
    expBits: 0x7f80,
    mantMask: 0x7f,
    maxFinite: 0x7f7f,
  },
];

const one = (f: Format, x: number) => f.encode(new Float32Array([x]))[0];

Deno.test("known f16 bit patterns", () => {
  const table: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0, 0x0000],
    [-0, 0x8000],
    [0.5, 0x3800],
    [-1.5, 0xbe00],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [65504, 0x7bff],
    [65519, 0x7bff],
    [65520, 0x7c00], // halfway to the next binade: ties to even, which is infinity
    [1e6, 0x7c00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half of it: ties to even (zero)
    [3 * 2 ** -26, 0x0001],
    [1 + 2 ** -11, 0x3c00], // tie between 0x3c00 and 0x3c01: even
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
  ];
  for (const [x, bits] of table) {
    assert.equal(one(FORMATS[0], x), bits, `toF16Bits(${x})`);
    assert.ok(Object.is(decodeKV(new Uint16Array([bits]), "f16")[0], f16Value(bits)));
  }
  assert.deepStrictEqual(toF16Bits(new Float32Array([1, -2])), new Uint16Array([15360, 49152]));
  assert.ok(isNaNPattern(one(FORMATS[0], NaN), 0x7c00, 0x3ff));
});

Deno.test("known bf16 bit patterns", () => {
  const fromBits = (b: number) => new Float32Array(new Uint32Array([b]).buffer)[0];
  const table: [number, number][] = [
    [1, 0x3f80],
    [-2, 0xc000],
    [0, 0x0000],
    [-0, 0x8000],
    [Math.PI, 0x4049],
    [0.1, 0x3dcd],
    [65504, 0x4780],
    [Infinity, 0x7f80],
    [-Infinity, 0xff80],
    [1 + 2 ** -8, 0x3f80], // tie: even
    [1 + 3 * 2 ** -8, 0x3f82], // tie: even
    [-(1 + 2 ** -8 + 2 ** -20), 0xbf81], // just above the tie
    [fromBits(0x7f7fffff), 0x7f80], // the largest float rounds to infinity
    [fromBits(0x7f7f7fff), 0x7f7f], // just below the tie stays finite
    [fromBits(0x00000001), 0x0000], // the smallest subnormal rounds to zero
    [fromBits(0x00008000), 0x0000], // tie: even (zero)
    [fromBits(0x00018000), 0x0002], // tie: even
    [fromBits(0x000116c2), 0x0001],
  ];
  for (const [x, bits] of table) assert.equal(one(FORMATS[1], x), bits, `toBf16Bits(${x})`);
  assert.deepStrictEqual(toBf16Bits(new Float32Array([1, -2])), new Uint16Array([16256, 49152]));
  // NaN stays NaN, also a signalling NaN whose payload lives only in the dropped bits.
  // (Built from raw bits: a NaN read into a JS number may lose its payload.)
  for (const nan of [0x7fc00000, 0x7f800001, 0xff800001, 0x7fff0000, 0xffc00000]) {
    const b = toBf16Bits(new Float32Array(new Uint32Array([nan]).buffer))[0];
    assert.ok(isNaNPattern(b, 0x7f80, 0x7f), `NaN 0x${nan.toString(16)} -> 0x${b.toString(16)}`);
    assert.equal(b & 0x8000, (nan >>> 16) & 0x8000, "NaN keeps its sign");
  }
});

for (const f of FORMATS) {
  Deno.test(`${f.name}: decodeKV matches a bit-level decoder on all 65536 patterns`, () => {
    const decoded = decodeKV(ALL_PATTERNS, f.name);
    assert.ok(decoded instanceof Float32Array);
    assert.equal(decoded.length, 65536);
    for (let b = 0; b < 65536; b++) {
      const want = f.value(b);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(decoded[b]), `0x${b.toString(16)}`);
      else assert.ok(Object.is(decoded[b], want), `0x${b.toString(16)}: ${decoded[b]} != ${want}`);
    }
  });

  Deno.test(`${f.name}: every pattern survives decode then encode`, () => {
    const back = f.encode(decodeKV(ALL_PATTERNS, f.name));
    for (let b = 0; b < 65536; b++) {
      if (isNaNPattern(b, f.expBits, f.mantMask)) {
        assert.ok(isNaNPattern(back[b], f.expBits, f.mantMask), `NaN 0x${b.toString(16)}`);
      } else {
        assert.equal(back[b], b, `0x${b.toString(16)}`);
      }
    }
  });

  Deno.test(`${f.name}: random floats round to the nearest value, ties to even`, () => {
    const maxFinite = f.value(f.maxFinite);
    // Values at or past maxFinite + half an ulp round to infinity.
    const overflow = maxFinite + (maxFinite - f.value(f.maxFinite - 1)) / 2;
    fc.assert(
      fc.property(fc.float(), (x) => {
        const bits = one(f, x);
        const y = f.value(bits);
        if (Number.isNaN(x)) return assert.ok(Number.isNaN(y));
        assert.equal(bits >> 15, x < 0 || Object.is(x, -0) ? 1 : 0, "sign is kept");
        const ax = Math.abs(x);
        if (!Number.isFinite(y)) return assert.ok(ax >= overflow, `${x} overflowed`);
        assert.ok(ax < overflow, `${x} should overflow`);
        const mag = bits & 0x7fff;
        const ay = Math.abs(y);
        for (const n of [mag - 1, mag + 1]) {
          if (n < 0) continue;
          const d = Math.abs(ax - f.value(n));
          assert.ok(
            Math.abs(ax - ay) <= d,
            `${x} -> 0x${bits.toString(16)}: 0x${n.toString(16)} nearer`,
          );
          if (Math.abs(ax - ay) === d) assert.equal(mag % 2, 0, `tie of ${x} must go to even`);
        }
      }),
      fcParams(2000),
    );
  });

  Deno.test(`${f.name}: encodeKV and decodeKV round-trip exactly representable values`, () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 65535 }), { maxLength: 64 }), (patterns) => {
        const finite = patterns.filter((b) => (b & f.expBits) !== f.expBits);
        const values = Float32Array.from(finite, f.value);
        const encoded = encodeKV(values, f.name);
        assert.ok(encoded instanceof Uint16Array);
        assert.deepStrictEqual(encoded, f.encode(values));
        assert.deepStrictEqual(decodeKV(encoded, f.name), values);
      }),
      fcParams(200),
    );
  });

  Deno.test(`${f.name}: views with a byte offset convert only their own elements`, () => {
    const base = Float32Array.from({ length: 16 }, (_, i) => (i - 7.3) * 1.37);
    const view = base.subarray(5, 11);
    assert.deepStrictEqual(f.encode(view), f.encode(Float32Array.from(view)));
    const bits = f.encode(base);
    const bitsView = bits.subarray(3, 9);
    assert.deepStrictEqual(decodeKV(bitsView, f.name), decodeKV(bits, f.name).subarray(3, 9));
  });
}

Deno.test("f16 agrees with Float16Array on random floats", () => {
  fc.assert(
    fc.property(fc.array(fc.float(), { minLength: 1, maxLength: 32 }), (xs) => {
      const values = Float32Array.from(xs);
      const halves = new Float16Array(values);
      const bits = toF16Bits(values);
      const expected = new Uint16Array(halves.buffer);
      for (let i = 0; i < xs.length; i++) {
        if (Number.isNaN(xs[i])) assert.ok(isNaNPattern(bits[i], 0x7c00, 0x3ff));
        else assert.equal(bits[i], expected[i], `${xs[i]}`);
      }
      assert.deepStrictEqual(decodeKV(bits, "f16"), Float32Array.from(halves));
    }),
    fcParams(300),
  );
});

Deno.test("f32 KV passes through unchanged", () => {
  const values = new Float32Array([1.1, -2.2, 3.3e-30]);
  assert.equal(encodeKV(values, "f32"), values);
  assert.equal(decodeKV(values, "f32"), values);
});

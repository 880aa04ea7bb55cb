/**
 * The 8-bit KV formats' host conversions (`encodeKV` / `decodeKV` with `int8`, `fp8e4m3`,
 * `fp8e5m2`): every code against an independent float64 decode written from the OCP FP8 bit
 * layouts, round-to-nearest-even ties, saturation, subnormals, NaN, scales, bad arguments.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeKV, dynamicKVScales, encodeKV, type KVDtype } from "../mod.ts";
import { fcParams } from "./helpers.ts";

/** Float64 value of an FP8 code from its fields (sign, exponent, mantissa), per OCP FP8. */
function fp8Reference(code: number, dtype: "fp8e4m3" | "fp8e5m2"): number {
  const [E, M, bias] = dtype === "fp8e4m3" ? [4, 3, 7] : [5, 2, 15];
  const s = (code >> 7) & 1;
  const e = (code >> M) & ((1 << E) - 1);
  const m = code & ((1 << M) - 1);
  const sign = s ? -1 : 1;
  if (dtype === "fp8e5m2" && e === 31) return m === 0 ? sign * Infinity : NaN;
  if (dtype === "fp8e4m3" && e === 15 && m === 7) return NaN;
  if (e === 0) return sign * (m / (1 << M)) * Math.pow(2, 1 - bias);
  return sign * (1 + m / (1 << M)) * Math.pow(2, e - bias);
}

const FP8 = ["fp8e4m3", "fp8e5m2"] as const;
const ALL_CODES = Uint8Array.from({ length: 256 }, (_, i) => i);

Deno.test("decodeKV: every FP8 code is its float64 value (OCP E4M3 / E5M2)", () => {
  for (const dtype of FP8) {
    const got = decodeKV(ALL_CODES, dtype);
    for (let c = 0; c < 256; c++) {
      const want = fp8Reference(c, dtype);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(got[c]), `${dtype} ${c}`);
      else assert.ok(Object.is(got[c], want), `${dtype} code ${c}: ${got[c]} != ${want}`);
    }
  }
  // The formats' landmarks.
  const e4 = decodeKV(ALL_CODES, "fp8e4m3");
  assert.equal(e4[0x7e], 448);
  assert.equal(e4[0x01], 2 ** -9);
  assert.equal(e4[0x08], 2 ** -6);
  const e5 = decodeKV(ALL_CODES, "fp8e5m2");
  assert.equal(e5[0x7b], 57344);
  assert.equal(e5[0x7c], Infinity);
  assert.equal(e5[0xfc], -Infinity);
  assert.equal(e5[0x01], 2 ** -16);
});

Deno.test("decodeKV: int8 codes times the scale", () => {
  const codes = Int8Array.from({ length: 256 }, (_, i) => i - 128);
  const got = decodeKV(codes, "int8", { scale: 0.25 });
  for (let i = 0; i < 256; i++) assert.equal(got[i], (i - 128) * 0.25);
});

Deno.test("encodeKV: every finite FP8 value encodes to its own code", () => {
  for (const dtype of FP8) {
    for (let c = 0; c < 256; c++) {
      const x = fp8Reference(c, dtype);
      if (!Number.isFinite(x)) continue;
      const [got] = encodeKV(new Float32Array([x]), dtype);
      assert.equal(got, c, `${dtype} ${x}`);
    }
  }
});

Deno.test("encodeKV: FP8 rounds to nearest, ties to the even code, between every pair of codes", () => {
  for (const dtype of FP8) {
    for (let c = 0; c < 0x7f; c++) {
      const lo = fp8Reference(c, dtype);
      const hi = fp8Reference(c + 1, dtype);
      if (!Number.isFinite(lo) || !Number.isFinite(hi)) continue;
      const mid = (lo + hi) / 2; // exact in f32: one more bit than the format
      const even = c % 2 === 0 ? c : c + 1;
      const below = Math.fround(mid - (hi - lo) / 64);
      const above = Math.fround(mid + (hi - lo) / 64);
      const got = encodeKV(new Float32Array([mid, below, above, -mid]), dtype);
      assert.deepEqual(Array.from(got), [even, c, c + 1, 0x80 | even], `${dtype} ${lo}..${hi}`);
    }
  }
});

Deno.test("encodeKV: saturation, infinities, NaN and signed zero", () => {
  const x = new Float32Array([1e9, -1e9, Infinity, -Infinity, NaN, -0, 0, 460, 480, 61440]);
  assert.deepEqual(
    Array.from(encodeKV(x, "fp8e4m3")),
    [0x7e, 0xfe, 0x7e, 0xfe, 0x7f, 0x80, 0, 0x7e, 0x7e, 0x7e],
  );
  assert.deepEqual(
    Array.from(encodeKV(x, "fp8e5m2")),
    [0x7b, 0xfb, 0x7b, 0xfb, 0x7e, 0x80, 0, 0x5f, 0x60, 0x7b],
  );
  assert.deepEqual(
    Array.from(encodeKV(new Float32Array([1e9, -1e9, Infinity, -Infinity, 126.5, -127.5]), "int8")),
    [127, -127, 127, -127, 126, -127],
  );
  assert.throws(
    () => encodeKV(new Float32Array([1, NaN]), "int8"),
    (e: Error) => e instanceof RangeError && /values\[1\].*NaN/.test(e.message),
  );
});

Deno.test("encodeKV: subnormals and underflow to zero, ties to even", () => {
  // E4M3 subnormal quantum 2^-9: 0.5 quantum ties to 0, 1.5 to 2, 2.5 to 2.
  const q4 = 2 ** -9;
  assert.deepEqual(
    Array.from(
      encodeKV(new Float32Array([q4 / 2, 1.5 * q4, 2.5 * q4, q4 / 4, 0.51 * q4]), "fp8e4m3"),
    ),
    [0, 2, 2, 0, 1],
  );
  // 7.5 quanta rounds up to the smallest normal 8 x 2^-9 = 2^-6 (code 8).
  assert.deepEqual(Array.from(encodeKV(new Float32Array([7.5 * q4]), "fp8e4m3")), [8]);
  const q5 = 2 ** -16;
  assert.deepEqual(
    Array.from(encodeKV(new Float32Array([q5 / 2, 1.5 * q5, 3.5 * q5, -q5]), "fp8e5m2")),
    [0, 2, 4, 0x81],
  );
});

Deno.test("encodeKV: int8 rounds half to even and divides by the scale", () => {
  const got = encodeKV(new Float32Array([0.5, 1.5, 2.5, -0.5, -1.5, 3]), "int8", { scale: 1 });
  assert.deepEqual(Array.from(got), [0, 2, 2, 0, -2, 3]);
  const scaled = encodeKV(new Float32Array([1, 2, 3]), "int8", { scale: 0.5 });
  assert.deepEqual(Array.from(scaled), [2, 4, 6]);
});

Deno.test("encode then decode: per-token scales, within half a step of the format", () => {
  fc.assert(
    fc.property(
      fc.constantFrom<KVDtype>("int8", "fp8e4m3", "fp8e5m2"),
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.float({ min: -100, max: 100, noNaN: true }), { minLength: 8, maxLength: 8 }),
      fc.array(fc.float({ min: Math.fround(0.01), max: 4, noNaN: true }), {
        minLength: 4,
        maxLength: 4,
      }),
      (dtype, groups, raw, scales) => {
        const values = Float32Array.from({ length: 8 * groups }, (_, i) => raw[i % 8] * (i + 1));
        const scale = Float32Array.from(scales.slice(0, groups));
        const codes = encodeKV(values, dtype, { scale });
        const back = decodeKV(codes, dtype, { scale });
        const max = dtype === "int8" ? 127 : dtype === "fp8e4m3" ? 448 : 57344;
        const rel = dtype === "int8" ? 0 : dtype === "fp8e4m3" ? 2 ** -4 : 2 ** -3;
        for (let i = 0; i < values.length; i++) {
          const s = scale[Math.floor(i / 8)];
          const x = Math.max(-max, Math.min(max, values[i] / s));
          const err = Math.abs(back[i] / s - x);
          const tol = dtype === "int8" ? 0.5 : Math.max(Math.abs(x) * rel, 2 ** -10);
          assert.ok(err <= tol + 1e-5 * Math.abs(x), `${dtype} ${values[i]} / ${s}: ${back[i]}`);
        }
      },
    ),
    fcParams(200),
  );
});

Deno.test("encodeKV / decodeKV: bad arguments throw naming the field and value", () => {
  const v = new Float32Array(8);
  const cases: Array<[() => unknown, ErrorConstructor, RegExp]> = [
    [
      () => encodeKV(v, "int8", { scale: 0 }),
      RangeError,
      /scale must be a finite number > 0: got 0/,
    ],
    [() => encodeKV(v, "int8", { scale: -1 }), RangeError, /scale.*got -1/],
    [() => encodeKV(v, "fp8e4m3", { scale: NaN }), RangeError, /scale.*got NaN/],
    [
      () => encodeKV(v, "fp8e4m3", { scale: "2" as never }),
      TypeError,
      /scale must be a number or a Float32Array/,
    ],
    [
      () => encodeKV(v, "fp8e5m2", { scale: new Float32Array(3) }),
      RangeError,
      /scale must have a length dividing the 8 values.*: got 3/,
    ],
    [
      () => encodeKV(v, "fp8e5m2", { scale: new Float32Array([1, Infinity]) }),
      RangeError,
      /scale\[1\].*Infinity/,
    ],
    [() => encodeKV(v, "f16", { scale: 2 }), RangeError, /8-bit kvDtypes only.*"f16"/],
    [
      () => encodeKV(v, "int4" as never),
      RangeError,
      /kvDtype must be one of .*"fp8e5m2": got "int4"/,
    ],
    [() => encodeKV([1] as never, "int8"), TypeError, /values must be a Float32Array: got Array/],
    [
      () => decodeKV(new Uint8Array(8), "int8"),
      TypeError,
      /data must be a Int8Array \(kvDtype "int8"\): got Uint8Array/,
    ],
    [
      () => decodeKV(new Int8Array(8), "int8", null as never),
      TypeError,
      /options must be an object: got null/,
    ],
  ];
  for (const [f, type, pattern] of cases) {
    assert.throws(f, (e: Error) => e instanceof type && pattern.test(e.message), String(pattern));
  }
  // Still usable afterwards.
  assert.deepEqual(Array.from(encodeKV(new Float32Array([2]), "int8", { scale: 2 })), [1]);
});

Deno.test("dynamicKVScales: the smallest power of two fitting each row's largest finite magnitude", () => {
  const max = { int8: 127, fp8e4m3: 448, fp8e5m2: 57344 } as const;
  fc.assert(
    fc.property(
      fc.constantFrom("int8" as const, "fp8e4m3" as const, "fp8e5m2" as const),
      fc.array(fc.float({ noNaN: false }), { minLength: 8, maxLength: 8 }),
      fc.integer({ min: -40, max: 40 }),
      (dtype, raw, shift) => {
        const values = Float32Array.from(raw, (x) => x * 2 ** shift);
        const [scale] = dynamicKVScales(values, dtype, { headDim: 8 });
        assert.ok(Number.isInteger(Math.log2(scale)), `${scale} is a power of two`);
        let amax = 0;
        for (const x of values) if (Number.isFinite(x)) amax = Math.max(amax, Math.abs(x));
        if (amax < 2 ** -126) return assert.equal(scale, 1);
        const k = Math.log2(scale);
        if (k > -126 && k < 126) {
          assert.ok(amax <= max[dtype] * scale, `fits: ${amax} <= ${max[dtype]} x ${scale}`);
          assert.ok(
            amax > (max[dtype] * scale) / 2,
            `smallest: ${amax} > ${max[dtype]} x ${scale} / 2`,
          );
        }
        if (dtype === "int8" && values.some(Number.isNaN)) return;
        // No finite value saturates: each code is the value rounded once.
        const back = decodeKV(encodeKV(values, dtype, { scale: Float32Array.of(scale) }), dtype, {
          scale: Float32Array.of(scale),
        });
        for (let i = 0; i < 8; i++) {
          // (Near f32's largest values, code x scale may round past it when decoded.)
          if (!Number.isFinite(values[i]) || k <= -126 || Math.abs(values[i]) > 2 ** 126) continue;
          const rel = dtype === "int8"
            ? 0.5 * scale
            : Math.max(Math.abs(values[i]) / 8, scale * 2 ** -9);
          assert.ok(Math.abs(back[i] - values[i]) <= rel, `${dtype} ${values[i]} -> ${back[i]}`);
        }
      },
    ),
    fcParams(300),
  );
  assert.throws(
    () => dynamicKVScales(new Float32Array(8), "f16", { headDim: 8 }),
    (e: Error) =>
      e instanceof RangeError && /8-bit kvDtypes only: got kvDtype "f16"/.test(e.message),
  );
  assert.throws(
    () => dynamicKVScales(new Float32Array(12), "int8", { headDim: 8 }),
    (e: Error) =>
      e instanceof RangeError &&
      /headDim must be a positive integer dividing the 12 values: got 8/.test(e.message),
  );
  assert.throws(
    () => dynamicKVScales(new Float32Array(8), "int8", {} as never),
    (e: Error) =>
      e instanceof TypeError && /headDim must be a number: got undefined/.test(e.message),
  );
});

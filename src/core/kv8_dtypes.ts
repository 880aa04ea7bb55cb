/**
 * The dtype table's entries of the 8-bit KV formats (`int8`, `fp8e4m3`, `fp8e5m2`): four
 * elements per `u32`, unpacked in the kernels with integer arithmetic (no shader feature), and
 * their append conversion `byte_bits(x) -> u32`, the WGSL twin of the host's `encodeKv8` for an
 * already scaled value.
 *
 * @module
 */

import type { KVDtypeInfo } from "./dtypes.ts";
import { decodeKv8, encodeKv8, type Kv8Format } from "./kv8.ts";

/** `unpack_kv` of a 16-byte load (four words) and of an 8-byte load (two words). */
const UNPACK_WORDS = `
fn unpack_kv(w: vec4<u32>) -> array<vec4<f32>, 4> {
  return array<vec4<f32>, 4>(unpack_word(w.x), unpack_word(w.y), unpack_word(w.z), unpack_word(w.w));
}`;
const UNPACK_HALF_WORDS = `
fn unpack_kv(w: vec2<u32>) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(unpack_word(w.x), unpack_word(w.y));
}`;

/** `unpack_word(w)`: the four bytes of a word (low byte first) as values, per format. */
const UNPACK_WORD: Record<Kv8Format, string> = {
  // Each byte b made b + 128 (its top bit flipped) and placed in the mantissa of the f32 2^23;
  // one add takes 2^23 + 128 off again: exact. The NVIDIA H200 runs this (its integer and add
  // units) 1-3% faster in the 4-row token loop than a signed-byte conversion per element (its
  // conversion units) or the bytes unpacked as f16 halves (session 28, bench/notes.md).
  int8: `fn unpack_word(w: u32) -> vec4<f32> {
  let u = w ^ 0x80808080u;
  let m = vec4<u32>(u, u >> 8u, u >> 16u, u >> 24u) & vec4<u32>(0xffu);
  return bitcast<vec4<f32>>(m | vec4<u32>(0x4b000000u)) - vec4<f32>(8388736.0);
}`,
  // Each code's sign, exponent and mantissa moved into an f16 (bias 15 for 7: the value over
  // 2^8, which the kernel's scales put back: `unpackScale`), which keeps the subnormal codes
  // exact too: bytes 0 and 2 by shifting the word left, 1 and 3 right, two per unpack (the masks
  // keep each half's own byte).
  // NaN codes (S.1111.111) only where a byte of w & 0x7f7f7f7f is 0x7f, which carries into
  // its top bit: one test per word (`nan_word` makes those elements NaN).
  fp8e4m3: `fn unpack_word_raw(w: u32) -> vec4<f32> {
  let a = unpack2x16float(((w << 7u) & 0x3f803f80u) | ((w << 8u) & 0x80008000u));
  let b = unpack2x16float(((w >> 1u) & 0x3f803f80u) | (w & 0x80008000u));
  return vec4<f32>(a.x, b.x, a.y, b.y);
}
fn nan_word(v: vec4<f32>, w: u32) -> vec4<f32> {
  let mag = (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0x7fu);
  let nan = vec4<u32>(0x7fc00000u);
  return bitcast<vec4<f32>>(select(bitcast<vec4<u32>>(v), nan, mag == vec4<u32>(0x7fu)));
}
fn unpack_word(w: u32) -> vec4<f32> {
  var v = unpack_word_raw(w);
  if ((((w & 0x7f7f7f7fu) + 0x01010101u) & 0x80808080u) != 0u) {
    v = nan_word(v, w);
  }
  return v;
}`,
  // An E5M2 code is the top byte of the f16 of the same value: bytes 0 and 2 shifted up into
  // the halves' top bytes, bytes 1 and 3 masked where they are.
  fp8e5m2: `fn unpack_word(w: u32) -> vec4<f32> {
  let a = unpack2x16float((w << 8u) & 0xff00ff00u);
  let b = unpack2x16float(w & 0xff00ff00u);
  return vec4<f32>(a.x, b.x, a.y, b.y);
}`,
};

/**
 * `unpack_word_h(w)`: the bytes 0, 2, 1, 3 of a word as f16 halves, two per operation (for the
 * packed f16 path), where f16 holds every code: int8 and FP8 E4M3 (E5M2's codes reach 57344, so a
 * sum of a few weighted codes could overflow f16).
 */
const UNPACK_WORD_HALF: Partial<Record<Kv8Format, string>> = {
  // Each byte b made b + 128 (its top bit flipped) and placed in the mantissa of the f16 1024,
  // two bytes per word of halves; one subtraction of 1152 per pair: exact.
  int8: `fn unpack_word_h(w: u32) -> vec4<f16> {
  let u = w ^ 0x80808080u;
  let a = vec2<f16>(unpack2x16float((u & 0x00ff00ffu) | 0x64006400u));
  let b = vec2<f16>(unpack2x16float(((u >> 8u) & 0x00ff00ffu) | 0x64006400u));
  return vec4<f16>(a, b) - vec4<f16>(1152.0h);
}`,
  // As unpack_word's halves, used as they are (the value over 2^8); a NaN code (S.1111.111,
  // found as in unpack_word) sets its half's exponent and top mantissa bit: 0x80 * 0xfc = 0x7e00.
  fp8e4m3: `fn unpack_word_h(w: u32) -> vec4<f16> {
  var a = ((w << 7u) & 0x3f803f80u) | ((w << 8u) & 0x80008000u);
  var b = ((w >> 1u) & 0x3f803f80u) | (w & 0x80008000u);
  let n = ((w & 0x7f7f7f7fu) + 0x01010101u) & 0x80808080u;
  if (n != 0u) {
    a |= (n & 0x00800080u) * 0xfcu;
    b |= ((n >> 8u) & 0x00800080u) * 0xfcu;
  }
  return vec4<f16>(vec2<f16>(unpack2x16float(a)), vec2<f16>(unpack2x16float(b)));
}`,
};

/**
 * FP8 E4M3's unpacking with one NaN test per step instead of one per word (`KernelSpec.nanSteps`):
 * `unpack_kv_raw(w)` leaves NaN codes as finite values, `nan_bytes(w)` sets bit 7 of a byte where
 * that byte of some word of the chunk is a NaN code (the low 7 bits plus 1 carry into it, no
 * further), so the step ORs every chunk's and tests `& 0x80808080u` once, and `nan_kv(v, w)`
 * makes the NaN codes' elements NaN (taken only where the test holds).
 */
function nanStepsWGSL(words: 2 | 4): string {
  const ws = ["x", "y", "z", "w"].slice(0, words);
  return `
fn unpack_kv_raw(w: vec${words}<u32>) -> array<vec4<f32>, ${words}> {
  return array<vec4<f32>, ${words}>(${ws.map((c) => `unpack_word_raw(w.${c})`).join(", ")});
}
fn nan_bytes(w: vec${words}<u32>) -> u32 {
  let b = (w & vec${words}<u32>(0x7f7f7f7fu)) + vec${words}<u32>(0x01010101u);
  return ${ws.map((c) => `b.${c}`).join(" | ")};
}
fn nan_kv(v: array<vec4<f32>, ${words}>, w: vec${words}<u32>) -> array<vec4<f32>, ${words}> {
  return array<vec4<f32>, ${words}>(${ws.map((c, i) => `nan_word(v[${i}], w.${c})`).join(", ")});
}`;
}

/** `unpack_kh` of a 16-byte load (four words) and of an 8-byte load (two words). */
function unpackHalf(word: string): { 16: string; 8: string } {
  return {
    16: `${word}
fn unpack_kh(w: vec4<u32>) -> array<vec4<f16>, 4> {
  return array<vec4<f16>, 4>(unpack_word_h(w.x), unpack_word_h(w.y), unpack_word_h(w.z), unpack_word_h(w.w));
}`,
    8: `${word}
fn unpack_kh(w: vec2<u32>) -> array<vec4<f16>, 2> {
  return array<vec4<f16>, 2>(unpack_word_h(w.x), unpack_word_h(w.y));
}`,
  };
}

/**
 * An FP8 format's `byte_bits`: NaN to its NaN code, values from the largest finite one's rounding
 * edge up saturated, subnormal codes by one exact scaling and `round` (half to even), normal codes
 * by rebiasing the f32 exponent and rounding the dropped mantissa bits half to even.
 */
function fp8ByteBits(f: {
  nan: string;
  max: string;
  maxFrom: string;
  subBelow: string;
  minNormalLog2: number;
  subLog2: number;
  rebias: string;
  shift: number;
}): string {
  return `fn byte_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  let sign = (b >> 24u) & 0x80u;
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) {
    return sign | ${f.nan};
  }
  if (a >= ${f.maxFrom}) {
    return sign | ${f.max};
  }
  if (a < ${f.subBelow}) {
    // Below 2^${f.minNormalLog2}: x * 2^${f.subLog2} is exact in f32; round() rounds half to even.
    return sign | u32(round(bitcast<f32>(a) * ${2 ** f.subLog2}.0));
  }
  let r = a - ${f.rebias};
  return sign | ((r + 0x${
    ((1 << (f.shift - 1)) - 1).toString(16)
  }u + ((r >> ${f.shift}u) & 1u)) >> ${f.shift}u);
}`;
}

/**
 * `byte_bits(x)`: the code of an already scaled value, in the low byte (round half to even,
 * saturating; NaN to NaN in FP8). The same integer steps as `half_bits` of f16.
 */
const PACK_BYTE: Record<Kv8Format, string> = {
  int8: `fn byte_bits(x: f32) -> u32 {
  return u32(i32(clamp(round(x), -127.0, 127.0))) & 0xffu;
}`,
  fp8e4m3: fp8ByteBits({
    nan: "0x7fu",
    max: "0x7eu",
    maxFrom: "0x43e00000u",
    subBelow: "0x3c800000u",
    minNormalLog2: -6,
    subLog2: 9,
    rebias: "0x3c000000u",
    shift: 20,
  }),
  fp8e5m2: fp8ByteBits({
    nan: "0x7eu",
    max: "0x7bu",
    maxFrom: "0x47600000u",
    subBelow: "0x38800000u",
    minNormalLog2: -14,
    subLog2: 16,
    rebias: "0x38000000u",
    shift: 21,
  }),
};

/** The power of two each format's `unpack_word` leaves out (see `KVDtypeInfo.unpackScale`). */
const UNPACK_SCALE: Record<Kv8Format, number> = { int8: 1, fp8e4m3: 256, fp8e5m2: 1 };

function entry(format: Kv8Format): KVDtypeInfo {
  return {
    bytes: 1,
    elementsPerLoad: 16,
    packed: true,
    scaled: true,
    HostArray: format === "int8" ? Int8Array : Uint8Array,
    wgslWord: "u32",
    wgslUnpack: `${UNPACK_WORD[format]}${UNPACK_WORDS}`,
    wgslUnpack8: `${UNPACK_WORD[format]}${UNPACK_HALF_WORDS}`,
    unpackScale: UNPACK_SCALE[format],
    ...(UNPACK_WORD_HALF[format] ? { wgslUnpackHalf: unpackHalf(UNPACK_WORD_HALF[format]!) } : {}),
    ...(format === "fp8e4m3" ? { wgslNanSteps: { 16: nanStepsWGSL(4), 8: nanStepsWGSL(2) } } : {}),
    wgslPack: PACK_BYTE[format],
    encode: (values, scale) => encodeKv8(values, format, scale ?? 1),
    decode: (data, scale) => decodeKv8(data as Int8Array | Uint8Array, format, scale ?? 1),
  };
}

/** The table entries of the 8-bit formats. */
export const KV8_DTYPE_INFO: Readonly<Record<Kv8Format, KVDtypeInfo>> = {
  int8: entry("int8"),
  fp8e4m3: entry("fp8e4m3"),
  fp8e5m2: entry("fp8e5m2"),
};

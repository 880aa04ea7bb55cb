/**
 * The 8-bit KV formats: symmetric `int8` and the OCP FP8 encodings `fp8e4m3` (E4M3: no
 * infinities, largest finite 448, NaN = S.1111.111) and `fp8e5m2` (E5M2: IEEE-like, infinities
 * and NaNs, largest finite 57344). A stored element means `code value x scale`, with one scale
 * per tensor or one per (token, KV head). Encoding divides by the scale in float64, rounds to
 * nearest even and saturates to the format's largest finite value (infinities too); NaN stays
 * NaN in FP8, and has no `int8` code (a `RangeError`).
 *
 * @module
 */

/**
 * A dequantisation scale of 8-bit K or V (value = stored value x scale): one number for the
 * whole tensor, or a `Float32Array` with one per (token, KV head), `[token][kvHead]`.
 *
 * @example
 * ```ts
 * import type { KVScale } from "@lean/attention";
 * const perTensor: KVScale = 0.02;
 * const perToken: KVScale = new Float32Array([0.02, 0.03]); // 1 token x 2 KV heads
 * ```
 */
export type KVScale = number | Float32Array;

/** The names of the 8-bit formats. */
export type Kv8Format = "int8" | "fp8e4m3" | "fp8e5m2";

/** Bit layout of an FP8 format. */
interface Fp8Layout {
  readonly mantissaBits: number;
  readonly bias: number;
  /** Largest finite magnitude. */
  readonly max: number;
  /** Code of the largest finite magnitude (sign bit clear). */
  readonly maxCode: number;
  /** Code of a quiet NaN (sign bit clear). */
  readonly nanCode: number;
}

const E4M3: Fp8Layout = { mantissaBits: 3, bias: 7, max: 448, maxCode: 0x7e, nanCode: 0x7f };
const E5M2: Fp8Layout = { mantissaBits: 2, bias: 15, max: 57344, maxCode: 0x7b, nanCode: 0x7e };

/** Largest `int8` magnitude the encoder writes (symmetric: -128 is never written). */
export const INT8_MAX = 127;

/** The value of every code of an FP8 format (float64 in a Float32Array: all are exact). */
function fp8Table(layout: Fp8Layout, infinities: boolean): Float32Array {
  const M = layout.mantissaBits;
  const table = new Float32Array(256);
  for (let c = 0; c < 256; c++) {
    const sign = c & 0x80 ? -1 : 1;
    const mag = c & 0x7f;
    const e = mag >> M;
    const m = mag & ((1 << M) - 1);
    const top = (1 << (7 - M)) - 1;
    let v: number;
    if (infinities && e === top) v = m === 0 ? Infinity : NaN;
    else if (!infinities && mag === 0x7f) v = NaN;
    else if (e === 0) v = m * 2 ** (1 - layout.bias - M);
    else v = (1 + m / 2 ** M) * 2 ** (e - layout.bias);
    table[c] = sign * v;
  }
  return table;
}

const TABLES: Record<"fp8e4m3" | "fp8e5m2", Float32Array> = {
  fp8e4m3: fp8Table(E4M3, false),
  fp8e5m2: fp8Table(E5M2, true),
};

/** Round half to even of a float64. */
function roundEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds halves up: move exact halves with an odd result down.
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The FP8 code of a float64 (round to nearest even, saturating, NaN to NaN). */
function fp8Code(x: number, layout: Fp8Layout): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  if (Number.isNaN(x)) return layout.nanCode;
  const a = Math.abs(x);
  if (a >= layout.max) return sign | layout.maxCode;
  const M = layout.mantissaBits;
  const emin = 1 - layout.bias;
  let e = Math.floor(Math.log2(a));
  if (a > 0) {
    // log2 may be off by one next to powers of two.
    if (2 ** e > a) e--;
    else if (2 ** (e + 1) <= a) e++;
  }
  e = Math.max(e, emin);
  const quantum = 2 ** (e - M);
  const steps = roundEven(a / quantum); // 0 .. 2^(M+1), exact in float64
  if (e === emin && steps < 2 ** M) return sign | steps; // subnormal (or zero)
  // A carry to 2^(M+1) steps is the next binade's first code: the field arithmetic holds.
  const code = ((e + layout.bias) << M) + steps - 2 ** M;
  return sign | Math.min(code, layout.maxCode);
}

/** The scale of element `i` (one per `group` consecutive elements, or one for all). */
function scaleAt(scale: KVScale, group: number, i: number): number {
  return typeof scale === "number" ? scale : scale[Math.floor(i / group)];
}

/** Elements per scale entry: the tensor for a number, else `length / scales`. */
function groupOf(scale: KVScale, length: number): number {
  return typeof scale === "number" ? Math.max(1, length) : length / scale.length;
}

/**
 * Encodes floats in an 8-bit format: `value / scale`, rounded to nearest even, saturated.
 * `scale` is checked by the caller (see `checkKVScale`); `name` names the values in errors.
 *
 * @example
 * ```ts
 * import { encodeKv8 } from "./kv8.ts";
 * console.log(encodeKv8(new Float32Array([1, 500, -0.5]), "fp8e4m3", 1)); // Uint8Array [ 56, 126, 176 ]
 * ```
 */
export function encodeKv8(
  values: Float32Array,
  format: Kv8Format,
  scale: KVScale,
  name = "values",
): Int8Array | Uint8Array {
  const group = groupOf(scale, values.length);
  if (format === "int8") {
    const out = new Int8Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const x = values[i] / scaleAt(scale, group, i);
      if (Number.isNaN(x)) {
        throw new RangeError(`${name}[${i}] must not be NaN for kvDtype "int8": got NaN`);
      }
      out[i] = Math.max(-INT8_MAX, Math.min(INT8_MAX, roundEven(x)));
    }
    return out;
  }
  const layout = format === "fp8e4m3" ? E4M3 : E5M2;
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    out[i] = fp8Code(values[i] / scaleAt(scale, group, i), layout);
  }
  return out;
}

/**
 * Decodes an 8-bit format's codes to floats: `code value x scale`.
 *
 * @example
 * ```ts
 * import { decodeKv8 } from "./kv8.ts";
 * console.log(decodeKv8(new Uint8Array([56, 0x7f]), "fp8e4m3", 0.5)); // Float32Array [ 0.5, NaN ]
 * ```
 */
export function decodeKv8(
  data: Int8Array | Uint8Array,
  format: Kv8Format,
  scale: KVScale,
): Float32Array {
  const group = groupOf(scale, data.length);
  const out = new Float32Array(data.length);
  if (format === "int8") {
    for (let i = 0; i < data.length; i++) out[i] = data[i] * scaleAt(scale, group, i);
    return out;
  }
  const table = TABLES[format];
  for (let i = 0; i < data.length; i++) out[i] = table[data[i] & 0xff] * scaleAt(scale, group, i);
  return out;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  if (Array.isArray(value)) return "Array";
  if (typeof value === "number") return String(value);
  return typeof value;
}

/**
 * Checks a scale: a finite number > 0, or a `Float32Array` of `count` finite entries > 0
 * (`count` undefined: any length dividing `elements`). Throws `TypeError` / `RangeError` naming
 * `name` and the value.
 *
 * @example
 * ```ts
 * import { checkKVScale } from "./kv8.ts";
 * console.log(checkKVScale("kScale", 0.25, 4, 16)); // 0.25
 * ```
 */
export function checkKVScale(
  name: string,
  scale: unknown,
  count: number | undefined,
  elements: number,
): KVScale {
  if (typeof scale === "number") {
    if (!Number.isFinite(scale) || scale <= 0) {
      throw new RangeError(`${name} must be a finite number > 0: got ${scale}`);
    }
    return scale;
  }
  if (!(scale instanceof Float32Array)) {
    throw new TypeError(
      `${name} must be a number or a Float32Array (one scale per token and KV head): got ${
        describe(scale)
      }`,
    );
  }
  if (count !== undefined && scale.length !== count) {
    throw new RangeError(
      `${name} must have ${count} elements (one per token and KV head): got ${scale.length}`,
    );
  }
  // No values (a batch of empty requests) take no scales: an empty array divides them.
  if (
    count === undefined &&
    (scale.length === 0 ? elements !== 0 : elements % scale.length !== 0)
  ) {
    throw new RangeError(
      `${name} must have a length dividing the ${elements} values (one scale per token and KV head): got ${scale.length}`,
    );
  }
  for (let i = 0; i < scale.length; i++) {
    const s = scale[i];
    if (!Number.isFinite(s) || s <= 0) {
      throw new RangeError(`${name}[${i}] must be a finite number > 0: got ${s}`);
    }
  }
  return scale;
}

/**
 * Where a kernel reads an input's 8-bit scales: `"token"` when either is a per-(token, KV head)
 * array, else `"tensor"`.
 *
 * @example
 * ```ts
 * import { kvScaleMode } from "./kv8.ts";
 * console.log(kvScaleMode({ kScale: 2 }), kvScaleMode({ vScale: new Float32Array(4) })); // tensor token
 * ```
 */
export function kvScaleMode(input: { kScale?: KVScale; vScale?: KVScale }): "tensor" | "token" {
  return input.kScale instanceof Float32Array || input.vScale instanceof Float32Array
    ? "token"
    : "tensor";
}

/**
 * The scale table of the per-token kernels: `[entry][2]`, K's scale then V's, for entries
 * `begin .. end` of `[token][kvHead]` (a number fills its column).
 *
 * @example
 * ```ts
 * import { kvScaleTable } from "./kv8.ts";
 * console.log(kvScaleTable(new Float32Array([1, 2]), 3, 0, 2)); // Float32Array [ 1, 3, 2, 3 ]
 * ```
 */
export function kvScaleTable(
  kScale: KVScale | undefined,
  vScale: KVScale | undefined,
  begin: number,
  end: number,
): Float32Array {
  const out = new Float32Array(2 * (end - begin));
  for (const [col, scale] of [[0, kScale ?? 1], [1, vScale ?? 1]] as const) {
    for (let i = begin; i < end; i++) {
      out[2 * (i - begin) + col] = typeof scale === "number" ? scale : scale[i];
    }
  }
  return out;
}

/** f32 bits of each format's largest finite magnitude (127 for int8). */
const MAX_BITS: Record<Kv8Format, number> = {
  int8: 0x42fe0000,
  fp8e4m3: 0x43e00000,
  fp8e5m2: 0x47600000,
};

/**
 * The dynamic scale of one run of values: the smallest power of two `2^k` with
 * `max |x| <= format max x 2^k` over the run's finite values (1 when none is a normal float),
 * found with integer steps on the f32 bits, so the GPU's append kernel finds the same one.
 * Dividing by a power of two is exact: the host and the kernel get the same codes.
 */
function dynamicScale(bits: Uint32Array, begin: number, end: number, format: Kv8Format): number {
  let amax = 0;
  for (let i = begin; i < end; i++) {
    const b = bits[i] & 0x7fffffff;
    if (b < 0x7f800000 && b > amax) amax = b;
  }
  if (amax < 0x00800000) return 1;
  const max = MAX_BITS[format];
  const e = (amax >>> 23) - (max >>> 23);
  const k = (amax & 0x7fffff) <= (max & 0x7fffff) ? e : e + 1;
  return 2 ** Math.max(-126, Math.min(126, k));
}

/**
 * Dynamic scales of 8-bit K or V: one power of two per run of `group` values (a (token, KV
 * head) row of `headDim` elements), the smallest that keeps the row's largest finite magnitude
 * within the format (see `dynamicScale`).
 *
 * @example
 * ```ts
 * import { dynamicKv8Scales } from "./kv8.ts";
 * console.log(dynamicKv8Scales(new Float32Array([1000, 1, 0.5, 0.25]), "fp8e4m3", 2));
 * // Float32Array(2) [ 4, 0.001953125 ]
 * ```
 */
export function dynamicKv8Scales(
  values: Float32Array,
  format: Kv8Format,
  group: number,
): Float32Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Float32Array(values.length / group);
  for (let g = 0; g < out.length; g++) {
    out[g] = dynamicScale(bits, g * group, (g + 1) * group, format);
  }
  return out;
}

/** The WGSL twin of `dynamicScale`'s last steps: the f32 bits of `2^k` for a row's max bits. */
export function dynamicScaleWGSL(format: Kv8Format): string {
  const max = MAX_BITS[format];
  return `const KV8_MAX_BITS: u32 = 0x${max.toString(16)}u;
fn pow2_scale(amax: u32) -> f32 {
  if (amax < 0x00800000u) {
    return 1.0;
  }
  let e = i32(amax >> 23u) - i32(KV8_MAX_BITS >> 23u);
  let k = clamp(select(e + 1, e, (amax & 0x7fffffu) <= (KV8_MAX_BITS & 0x7fffffu)), -126, 126);
  return bitcast<f32>(u32(k + 127) << 23u);
}`;
}

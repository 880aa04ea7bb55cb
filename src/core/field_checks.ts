/**
 * Checks of single fields of a decode shape, shared by its validation (`problem.ts`): each
 * throws `TypeError` for a wrong type and `RangeError` for a wrong value, naming the field and
 * the value.
 *
 * @module
 */

/** A value as an error message shows it. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (typeof value === "undefined") return "undefined";
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  if (Array.isArray(value)) return "Array";
  return typeof value;
}

/** Checks a positive integer field. */
export function positiveInt(name: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number: got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer: got ${describe(value)}`);
  }
  return value;
}

/** Checks an integer field from `min` to `max`. */
export function integerIn(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a number: got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}: got ${value}`);
  }
  return value;
}

/** Checks a head dim field: a multiple of 8 from 8 to `max`. */
export function headDimOf(name: string, value: unknown, max: number): number {
  const dim = positiveInt(name, value);
  if (dim % 8 !== 0 || dim > max) {
    throw new RangeError(`${name} must be a multiple of 8 from 8 to ${max}: got ${dim}`);
  }
  return dim;
}

/**
 * Checks a `vFromK` field (default false): a boolean (`TypeError`), and with it `headDimV` at
 * most `headDim` (`RangeError`: V is a prefix of K's rows). Shapes and caches share it.
 */
export function vFromKOf(value: unknown, headDim: number, headDimV: number): boolean {
  const vFromK = value ?? false;
  if (typeof vFromK !== "boolean") {
    throw new TypeError(`vFromK must be a boolean: got ${describe(vFromK)}`);
  }
  if (vFromK && headDimV > headDim) {
    throw new RangeError(
      `headDimV must be at most headDim (${headDim}) with vFromK (V is a prefix of K's rows): got ${headDimV}`,
    );
  }
  return vFromK;
}

/** Each sequence's query length: `qLens`, or `qLen` (default 1) for all; both must agree. */
export function queryLengths(
  value: unknown,
  qLen: number | undefined,
  numSeqs: number,
  maxQLen: number,
): Uint32Array {
  const out = new Uint32Array(numSeqs);
  if (value === undefined) return out.fill(qLen ?? 1);
  if (
    value === null || typeof value !== "object" ||
    typeof (value as ArrayLike<number>).length !== "number"
  ) {
    throw new TypeError(`qLens must be an array of numbers: got ${describe(value)}`);
  }
  const lens = value as ArrayLike<unknown>;
  if (lens.length !== numSeqs) {
    throw new RangeError(
      `qLens must hold one query length per sequence (${numSeqs}): got ${lens.length}`,
    );
  }
  for (let i = 0; i < numSeqs; i++) {
    const n = lens[i];
    if (typeof n !== "number") {
      throw new TypeError(`qLens[${i}] must be a number: got ${describe(n)}`);
    }
    if (!Number.isInteger(n) || n < 1 || n > maxQLen) {
      throw new RangeError(`qLens[${i}] must be an integer from 1 to ${maxQLen}: got ${n}`);
    }
    if (qLen !== undefined && n !== qLen) {
      throw new RangeError(`qLens[${i}] must equal qLen (${qLen}) when both are given: got ${n}`);
    }
    out[i] = n;
  }
  return out;
}

/**
 * Shared by the validation tests (tests/input_validation_test.ts,
 * tests/option_validation_test.ts): a check of an error's exact class and message, and the valid
 * decode input that bad fields are swapped into.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { DecodeInput } from "../mod.ts";
import { makeInput } from "./helpers.ts";

/** The class a bad input or option must be rejected with. */
export type ErrorClass = typeof TypeError | typeof RangeError | typeof Error;

/** Checks an error's exact class and message. */
export function matches(cls: ErrorClass, message: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof Error, `expected an Error, got ${String(error)}`);
    assert.equal(
      error.constructor,
      cls,
      `expected ${cls.name}, got ${error.name}: ${error.message}`,
    );
    assert.match(error.message, message);
    return true;
  };
}

/** 4 sequences, 4 query heads over 2 KV heads, headDim 16: q has 256 floats, K and V 768. */
export const SHAPE = { seqLens: [5, 9, 3, 7], numHeads: 4, numKVHeads: 2, headDim: 16 };

/** A valid input of {@linkcode SHAPE}, made afresh. */
export const valid = (): DecodeInput => makeInput({ ...SHAPE, seed: 1 });

/** Any fields, of any type: what a caller may pass where types do not hold. */
// deno-lint-ignore no-explicit-any
export type Loose = Record<string, any>;

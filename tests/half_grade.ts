/**
 * The f16-grade check of the matrix-unit kernel's results (queries and weights rounded to f16, sums
 * in f32), shared by its emulated tests on lavapipe: no poisoned output left, and the output and
 * LSE within f16 tolerance of the float64 reference; directly, or over a runner's pages through
 * the attention encoder.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type DecodeInput, referenceAttention } from "../mod.ts";
import type { TileConfig } from "../plan.ts";
import { createAttentionEncoder } from "../runner.ts";
import { type ScatteredPages, shapeOf } from "./combinations.ts";
import { gpuBuffer, readF32 } from "./gpu_device.ts";
import { assertNoPoison, maxAbsError, relativeL2Error } from "./helpers.ts";

/** f16 operands' tolerance (queries and weights rounded to f16), as the hardware test's. */
export const HALF_TOLERANCE = 2e-3;

/**
 * Asserts a result against the float64 reference at f16 grade: every output written, relative
 * L2 error of `out` below {@linkcode HALF_TOLERANCE}, and the LSE's error below it too, scaled
 * by a quarter of the largest |LSE| (f16 queries' error is relative: large scores move the LSE in
 * proportion, 5e-4 of it). Empty rows' -Infinity LSE compare as 0.
 */
export function assertHalfGrade(
  what: string,
  input: DecodeInput,
  got: { out: Float32Array; lse: Float32Array },
): void {
  const ref = referenceAttention(input);
  assertNoPoison(`${what}: out`, got.out, ref.out.length);
  const finite = (a: ArrayLike<number>) => Array.from(a, (x) => (x === -Infinity ? 0 : x));
  const out = relativeL2Error(got.out, ref.out);
  const lse = maxAbsError(finite(got.lse), finite(ref.lse));
  const lseSize = Math.max(1, ...finite(ref.lse).map(Math.abs));
  assert.ok(out < HALF_TOLERANCE, `out ${what}: relative L2 error ${out}`);
  assert.ok(lse < HALF_TOLERANCE * Math.max(1, lseSize / 4), `lse ${what}: ${lse}`);
}

/**
 * A runner's scattered pages of `input` through an attention encoder with the matrix kernel on
 * (grid 2: workgroups take several pieces), outputs poisoned, then {@linkcode assertHalfGrade}.
 * `checkPlan` sees the plan's tiles first (that the plan takes the matrix kernel's blocks).
 */
export async function assertPagesHalfGrade(
  device: GPUDevice,
  what: string,
  input: DecodeInput,
  pages: ScatteredPages,
  checkPlan: (tiles: TileConfig) => void,
): Promise<void> {
  const attention = await createAttentionEncoder(device, {
    grid: 2,
    kernel: { matrixMath: true },
  });
  const rows = input.seqLens.length * input.numHeads * (input.qLen ?? 1);
  const DV = input.headDimV ?? input.headDim;
  // (With `vFromK` the encoder takes `k` alone: V is read from its rows.)
  const used = [
    gpuBuffer(device, pages.k),
    gpuBuffer(device, input.vFromK ? new Uint32Array(4) : pages.v),
    gpuBuffer(device, input.q),
    gpuBuffer(device, new Float32Array(rows * DV).fill(NaN)),
    gpuBuffer(device, new Float32Array(rows).fill(NaN)),
    ...(pages.scales ? [gpuBuffer(device, pages.scales)] : []),
  ];
  const [k, v, q, out, lse, kvScales] = used;
  try {
    const plan = attention.planPages(shapeOf(input), pages);
    checkPlan(plan.tiles);
    const enc = device.createCommandEncoder();
    attention.encode(enc, {
      plan,
      k,
      ...(input.vFromK ? {} : { v }),
      q,
      out,
      lse,
      ...(kvScales ? { kvScales } : {}),
    });
    device.queue.submit([enc.finish()]);
    assertHalfGrade(what, input, {
      out: await readF32(device, out, rows * DV),
      lse: await readF32(device, lse, rows),
    });
  } finally {
    for (const at of used) at.destroy();
    attention.dispose();
  }
}

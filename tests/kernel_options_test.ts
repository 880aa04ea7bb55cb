/**
 * The decode kernel's optional code paths on the GPU backends, on a small GQA shape (cheap to
 * compile on a software adapter): row scatter (each lane adds and weighs one row's scores) and V
 * unpacked one token at a time, which must leave the default kernel's bits; split prefetch (the next step's K requested after this step's
 * dot products, V after its update) with query rows in workgroup memory, and scores as sums of
 * `vec4` dot products (`fmaDots: false`; chains of multiply-adds by default), each over f16 and
 * over int8 K/V with per-token scales, against the float64 reference; and packed f16 arithmetic
 * (`halfMath`: dot products over f16, int8 and E4M3 keys, and the weighted sum of int8 and E4M3
 * values at per-tensor scales), which must change the result within its f16 tolerance where the
 * device has `shader-f16`, and leave the f32 kernel's bits where it has not; and int8 keys by
 * packed integer dot products (`intDots`), against the reference.
 *
 * @module
 */

import assert from "node:assert/strict";
import { loadDawn } from "../dawn.ts";
import { type DecodeInput, type KernelTuning, referenceAttention, type Strategy } from "../mod.ts";
import { type BackendUnderTest, gpuTest } from "./backends.ts";
import { KERNEL_OPTION_SHAPES } from "./kernel_set.ts";
import {
  assertMatchesReference,
  type CaseSpec,
  makeInput,
  maxAbsError,
  relativeL2Error,
  sameBits,
} from "./helpers.ts";

const shapes = KERNEL_OPTION_SHAPES;
const STRATEGIES_UNDER_TEST: Strategy[] = ["lean", "split"];

/** Decodes every shape with every strategy under test through a decoder of `kernel` tuning. */
async function matchesReference(b: BackendUnderTest, kernel: KernelTuning): Promise<void> {
  const decoder = await b.open({ kernel });
  try {
    for (const spec of shapes) {
      for (const strategy of STRATEGIES_UNDER_TEST) {
        const input: DecodeInput = { ...makeInput(spec), strategy };
        assertMatchesReference(input, await decoder.decode(input), `${spec.kvDtype} ${strategy}`);
      }
    }
  } finally {
    await decoder.dispose();
  }
}

gpuTest(
  "split prefetch with query rows in workgroup memory matches the reference",
  (b) => matchesReference(b, { prefetch: "split", queryShared: true }),
);

gpuTest(
  "scores as sums of vec4 dot products (fmaDots: false) match the reference",
  (b) => matchesReference(b, { fmaDots: false }),
);

/** Whether the backend's adapter offers `shader-f16` (the decoder then enables it). */
async function hasShaderF16(backend: string): Promise<boolean> {
  const gpu = backend === "dawn" ? await loadDawn() : navigator.gpu;
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  return adapter?.features.has("shader-f16") ?? false;
}

/** Output and LSE tolerance of packed f16 scores (query rows rounded to f16). */
const HALF_TOLERANCE = 2e-3;

/** A case of the packed f16 path: a shape, and whether `halfMath` changes its kernel. */
interface HalfCase {
  readonly spec: CaseSpec;
  /** Query rows in registers (`queryShared: false`) in both decoders. */
  readonly registers?: boolean;
  /** The kernel has f16 arithmetic, so its bits differ from the f32 kernel's. */
  readonly differs: boolean;
  /**
   * f16 V's weighted sums in packed f16 too (`halfValues: true`), so the bits differ from those
   * of `halfMath`'s f16 keys alone as well.
   */
  readonly values?: boolean;
}

/**
 * The packed f16 path's cases: f16 K (dot products); int8 at per-token scales, whose keys take
 * the integer dot products either way and whose V stays f32 (so the f32 kernel's bits); int8 and
 * E4M3 at per-tensor scales (keys and the weighted sum of V in f16; the class keeps its rows in
 * workgroup memory, so int8 keys are f16 halves there); int8 with rows in registers, whose keys
 * take integer dot products, which leave V in f32 (so the f32 kernel's bits); f16 with its V's
 * weighted sums in f16 as well (`halfValues: true`).
 */
const HALF_CASES: readonly HalfCase[] = [
  { spec: shapes[0], differs: true },
  { spec: shapes[1], differs: false },
  { spec: { ...shapes[0], kvDtype: "int8", seed: 33 }, differs: true },
  { spec: { ...shapes[0], kvDtype: "fp8e4m3", seed: 34 }, differs: true },
  { spec: { ...shapes[0], kvDtype: "int8", seed: 35 }, registers: true, differs: false },
  { spec: { ...shapes[0], seed: 36 }, values: true, differs: true },
];

gpuTest(
  "packed f16 arithmetic stays within f16 tolerance, and falls back to f32 bits without shader-f16",
  async (b) => {
    const f16 = await hasShaderF16(b.name);
    const rows = { queryShared: false };
    const decoders = {
      half: await b.open({ kernel: { halfMath: true } }),
      plain: await b.open(),
      halfRegisters: await b.open({ kernel: { halfMath: true, ...rows } }),
      halfValues: await b.open({ kernel: { halfMath: true, halfValues: true } }),
      plainRegisters: await b.open({ kernel: rows }),
    };
    try {
      for (const { spec, registers, differs, values } of HALF_CASES) {
        const half = values
          ? decoders.halfValues
          : registers
          ? decoders.halfRegisters
          : decoders.half;
        const plain = registers ? decoders.plainRegisters : decoders.plain;
        for (const strategy of STRATEGIES_UNDER_TEST) {
          const input: DecodeInput = { ...makeInput({ ...spec, qAmplitude: 2 }), strategy };
          const what = `${spec.kvDtype}${spec.kvScales ? ` ${spec.kvScales}` : ""}${
            registers ? " registers" : ""
          }${values ? " values" : ""} ${strategy}`;
          const got = await half.decode(input);
          const f32 = await plain.decode(input);
          const ref = referenceAttention(input);
          const finite = (a: ArrayLike<number>) => Array.from(a, (x) => (x === -Infinity ? 0 : x));
          const outError = relativeL2Error(got.out, ref.out);
          const lseError = maxAbsError(finite(got.lse), finite(ref.lse));
          assert.ok(outError < HALF_TOLERANCE, `out ${what}: relative L2 error ${outError}`);
          assert.ok(lseError < HALF_TOLERANCE, `lse ${what}: max abs error ${lseError}`);
          // The empty sequence's rows (f16 shape) are the merge identity on both paths.
          if (spec.seqLens.at(-1) === 0) {
            assert.ok(sameBits(got.lse.subarray(-8), f32.lse.subarray(-8)));
          }
          const same = sameBits(got.out, f32.out) && sameBits(got.lse, f32.lse);
          const f16Path = f16 && differs;
          assert.equal(
            same,
            !f16Path,
            `${what}: ${f16Path ? "the f16 path must differ" : "f32 bits"}`,
          );
          if (values) {
            // The f16 sums of V change the bits of f16 keys alone.
            const keysOnly = await decoders.half.decode(input);
            assert.equal(sameBits(got.out, keysOnly.out), !f16, `${what}: against f16 keys alone`);
          }
        }
      }
    } finally {
      for (const decoder of Object.values(decoders)) await decoder.dispose();
    }
  },
);

gpuTest(
  "int8 keys by packed integer dot products (the default) match the reference",
  async (b) => {
    // Query rows in registers (the class of these shapes keeps them in workgroup memory).
    const decoder = await b.open({ kernel: { queryShared: false } });
    try {
      for (const { spec } of [HALF_CASES[1], HALF_CASES[2]]) {
        for (const strategy of STRATEGIES_UNDER_TEST) {
          const input: DecodeInput = { ...makeInput({ ...spec, qAmplitude: 3 }), strategy };
          const what = `int8 ${spec.kvScales ?? "tensor"} ${strategy}`;
          assertMatchesReference(input, await decoder.decode(input), what);
        }
      }
    } finally {
      await decoder.dispose();
    }
  },
);

/**
 * Decodes every shape with every strategy through its `base` tuning with and without `extra`:
 * the same bits, and (unless `reference` is false) the reference.
 */
async function sameBitsWith(
  b: BackendUnderTest,
  base: (spec: CaseSpec) => KernelTuning,
  extra: KernelTuning,
  reference = true,
): Promise<void> {
  for (const spec of shapes) {
    const tuned = await b.open({ kernel: { ...base(spec), ...extra } });
    const plain = await b.open({ kernel: base(spec) });
    try {
      for (const strategy of STRATEGIES_UNDER_TEST) {
        const input: DecodeInput = { ...makeInput({ ...spec, qAmplitude: 3 }), strategy };
        const got = await tuned.decode(input);
        const what = `${JSON.stringify(extra)} ${spec.kvDtype} ${strategy}`;
        if (reference) assertMatchesReference(input, got, what);
        const want = await plain.decode(input);
        assert.ok(sameBits(got.out, want.out), `out ${what}: not the kernel's bits without it`);
        assert.ok(sameBits(got.lse, want.lse), `lse ${what}: not the kernel's bits without it`);
      }
    } finally {
      await tuned.dispose();
      await plain.dispose();
    }
  }
}

// Row scatter adds each row's lane sums in the butterfly's tree and weighs it with the same
// operations, so its results are those of the kernel without it, bit for bit; likewise V
// unpacked per token adds the tokens in order. Both shapes scatter: f16 at its table's two row
// sets (2 rows over 4 lanes), int8 in four row sets (its qLen 2 makes 8 rows, a d32 int8 row 2
// lanes; tests/row_scatter_test.ts checks which kernels scatter).
const rowSetsFor = (spec: CaseSpec): KernelTuning => ({
  ...(spec.kvDtype === "int8" ? { rowSets: 4 } : {}),
  // The table scatters these shapes' class (r4 d64): the kernel without it is the reference.
  rowScatter: false,
});
gpuTest(
  "row scatter, V unpacked per token and masked steps leave the kernel's bits, and match the reference",
  async (b) => {
    // Dawn on a software adapter (Tint's rules for the shuffles; its compiles take minutes
    // there) runs the first and the last: both scattered paths, with and without V per token.
    const all = !(b.software && b.name === "dawn");
    await sameBitsWith(b, rowSetsFor, { rowScatter: true });
    if (all) await sameBitsWith(b, rowSetsFor, { rowScatter: true, vPerToken: true });
    // A visible token takes the same operations on masked and unmasked steps, so which steps
    // a kernel masks (row scatter's block-wide limits mask more) never changes a bit.
    if (all) await sameBitsWith(b, rowSetsFor, { fastSteps: false });
    await sameBitsWith(b, rowSetsFor, { rowScatter: true, vPerToken: true, fastSteps: false });
  },
  // Dawn too on a software adapter: its shuffles now sit inside the step's two paths.
  { dawnOnSoftware: true },
);

// Early loads use a word of each of the next step's chunks in a test that never holds, so the
// compiler issues their loads before the step's arithmetic: the same operations, the same bits.
// (Whole prefetch, which early loads need: the f16 shape's class takes split prefetch.)
gpuTest("the next step's loads issued early leave the kernel's bits", async (b) => {
  const whole = (spec: CaseSpec): KernelTuning => ({
    ...rowSetsFor(spec),
    prefetch: true,
    earlyLoads: false,
  });
  await sameBitsWith(b, whole, { earlyLoads: true });
  // ... and with packed f16 math (where the device has shader-f16), whose f16 chunks are read as
  // `KHalves`: the bits of packed f16 math without early loads (which the packed f16 test holds
  // to f16's tolerance of the reference).
  const half = (spec: CaseSpec): KernelTuning => ({ ...whole(spec), halfMath: true });
  await sameBitsWith(b, half, { earlyLoads: true }, false);
});

// Staged query rows are read once per workgroup into workgroup memory and copied into each
// thread's registers from there: the values of the registers' own loads, so the same bits. (The
// table holds these shapes' rows in workgroup memory, which staging leaves alone: off here.)
gpuTest("query rows staged through workgroup memory leave the kernel's bits", async (b) => {
  // int8 keys by integer dot products quantize rows in registers, not staged ones: off here.
  const registers = (spec: CaseSpec): KernelTuning => ({
    ...rowSetsFor(spec),
    queryShared: false,
    intDots: false,
  });
  await sameBitsWith(b, registers, { queryStaged: true });
  await sameBitsWith(b, registers, { queryStaged: true, rowScatter: true });
});

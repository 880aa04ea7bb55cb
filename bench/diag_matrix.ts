/**
 * Diagnostic of the matrix-unit kernel (session 49): its errors against the float64 reference
 * with parts of its WGSL rewritten, through Dawn, on the test suite's matrix shapes (MQA with 64
 * rows, GQA 4 x qLen 4), lean and split, at the calibrated grid and at 40 workgroups. Variants:
 * `as-is`; `always-rescale` (the sums through workgroup memory every tile); `exact-max` (the
 * reference maximum follows every rise, as a plain online softmax); `token-path` (every tile
 * token by token); `no-roundtrip` (the sums never leave the matrix units: wrong on masked tiles
 * and after a rise beyond the margin). Prints one line per cell: variant, shape, strategy, grid,
 * relative L2 error; by default the first four. The others are session 49's bisection, named in
 * the code. (Session 49 found with it, and bench/probe_matrix_ops.ts, that a lone u32
 * among the kernel's workgroup arrays broke every output: bench/notes.md.)
 *
 * Usage: deno run -A --unstable-webgpu bench/diag_matrix.ts [--variants=NAME|...]
 */

import "../dawn.ts";
import { loadDawn } from "../dawn.ts";
import { createDecoder, type DecodeInput, referenceAttention } from "../mod.ts";
import { makeInput } from "../tests/helpers.ts";
import { relativeL2Error } from "../tests/helpers.ts";
import { matrixKernelRewriter } from "./diag_lib.ts";

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];

/** A rewrite that replaces `from` once, and fails where the kernel lacks it. */
const replacing = (from: string, to: string) => (code: string) => {
  if (!code.includes(from)) throw new Error(`no "${from}" in the matrix kernel`);
  return code.replace(from, to);
};
const VARIANTS: Record<string, ((code: string) => string) | undefined> = {
  "as-is": undefined,
  "always-rescale": replacing(
    "workgroupUniformLoad(&resc_wg)[0] != 0u",
    "workgroupUniformLoad(&resc_wg)[0] != 0xffffffffu",
  ),
  "exact-max": replacing("select(m_run, mx, mx > m_run + TAU)", "max(m_run, mx)"),
  "token-path": replacing("let plain = min(", "let plain = false && min("),
  // Session 49's bisection (bench/h200_s49_session.sh probe, probe2, probe3).
  "barrier": replacing(
    "let rescale = workgroupUniformLoad",
    "workgroupBarrier();\n      let rescale = workgroupUniformLoad",
  ),
  "token-path+acc-only": (code) =>
    replacing("let plain = min(", "let plain = false && min(")(code)
      .replace(/acc\[(\d+)\] \+ so_wg\[so \+ e\d+( \+ 1u)?\]/g, "acc[$1]"),
  "nouniform": replacing(
    "let rescale = workgroupUniformLoad(&resc_wg)[0] != 0u;",
    "workgroupBarrier();\n      let rescale = false;",
  ),
  // Session 48's kernel (run from a tree of that commit): the lazy maximum alone, and a lone
  // u32 flag read by a uniform load in place of the barrier after the softmax.
  "lazy-only": replacing(
    "let m_new = max(m_run, mx);",
    "let m_new = select(m_run, mx, mx > m_run + 8.0);",
  ),
  "s48+uniform": (code) =>
    replacing(
      "        row_wg[br] = alpha;\n      }\n      workgroupBarrier();",
      "        row_wg[br] = alpha;\n        if (m_new != m_run) { resc_wg = 1u; }\n      }\n" +
        "      let rescale = workgroupUniformLoad(&resc_wg) != 0u;",
    )(
      replacing("var<workgroup> row_wg", "var<workgroup> resc_wg: u32;\nvar<workgroup> row_wg")(
        code,
      ),
    ),
  "no-roundtrip": replacing("if (rescale || !plain) {", "if (false && (rescale || !plain)) {"),
};

// Dawn's device class, patched so that matrix kernels are rewritten by the current variant.
const setRewrite = await matrixKernelRewriter(await loadDawn());

const SHAPES = [
  { seqLens: [700, 1500, 33], numHeads: 64, numKVHeads: 1, headDim: 128, seed: 41 },
  { seqLens: [1000, 17, 0], numHeads: 8, numKVHeads: 2, headDim: 128, qLen: 4, seed: 42 },
];
const names = flag("variants")?.split("|") ??
  ["as-is", "always-rescale", "exact-max", "token-path"];
for (const name of names) {
  if (!(name in VARIANTS)) throw new RangeError(`--variants: no variant ${name}`);
}
for (const name of names) {
  setRewrite(VARIANTS[name]);
  for (const grid of [undefined, 40]) {
    const decoder = await createDecoder({
      backend: "dawn",
      kernel: { matrixMath: true },
      ...(grid ? { grid } : {}),
    });
    try {
      for (const [i, spec] of SHAPES.entries()) {
        for (const strategy of ["lean", "split"] as const) {
          const input: DecodeInput = {
            ...makeInput({ ...spec, kvDtype: "f16", qAmplitude: 2 }),
            strategy,
          };
          const plan = decoder.plan(input, { strategy });
          const got = await decoder.decode(input);
          const e = relativeL2Error(got.out, referenceAttention(input).out);
          console.log(
            `${name.padEnd(15)} shape ${i} ${strategy.padEnd(5)} grid ${
              String(plan.grid).padStart(4)
            } (matrix ${decoder.profile.matrixUnits ?? false}) error ${e.toExponential(2)}`,
          );
        }
      }
    } catch (e) {
      console.log(`${name} grid ${grid}: ${e instanceof Error ? e.message : e}`);
    } finally {
      await decoder.dispose();
    }
  }
}

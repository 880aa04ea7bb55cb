/**
 * Where the matrix-unit kernel's time goes (session 50): lean through Dawn, back to back after
 * 400 ms of warm passes, on the many-row cases (bench/cases_rows.json) with parts of the kernel's
 * WGSL rewritten. Variants that keep the results (`as-is`, `k-early`) are first checked against
 * float64 on the test suite's matrix shapes; the others are timing bounds only:
 * - `no-kv-reads`: K and V never read from memory (each staging load a constant), so the rest
 *   of a tile (staging stores, products, softmax, barriers) is what is left;
 * - `no-mma`, `no-score-mma`, `no-pv-mma`: the products of both phases, or one, left out;
 * - `k-early`: the next tile's K loads issued right after this tile's K is staged (before the
 *   scores) instead of after V's, so they have a whole tile to arrive, as V's do.
 *
 * Prints one line per cell (variant, case, stream ms, alone ms, grid); `--out` writes them as
 * JSON.
 *
 * Usage: deno run -A --unstable-webgpu bench/diag_matrix_time.ts [--variants=NAME|...]
 *   [--only=NAME|...] [--grid=N] [--rows=N] [--out=FILE]
 */

import "../dawn.ts";
import { loadDawn } from "../dawn.ts";
import { createDecoder, type DecodeInput, referenceAttention } from "../mod.ts";
import { makeInput, relativeL2Error } from "../tests/helpers.ts";
import { loadCases } from "./bench_cases.ts";
import { makeBenchInput } from "./bench_input.ts";
import { kvSetsFor, matrixKernelRewriter } from "./diag_lib.ts";
import { MATRIX_TIME_VARIANTS as VARIANTS } from "./matrix_rewrites.ts";

const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];

/** Variants whose results stay right (checked before they are timed). */
const KEEPS_RESULTS = new Set(["as-is", "k-early"]);

// Dawn's device class, patched so that matrix kernels are rewritten by the current variant.
const setRewrite = await matrixKernelRewriter(await loadDawn());

const SHAPES = [
  { seqLens: [700, 1500, 33], numHeads: 64, numKVHeads: 1, headDim: 128, seed: 41 },
  { seqLens: [1000, 17, 0], numHeads: 8, numKVHeads: 2, headDim: 128, qLen: 4, seed: 42 },
];
const names = flag("variants")?.split("|") ?? Object.keys(VARIANTS);
for (const name of names) {
  if (!(name in VARIANTS)) throw new RangeError(`--variants: no variant ${name}`);
}
const only = flag("only")?.split("|");
const cases = (await loadCases(new URL("./cases_rows.json", import.meta.url)))
  .filter((c) => !only || only.some((o) => c.name.includes(o)));
const grid = Number(flag("grid") ?? 131);
const matrixRows = flag("rows") ? Number(flag("rows")) : undefined;
const cells: Record<string, unknown>[] = [];
for (const name of names) {
  setRewrite(VARIANTS[name]);
  const decoder = await createDecoder({
    backend: "dawn",
    kernel: { matrixMath: true, ...(matrixRows ? { matrixRows } : {}) },
    grid,
  });
  try {
    if (KEEPS_RESULTS.has(name)) {
      for (const [i, spec] of SHAPES.entries()) {
        const input: DecodeInput = makeInput({ ...spec, kvDtype: "f16", qAmplitude: 2 });
        const e = relativeL2Error((await decoder.decode(input)).out, referenceAttention(input).out);
        console.log(`${name.padEnd(13)} check shape ${i}: relative L2 ${e.toExponential(2)}`);
        cells.push({ variant: name, check: i, relL2: e });
      }
    }
    for (const c of cases) {
      const input = makeBenchInput(c);
      const plan = decoder.plan(input, { strategy: "lean" });
      const t = await decoder.timeKernels({ ...input, strategy: "lean" }, {
        runs: 15,
        warmup: 0,
        kvSets: kvSetsFor(input.k.byteLength + (input.v?.byteLength ?? 0)),
        warmupMs: 400,
        streamMs: 2,
      });
      const stream = t.stream?.medianMs ?? NaN;
      console.log(
        `${name.padEnd(13)} ${c.name.padEnd(20)} stream ${stream.toFixed(4)} alone ${
          t.medianMs.toFixed(4)
        } grid ${plan.grid} rows/block ${plan.tiles.rowsPerBlock}`,
      );
      cells.push({ variant: name, case: c.name, streamMs: stream, medianMs: t.medianMs });
    }
  } catch (e) {
    console.log(`${name}: ${e instanceof Error ? e.message : e}`);
  } finally {
    await decoder.dispose();
  }
}
const out = flag("out");
if (out) await Deno.writeTextFile(out, JSON.stringify({ grid, matrixRows, cells }, null, 2));

/**
 * GPU benchmark (`deno task bench:gpu`): every case of `bench/cases.json` for lean, split and
 * single on a warm GPU, beside the GPU's own ceilings measured in the same run (a plain WGSL
 * streaming read, a plain WGSL FMA kernel, an empty pass; `bench/gpu_ceilings.ts`).
 *
 * Method: each strategy's timed passes follow, in the same submission, at least `--warmup-ms`
 * (400) of back-to-back passes of the same work (`timeWarm` in `src/gpu/gpu_timing.ts`): an idle GPU
 * runs at a low clock, and a short burst after an idle upload measures the clock, not the
 * kernel. Reported: median of `--runs` (25) passes, and their 10th-90th percentile spread. Then,
 * in the same submission, `--runs` samples of passes back to back ("stream"), each over as many
 * passes as fill about `--stream-ms` (2) of GPU time (at most 256), as the PyTorch and Triton
 * anchors are timed (a CUDA graph of as many calls, bench/anchors/anchor_common.py): a pass
 * timed alone also pays for the GPU starting its first dispatch and draining its last, which
 * back-to-back work hides; the comparisons with the anchors use the stream times. K/V
 * copies are rotated when the cache would fit in L2. A case's roofline is the larger of its K+V
 * bytes over the read ceiling and its FLOPs over the FMA ceiling; the table says which applies.
 *
 * With `--anchor=FILE` (bench/anchors/torch_sdpa.py) and `--triton=FILE`
 * (bench/anchors/triton_decode.py) it prints lean's time over theirs. `--paged` also times lean
 * through a paged `KVCache` (pages of 16 tokens) and the attention encoder; 8-bit cases with
 * per-tensor scales through a cache created with them (`kvScales: "tensor"`), or with
 * `--paged-token-scales` through the default cache, which keeps a scale per token.
 *
 * Usage: deno run -A --unstable-webgpu [--v8-flags=--expose-gc] bench/gpu_bench.ts
 *        [--backend=webgpu|dawn] [--anchor=FILE] [--triton=FILE] [--out=FILE] [--paged]
 *        [--paged-token-scales]
 *        [--only=SUBSTRING[|SUBSTRING...]] [--skip=SUBSTRING[|...]] [--strategies=lean,split,single] [--runs=25]
 *        [--warmup-ms=400] [--stream-ms=2] [--kernel=JSON] [--table=FILE] [--check]
 *        [--tile-tokens=N] [--cases=FILE]
 *        [--grid=N] [--no-retime]
 *
 * `--table=FILE` overrides entries of `KERNEL_TABLE` (JSON of the same shape, e.g. picked from a
 * sweep by bench/pick_table.ts); `--check` first runs each case's kernel on a shortened input
 * against the float64 reference, and with `--paged` the paged kernel too (bench/bench_check.ts).
 * `--cases=FILE` reads the cases from another file of cases.json's form (e.g. bench/cases_rows.json).
 */

import { type BackendName, createDecoder, type KernelTuning, type Strategy } from "../mod.ts";
import { gridFor, tileConfig } from "../plan.ts";
import {
  KERNEL_TABLE,
  type KernelChoice,
  kernelChoiceKey,
  kernelTableKey,
} from "../src/kernels/kernel_table.ts";
import { loadDawn } from "../dawn.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { median } from "../src/gpu/gpu_timing.ts";
import { type BenchCase, loadCases } from "./bench_cases.ts";
import { makeBenchInput } from "./bench_input.ts";
import {
  caseKVBytes,
  type Ceilings,
  decodeFlops,
  measureCeilings,
  roofline,
} from "./gpu_ceilings.ts";
import { timePaged } from "./paged_timing.ts";
import { checkDense, checkPaged } from "./bench_check.ts";
import { formatRow, HEADER, methodLine, paperLine, type Row } from "./results_table.ts";

const args = new Map(
  Deno.args.map((a) => {
    const [k, ...v] = a.replace(/^--/, "").split("=");
    return [k, v.join("=")] as [string, string];
  }),
);
const backend = (args.get("backend") || "webgpu") as BackendName;
const warmupMs = Number(args.get("warmup-ms") ?? 400);
const runs = Number(args.get("runs") ?? 25);
const streamMs = Number(args.get("stream-ms") ?? 2);
const strategies = (args.get("strategies") ?? "lean,split,single").split(",") as Strategy[];
/** `--grid=N`: the lean grid of every class, instead of the device's calibration. */
const grid = args.get("grid") ? Number(args.get("grid")) : undefined;
/** `--tile-tokens=N`: the decoders' tile size (default: the planner's, 64). */
const tileTokens = args.has("tile-tokens") ? Number(args.get("tile-tokens")) : undefined;
const kernel: KernelTuning | undefined = args.get("kernel")
  ? JSON.parse(args.get("kernel")!)
  : undefined;
/** An anchor's times by case name: back to back (`ms`) and one call alone (`aloneMs`). */
interface AnchorTimes {
  ms: Record<string, number | null>;
  aloneMs: Record<string, number | null>;
}
/** An anchor's times (none when the flag is absent or its file is missing). */
async function anchor(flag: string): Promise<AnchorTimes> {
  const path = args.get(flag);
  if (!path) return { ms: {}, aloneMs: {} };
  try {
    const file = JSON.parse(await Deno.readTextFile(path)) as Partial<AnchorTimes>;
    return { ms: file.ms ?? {}, aloneMs: file.aloneMs ?? {} };
  } catch (e) {
    console.log(`--${flag}: ${(e as Error).message}; going on without it`);
    return { ms: {}, aloneMs: {} };
  }
}
/** `--table=FILE`: kernel choices by class (as `KERNEL_TABLE`) overriding the built-in table. */
const table: Record<string, KernelChoice> | undefined = args.get("table")
  ? { ...KERNEL_TABLE, ...JSON.parse(await Deno.readTextFile(args.get("table")!)) }
  : undefined;
const torch = await anchor("anchor");
const triton = await anchor("triton");
/** Caches below this many bytes are rotated among copies, so L2 (50-60 MB) does not hold them. */
const ROTATE_BELOW = 100e6;

/** Percentile of sorted values (nearest rank). */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(p * (sorted.length - 1))))];
}

/** The stream columns of a row (none when stream timing was off). */
function streamFields(samplesMs: number[] | undefined, perPass: number | undefined): Row {
  if (!samplesMs) return {};
  const sorted = [...samplesMs].sort((a, b) => a - b);
  return {
    streamMs: median(sorted),
    streamP10Ms: percentile(sorted, 0.1),
    streamP90Ms: percentile(sorted, 0.9),
    runsPerStreamPass: perPass,
  };
}

function describe(
  c: BenchCase,
  strategy: string,
  samplesMs: number[],
  extra: Row,
  ceilings: Ceilings,
): Row {
  const kvBytes = caseKVBytes(c);
  const flops = decodeFlops(c);
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const medianMs = median(sorted);
  const roof = roofline(kvBytes, flops, ceilings);
  const stream = typeof extra.streamMs === "number" ? extra.streamMs : undefined;
  return {
    name: c.name,
    group: c.group,
    seqLens: c.seqLens.length > 8 ? `${c.seqLens.length} seqs` : c.seqLens,
    numHeads: c.numHeads,
    numKVHeads: c.numKVHeads,
    headDim: c.headDim,
    ...(c.headDimV === undefined ? {} : { headDimV: c.headDimV }),
    ...(c.vFromK ? { vFromK: true } : {}),
    ...(c.kvDtype === undefined ? {} : { kvDtype: c.kvDtype }),
    qLen: c.qLen,
    strategy,
    medianMs,
    minMs: sorted[0],
    p10Ms: percentile(sorted, 0.1),
    p90Ms: percentile(sorted, 0.9),
    kvBytes,
    flops,
    fractionOfCeiling: kvBytes / ceilings.readBytesPerSecond / (medianMs / 1e3),
    rooflineMs: roof.ms,
    bound: roof.bound,
    fractionOfRoofline: roof.ms / medianMs,
    ...(stream === undefined ? {} : { fractionOfRooflineStream: roof.ms / stream }),
    torchMs: torch.ms[c.name] ?? null,
    tritonMs: triton.ms[c.name] ?? null,
    torchAloneMs: torch.aloneMs[c.name] ?? null,
    tritonAloneMs: triton.aloneMs[c.name] ?? null,
    ...extra,
  };
}

function printRow(r: Row, first: boolean): void {
  console.log(formatRow(r, first));
}

/** Rows per block of a case's plans. */
function rowsPerBlockOf(c: BenchCase): number {
  return tileConfig({
    headDim: c.headDim,
    headDimV: c.headDimV,
    rowsPerGroup: (c.numHeads / c.numKVHeads) * c.qLen,
    kvDtype: c.kvDtype ?? "f16",
  }).rowsPerBlock;
}

/** The `KERNEL_TABLE` key of a case's block shape (see `kernelChoice`). */
function classOf(c: BenchCase): string {
  return kernelTableKey(c.headDim, rowsPerBlockOf(c));
}

/**
 * `--check`'s tolerance: packed f16 scores (`--kernel='{"halfMath":true}'`) and the matrix
 * kernel's f16 operands (`matrixMath`) have f16's precision.
 */
const checkTolerance = kernel?.halfMath || kernel?.matrixMath ? 2e-3 : 1e-4;

async function runCase(device: GPUDevice, c: BenchCase, ceilings: Ceilings): Promise<Row[]> {
  // The table's entry for the case (an 8-bit case takes its class's "8-bit" entry if any).
  const entry = table &&
    table[kernelChoiceKey(table, c.headDim, rowsPerBlockOf(c), c.kvDtype ?? "f16")];
  const tuning = entry ? { ...kernel, ...entry } : kernel;
  const decoder = await createDecoder({ backend, device, kernel: tuning, grid, tileTokens });
  const rows: Row[] = [];
  if (kernel?.matrixMath) {
    console.log(`${c.name}: matrix kernel ${decoder.profile.matrixUnits ?? false}`);
  }
  try {
    const checked = args.has("check") ? await checkDense(decoder, c, checkTolerance) : undefined;
    const input = makeBenchInput(c);
    const kvBytes = input.k.byteLength + (input.v?.byteLength ?? 0);
    if (c.kvDtype !== "f16") console.log(`${c.name}: kvDtype ${c.kvDtype} ${c.kvScales ?? ""}`);
    const kvSets = kvBytes < ROTATE_BELOW ? Math.min(8, Math.ceil(150e6 / kvBytes)) : 1;
    // The case's first strategy is timed again after the others, and its better timing (by the
    // back-to-back time, else the lone one) kept: the first timing of a case follows the
    // generation of its input (seconds with the GPU idle for the largest) and runs on freshly
    // bound buffers, and on the H200 it ran up to 10% slower than the same plan timed next
    // (b64 4k: lean 0.3084 ms back to back, split and single with the same 512 pieces 0.2785
    // and 0.2782; session 26, bench/results/h200_session13/warm/). `--no-retime` turns it off.
    const order = args.has("no-retime") ? strategies : [...strategies, strategies[0]];
    for (const [at, strategy] of order.entries()) {
      const plan = decoder.plan(input, { strategy });
      const t = await decoder.timeKernels({ ...input, strategy }, {
        runs,
        warmup: 0,
        kvSets,
        warmupMs,
        streamMs,
      });
      const row = describe(c, strategy, t.samplesMs, {
        ...streamFields(t.stream?.samplesMs, t.stream?.runsPerSample),
        workgroups: plan.schedule.workgroups,
        grid: plan.grid,
        windows: plan.schedule.windows?.length ?? 1,
        kvSets,
        warmMs: t.warmMs,
        lastWarmMs: t.lastWarmMs,
        kernelClass: classOf(c),
        kernel: tuning ?? null,
        ...(checked === undefined ? {} : { checkRelL2: checked }),
      }, ceilings);
      if (at === strategies.length) {
        const first = rows.findIndex((r) => r.strategy === strategy);
        const key = (r: Row) => (r.streamMs ?? r.medianMs) as number;
        const [a, b] = [rows[first], row];
        rows[first] = {
          ...(key(b) < key(a) ? b : a),
          timings: [a, b].map((r) => ({ medianMs: r.medianMs, streamMs: r.streamMs })),
        };
        console.log(
          `${"".padEnd(22)}${strategy} timed again: ${key(b).toFixed(4)} ms (first ${
            key(a).toFixed(4)
          }); the better kept`,
        );
        continue;
      }
      printRow(row, rows.length === 0);
      rows.push(row);
    }
    if (args.has("paged")) {
      // (The matrix kernel's blocks where the decoder runs it: its classes have their own grids;
      // MLA's the tiled kernel's otherwise.)
      const tiles = tileConfig({
        headDim: c.headDim,
        headDimV: c.headDimV,
        rowsPerGroup: (c.numHeads / c.numKVHeads) * c.qLen,
        kvDtype: c.kvDtype === "bf16" ? "bf16" : "f16",
      }, {
        matrixBlocks: decoder.profile.matrixBlocks === true,
        matrixUnits: decoder.profile.matrixUnits === true,
        matrixUnitRows: tuning?.matrixRows,
      });
      // The dense decode above calibrated an 8-bit class's own grid (src/gpu/kv_class_grids.ts).
      const grid = gridFor(
        decoder.profile,
        tiles.rowsPerBlock,
        c.headDim,
        c.kvDtype,
        tiles.matrixUnits,
      );
      const pagedOptions = {
        grid,
        kernel: tuning,
        tileTokens,
        tokenScales: args.has("paged-token-scales"),
      };
      const p = await timePaged(device, c, input, {
        ...pagedOptions,
        runs,
        warmupMs,
        streamMs,
        kvSets,
      });
      if ("skipped" in p) {
        console.log(`${"".padEnd(22)}lean-paged skipped: ${p.skipped}`);
        rows.push({ name: c.name, strategy: "lean-paged", skipped: p.skipped });
      } else {
        const pagedCheck = args.has("check")
          ? await checkPaged(device, c, pagedOptions, checkTolerance)
          : undefined;
        const row = describe(c, "lean-paged", p.timing.samplesMs, {
          ...streamFields(p.timing.streamSamplesMs, p.timing.runsPerStreamPass),
          ...(pagedCheck === undefined ? {} : { checkRelL2: pagedCheck }),
          workgroups: p.workgroups,
          grid,
          pages: p.pages,
          kvSets,
          warmMs: p.timing.warmMs,
          lastWarmMs: p.timing.lastWarmMs,
        }, ceilings);
        const dense = rows.find((r) => r.strategy === "lean");
        if (dense) row.pagedOverDense = (row.medianMs as number) / (dense.medianMs as number);
        if (dense && typeof row.streamMs === "number" && typeof dense.streamMs === "number") {
          row.pagedOverDenseStream = row.streamMs / dense.streamMs;
        }
        printRow(row, false);
        rows.push(row);
      }
    }
  } finally {
    await decoder.dispose();
  }
  return rows;
}

const gpu = backend === "dawn" ? await loadDawn() : navigator.gpu;
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error(`no ${backend} adapter`);
const device = await requestDevice(adapter);
const ceilings = await measureCeilings(device, warmupMs);
const probe = await createDecoder({ backend, device, kernel, grid, tileTokens });
const profile = probe.profile;
await probe.dispose();
console.log(
  `backend ${backend}: ${profile.name}, grids ${
    JSON.stringify(profile.gridByClass ?? profile.gridByRows ?? profile.grid)
  } (${profile.source})`,
);
console.log(
  `ceilings (plain WGSL kernels, warm): read ${
    (ceilings.readBytesPerSecond / 1e12).toFixed(2)
  } TB/s, FMA ${(ceilings.flopsPerSecond / 1e12).toFixed(1)} TFLOP/s, empty pass ${
    (ceilings.emptyPassMs * 1e3).toFixed(1)
  } us`,
);
console.log(
  `${methodLine(warmupMs, runs, streamMs)}\n`,
);
console.log(HEADER);
const only = args.get("only")?.split("|");
const skip = args.get("skip")?.split("|");
const results: Row[] = [];
/** Writes the results so far (after every case, so a run cut short keeps what it measured). */
async function save(): Promise<void> {
  const out = args.get("out");
  if (!out) return;
  await Deno.writeTextFile(
    out,
    JSON.stringify(
      {
        backend,
        adapter: profile.name,
        profile,
        ceiling: ceilings.readBytesPerSecond,
        ceilings,
        warmupMs,
        runs,
        streamMs,
        kernel: kernel ?? null,
        table: table ?? null,
        results,
      },
      null,
      1,
    ),
  );
}
for (
  const c of await loadCases(
    args.get("cases") ? new URL(args.get("cases")!, `file://${Deno.cwd()}/`) : undefined,
  )
) {
  if (only && !only.some((part) => c.name.includes(part))) continue;
  if (skip && skip.some((part) => c.name.includes(part))) continue;
  try {
    results.push(...await runCase(device, c, ceilings));
  } catch (e) {
    console.log(`${c.name.padEnd(22)}failed: ${(e as Error).message}`);
    results.push({ name: c.name, failed: (e as Error).message });
  }
  (globalThis as { gc?: () => void }).gc?.();
  await save();
}
if (strategies.includes("single") && strategies.includes("split")) {
  console.log(`\n${paperLine(results)}`);
}
await save();
device.destroy();

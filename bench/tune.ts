/**
 * Kernel tuning sweep: lean's kernel time for some cases under several kernel configurations
 * (lanes per token, unroll, prefetch, fast steps, workgroup size, tile), on a warm GPU, beside
 * each case's roofline. One decoder per (configuration, case) on one device. Used to fill
 * `KERNEL_TABLE` (src/kernels/kernel_table.ts); bench/notes.md records what it showed.
 *
 * A configuration's `lanes` and `unroll` may be numbers or `"old"`: the choice of the kernel
 * before the table (the most lanes up to 16 that divide the row's 16-byte chunks; unroll 2 /
 * chunks per lane). `rowSets` selects row sets; `cases` limits a
 * configuration to some of the cases (e.g. row sets only where a block has several rows).
 *
 * Usage: deno run -A --unstable-webgpu bench/tune.ts [--backend=webgpu|dawn] [--cases=a,b]
 *        [--configs=JSON] [--out=FILE] [--runs=20] [--warmup-ms=400]
 */

import "../dawn.ts"; // registers Dawn for --backend=dawn
import { type BackendName, createDecoder, type Strategy } from "../mod.ts";
import { loadDawn } from "../dawn.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { type BenchCase, loadCases } from "./bench_cases.ts";
import { makeBenchInput } from "./bench_input.ts";
import { decodeFlops, measureCeilings, roofline } from "./gpu_ceilings.ts";

interface TuneConfig {
  name: string;
  workgroupSize?: number;
  tileTokens?: number;
  lanes?: number | "old";
  unroll?: number | "old";
  subgroups?: boolean;
  prefetch?: boolean | "split";
  queryShared?: boolean;
  halfMath?: boolean;
  fastSteps?: boolean;
  rowSets?: number;
  strategy?: Strategy;
  /** Only these cases (default: all of `--cases`). */
  cases?: string[];
}

const args = new Map(
  Deno.args.map((a) => {
    const [k, ...v] = a.replace(/^--/, "").split("=");
    return [k, v.join("=")] as [string, string];
  }),
);
const backend = (args.get("backend") || "webgpu") as BackendName;
const runs = Number(args.get("runs") ?? 20);
const warmupMs = Number(args.get("warmup-ms") ?? 400);
const DEFAULT_CONFIGS: TuneConfig[] = [
  { name: "old", lanes: "old", unroll: "old", fastSteps: false },
  { name: "table" },
  { name: "L4 U1", lanes: 4, unroll: 1 },
  { name: "L4 U2", lanes: 4, unroll: 2 },
  { name: "L8 U1", lanes: 8, unroll: 1 },
  { name: "L8 U2", lanes: 8, unroll: 2 },
  { name: "L16 U1", lanes: 16, unroll: 1 },
  { name: "L16 U2", lanes: 16, unroll: 2 },
  { name: "L8 U2 nopf", lanes: 8, unroll: 2, prefetch: false },
];
const configs: TuneConfig[] = args.get("configs")
  ? JSON.parse(args.get("configs")!)
  : DEFAULT_CONFIGS;
const wanted = (args.get("cases") ?? "b1 h32 128k,gqa32/8 128k,b16 16k,d256 32k,qLen4 gqa 16k")
  .split(",");
const cases: BenchCase[] = (await loadCases()).filter((c) => wanted.includes(c.name));

/** The kernel before the lanes table: most lanes up to 16 dividing the row's chunks. */
function resolve(config: TuneConfig, c: BenchCase): { lanes?: number; unroll?: number } {
  const chunks = c.headDim / 8;
  let lanes = 1;
  while (lanes * 2 <= 16 && chunks % (lanes * 2) === 0) lanes *= 2;
  const cap = config.lanes === "old" ? lanes : config.lanes;
  let chosen: number | undefined = undefined;
  if (cap !== undefined) {
    chosen = 1;
    while (chosen * 2 <= cap && chunks % (chosen * 2) === 0) chosen *= 2;
  }
  const unroll = config.unroll === "old"
    ? Math.max(1, Math.floor(2 / (chunks / (chosen ?? lanes))))
    : config.unroll;
  return { lanes: chosen, unroll };
}

const gpu = backend === "dawn" ? await loadDawn() : navigator.gpu;
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) throw new Error(`no ${backend} adapter`);
const device = await requestDevice(adapter);
const ceilings = await measureCeilings(device, warmupMs);
console.log(
  `backend ${backend}: read ${(ceilings.readBytesPerSecond / 1e12).toFixed(2)} TB/s, FMA ${
    (ceilings.flopsPerSecond / 1e12).toFixed(1)
  } TFLOP/s, empty pass ${(ceilings.emptyPassMs * 1e3).toFixed(1)} us`,
);
const results: Record<string, unknown>[] = [];
console.log(
  `${"case".padEnd(16)}${"roof ms".padStart(9)}${configs.map((c) => c.name.padStart(10)).join("")}`,
);
for (const c of cases) {
  const input = makeBenchInput(c);
  const kvBytes = 2 * input.k.byteLength;
  const roof = roofline(kvBytes, decodeFlops(c), ceilings);
  const kvSets = kvBytes < 100e6 ? Math.min(8, Math.ceil(150e6 / kvBytes)) : 1;
  const row: string[] = [];
  for (const config of configs) {
    if (config.cases && !config.cases.includes(c.name)) {
      row.push("-".padStart(10));
      continue;
    }
    const { lanes, unroll } = resolve(config, c);
    const created = performance.now();
    const decoder = await createDecoder({
      backend,
      device,
      tileTokens: config.tileTokens,
      workgroupSize: config.workgroupSize,
      kernel: {
        lanes,
        unroll,
        subgroups: config.subgroups,
        prefetch: config.prefetch,
        fastSteps: config.fastSteps,
        rowSets: config.rowSets,
        queryShared: config.queryShared,
        halfMath: config.halfMath,
      },
    });
    const createMs = performance.now() - created;
    try {
      const strategy = config.strategy ?? "lean";
      const plan = decoder.plan(input, { strategy });
      const t = await decoder.timeKernels({ ...input, strategy }, { runs, kvSets, warmupMs });
      row.push(`${t.medianMs.toFixed(4)}`.padStart(10));
      results.push({
        case: c.name,
        config,
        lanes,
        unroll,
        workgroups: plan.schedule.workgroups,
        grid: plan.grid,
        gridByClass: decoder.profile.gridByClass ?? null,
        createMs,
        ms: t.medianMs,
        samplesMs: t.samplesMs,
        warmMs: t.warmMs,
        rooflineMs: roof.ms,
        bound: roof.bound,
        fractionOfRoofline: roof.ms / t.medianMs,
      });
    } catch (e) {
      row.push("error".padStart(10));
      console.error(config.name, c.name, (e as Error).message);
    } finally {
      await decoder.dispose();
    }
  }
  console.log(`${c.name.padEnd(16)}${roof.ms.toFixed(4).padStart(9)}${row.join("")}`);
  // After every case, so a run cut by its time limit keeps what it measured.
  if (args.get("out")) {
    await Deno.writeTextFile(
      args.get("out")!,
      JSON.stringify({ backend, ceilings, results }, null, 1),
    );
  }
}
device.destroy();

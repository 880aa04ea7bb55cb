/**
 * Kernel tuning sweep: lean's kernel time for a few cases under several kernel configurations
 * (workgroup size, tile, lanes, unroll, subgroups, grid scale), one decoder per configuration.
 * Used to pick the defaults; the notes in bench/notes.md record what it showed.
 *
 * Usage: deno run -A --unstable-webgpu bench/tune.ts [--backend=webgpu|dawn] [--cases=a,b]
 *        [--configs=JSON] [--out=FILE]
 */

import "../dawn.ts"; // registers Dawn for --backend=dawn
import { type BackendName, createDecoder, type Decoder, type Strategy } from "../mod.ts";
import { type BenchCase, loadCases } from "./bench_cases.ts";
import { makeBenchInput } from "./bench_input.ts";

interface TuneConfig {
  name: string;
  workgroupSize?: number;
  tileTokens?: number;
  lanes?: number;
  unroll?: number;
  subgroups?: boolean;
  prefetch?: boolean;
  gridScale?: number;
  grid?: number;
  maxBindingBytes?: number;
  strategy?: Strategy;
}

const args = new Map(
  Deno.args.map((a) => {
    const [k, ...v] = a.replace(/^--/, "").split("=");
    return [k, v.join("=")] as [string, string];
  }),
);
const backend = (args.get("backend") || "webgpu") as BackendName;
const DEFAULT_CONFIGS: TuneConfig[] = [
  { name: "default" },
  { name: "no-subgroups", subgroups: false },
  { name: "w256 t128", workgroupSize: 256, tileTokens: 128 },
  { name: "w64", workgroupSize: 64 },
  { name: "t128", tileTokens: 128 },
  { name: "unroll2", unroll: 2 },
  { name: "unroll8", unroll: 8 },
  { name: "lanes8", lanes: 8 },
  { name: "grid x2", gridScale: 2 },
  { name: "grid x0.5", gridScale: 0.5 },
  { name: "split", strategy: "split" },
];
const configs: TuneConfig[] = args.get("configs")
  ? JSON.parse(args.get("configs")!)
  : DEFAULT_CONFIGS;
const wanted = (args.get("cases") ?? "b1 h32 4k,b1 h32 16k,b1 h32 128k,gqa32/8 32k,gqa32/8 128k")
  .split(",");
const extra: BenchCase[] = JSON.parse(args.get("extra") ?? "[]").map((c: Partial<BenchCase>) => ({
  ...c,
  qLen: c.qLen ?? 1,
  group: "extra",
  seqLens: typeof c.seqLens === "string" ? expandLens(c.seqLens) : c.seqLens,
}));
function expandLens(s: string): number[] {
  const [n, len] = s.split("x").map(Number);
  return Array(n).fill(len);
}
const cases = [...(await loadCases()).filter((c) => wanted.includes(c.name)), ...extra];

{
  const a = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
  const info = a?.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  console.log(`adapter features: ${[...(a?.features ?? [])].join(" ")}`);
  console.log(`subgroup sizes: ${info?.subgroupMinSize}..${info?.subgroupMaxSize}`);
  try {
    const d = await a!.requestDevice({ requiredFeatures: ["subgroups" as GPUFeatureName] });
    d.pushErrorScope("validation");
    d.createShaderModule({
      code: `@group(0) @binding(0) var<storage, read_write> b: array<f32>;
@compute @workgroup_size(32) fn main(@builtin(local_invocation_index) i: u32) {
  b[i] = subgroupShuffleXor(b[i], 1u);
}`,
    });
    const err = await d.popErrorScope();
    console.log(
      `subgroups requested: device has it ${
        d.features.has("subgroups" as GPUFeatureName)
      }, shader ${err ? err.message : "ok"}`,
    );
    d.destroy();
  } catch (e) {
    console.log(`subgroups request failed: ${(e as Error).message}`);
  }
}
const decoders: Decoder[] = [];
for (const c of configs) {
  const base = await createDecoder({
    backend,
    grid: c.grid,
    maxBindingBytes: c.maxBindingBytes,
    tileTokens: c.tileTokens,
    workgroupSize: c.workgroupSize,
    kernel: { lanes: c.lanes, unroll: c.unroll, subgroups: c.subgroups, prefetch: c.prefetch },
  });
  if (c.gridScale) {
    const grid = Math.round(base.profile.grid * c.gridScale);
    await base.dispose();
    decoders.push(
      await createDecoder({
        backend,
        grid,
        tileTokens: c.tileTokens,
        workgroupSize: c.workgroupSize,
        kernel: { lanes: c.lanes, unroll: c.unroll, subgroups: c.subgroups, prefetch: c.prefetch },
      }),
    );
  } else {
    decoders.push(base);
  }
}
console.log(
  `backend ${backend}: ${decoders[0].profile.name}, grids ${
    decoders.map((d) => d.profile.grid).join(" ")
  }`,
);
const results: Record<string, unknown>[] = [];
console.log(`${"case".padEnd(16)}${configs.map((c) => c.name.padStart(13)).join("")}`);
for (const c of cases) {
  const input = makeBenchInput(c);
  const kvBytes = 2 * input.k.byteLength;
  const kvSets = kvBytes < 100e6 ? Math.min(8, Math.ceil(150e6 / kvBytes)) : 1;
  const row: string[] = [];
  for (let i = 0; i < configs.length; i++) {
    try {
      const t = await decoders[i].timeKernels(
        { ...input, strategy: configs[i].strategy ?? "lean" },
        { runs: 20, warmup: 3, kvSets },
      );
      row.push(`${t.medianMs.toFixed(4)}`.padStart(13));
      results.push({
        case: c.name,
        config: configs[i],
        ms: t.medianMs,
        tbps: kvBytes / t.medianMs / 1e9,
      });
    } catch (e) {
      row.push("error".padStart(13));
      console.error(configs[i].name, c.name, (e as Error).message);
    }
  }
  console.log(`${c.name.padEnd(16)}${row.join("")}`);
}
for (const d of decoders) await d.dispose();
if (args.get("out")) await Deno.writeTextFile(args.get("out")!, JSON.stringify(results, null, 1));

/**
 * GPU benchmark (`deno task bench:gpu`): every case of `bench/cases.json` for lean, split and
 * single, timed with `timestamp-query` (median of 20 runs after 3 warm-ups, K/V copies rotated
 * when they would fit in L2), beside the adapter's streaming-read ceiling measured in the same run
 * by a plain WGSL read kernel. With `--anchor=FILE` (from bench/anchors/torch_sdpa.py) it also
 * prints lean's time over PyTorch's flash kernel.
 *
 * Usage: deno run -A bench/gpu_bench.ts [--backend=webgpu|dawn] [--anchor=FILE] [--out=FILE]
 *        [--only=SUBSTRING[|SUBSTRING...]] [--order=lean,split,single]
 */

import { type BackendName, createDecoder, type Strategy } from "../mod.ts";
import { loadDawn } from "../dawn.ts";
import { requestDevice } from "../src/gpu_runtime.ts";
import { median, timePasses } from "../src/gpu_timing.ts";
import { type BenchCase, loadCases } from "./bench_cases.ts";
import { makeBenchInput } from "./bench_input.ts";

const args = new Map(
  Deno.args.map((a) => {
    const [k, ...v] = a.replace(/^--/, "").split("=");
    return [k, v.join("=")] as [string, string];
  }),
);
const backend = (args.get("backend") || "webgpu") as BackendName;
const anchor = args.get("anchor")
  ? JSON.parse(await Deno.readTextFile(args.get("anchor")!)) as {
    ms: Record<string, number | null>;
  }
  : undefined;
/** Strategies of a case, in the order they run (`--order=split,lean,single` to change it). */
const STRATEGY_ORDER: Strategy[] =
  (args.get("order")?.split(",") ?? ["lean", "split", "single"]) as Strategy[];
const L2_BYTES = 50e6;

/** Streaming-read ceiling: a grid-stride read of a 1 GiB buffer, 16-byte loads. */
async function readCeiling(device: GPUDevice): Promise<number> {
  const bytes = Math.min(
    1 << 30,
    device.limits.maxStorageBufferBindingSize,
    device.limits.maxBufferSize,
  );
  const src = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE });
  const sink = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
  const module = device.createShaderModule({
    code: `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  var acc = vec4<u32>(0u);
  let stride = nwg.x * 256u;
  let n = arrayLength(&src);
  for (var i = gid.x; i < n; i += stride) {
    acc ^= src[i];
  }
  if (all(acc == vec4<u32>(0x9e3779b9u))) {
    sink[0] = acc.x;
  }
}`,
  });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: src } }, {
      binding: 1,
      resource: { buffer: sink },
    }],
  });
  const ms = await timePasses(device, 23, (pass) => {
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(Math.min(65535, 132 * 32));
  });
  src.destroy();
  sink.destroy();
  return bytes / (median(ms.slice(3)) / 1e3);
}

/** Runs one case's three strategies on a fresh decoder; prints its table rows. */
async function runCase(c: BenchCase, ceiling: number): Promise<Record<string, unknown>[]> {
  const decoder = await createDecoder({ backend });
  const results: Record<string, unknown>[] = [];
  try {
    const kvBytes = 2 * c.seqLens.reduce((a, b) => a + b, 0) * c.numKVHeads * c.headDim * 2;
    const input = makeBenchInput(c);
    const kvSets = kvBytes < 2 * L2_BYTES ? Math.min(8, Math.ceil((3 * L2_BYTES) / kvBytes)) : 1;
    const times: Record<string, number> = {};
    for (const strategy of STRATEGY_ORDER) {
      const plan = decoder.plan(input, { strategy });
      const t = await decoder.timeKernels({ ...input, strategy }, { runs: 20, warmup: 3, kvSets });
      times[strategy] = t.medianMs;
      const tbps = kvBytes / (t.medianMs / 1e3) / 1e12;
      const torch = anchor?.ms[c.name];
      console.log(
        `${(strategy === "lean" ? c.name : "").padEnd(26)}${strategy.padEnd(10)}` +
          `${String(plan.schedule.workgroups).padStart(10)}${t.medianMs.toFixed(4).padStart(12)}` +
          `${tbps.toFixed(2).padStart(12)}${
            ((100 * tbps * 1e12) / ceiling).toFixed(1).padStart(11)
          }%` +
          `${torch ? (t.medianMs / torch).toFixed(2).padStart(9) + "x" : ""}`,
      );
      results.push({
        ...c,
        seqLens: c.seqLens.length > 8 ? `${c.seqLens.length} seqs` : c.seqLens,
        strategy,
        workgroups: plan.schedule.workgroups,
        grid: plan.grid,
        windows: plan.schedule.windows?.length ?? 1,
        medianMs: t.medianMs,
        kvBytes,
        kvSets,
        fractionOfCeiling: (tbps * 1e12) / ceiling,
        torchMs: torch ?? null,
      });
    }
    console.log(
      `${"".padEnd(26)}lean speedup: ${(times.split / times.lean).toFixed(2)}x over split, ` +
        `${(times.single / times.lean).toFixed(2)}x over single`,
    );
  } finally {
    await decoder.dispose();
  }
  return results;
}

const RESULT = "RESULT ";
const cases = await loadCases();
if (args.has("child")) {
  // One case in this process: its buffers are the process's only large allocations.
  const c = cases.find((x) => x.name === args.get("case"));
  if (!c) {
    throw new RangeError(`case must name a case of bench/cases.json: got ${args.get("case")}`);
  }
  const results = await runCase(c, Number(args.get("ceiling")));
  console.log(RESULT + JSON.stringify(results));
} else {
  const gpu = backend === "dawn" ? await loadDawn() : navigator.gpu;
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(`no ${backend} adapter`);
  const device = await requestDevice(adapter);
  const ceiling = await readCeiling(device);
  device.destroy();
  const probe = await createDecoder({ backend });
  const profile = probe.profile;
  await probe.dispose();
  console.log(
    `backend ${backend}: ${profile.name}, grids ${
      JSON.stringify(profile.gridByRows ?? profile.grid)
    } (${profile.source})`,
  );
  console.log(
    `read ceiling: ${(ceiling / 1e12).toFixed(2)} TB/s (plain WGSL read kernel, 16-byte loads)`,
  );
  console.log("each case runs in its own process (fresh GPU allocations)\n");
  const header =
    "case                      strategy  workgroups   median ms     KV TB/s  of ceiling  vs torch";
  console.log(header);
  console.log("-".repeat(header.length));
  const results: Record<string, unknown>[] = [];
  for (const c of cases) {
    const only = args.get("only")?.split("|");
    if (only && !only.some((part) => c.name.includes(part))) continue;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-webgpu",
        new URL(import.meta.url).pathname,
        "--child",
        `--case=${c.name}`,
        `--backend=${backend}`,
        `--ceiling=${ceiling}`,
        ...(args.get("anchor") ? [`--anchor=${args.get("anchor")}`] : []),
        ...(args.get("order") ? [`--order=${args.get("order")}`] : []),
      ],
      stdout: "piped",
      stderr: "inherit",
    });
    const { stdout, success } = await child.output();
    const text = new TextDecoder().decode(stdout);
    for (const line of text.split("\n")) {
      if (line.startsWith(RESULT)) results.push(...JSON.parse(line.slice(RESULT.length)));
      else if (line) console.log(line);
    }
    if (!success) {
      console.log(`${c.name.padEnd(26)}failed (see stderr)`);
      results.push({ ...c, failed: true });
    }
  }
  const out = args.get("out");
  if (out) {
    await Deno.writeTextFile(
      out,
      JSON.stringify({ backend, adapter: profile.name, profile, ceiling, results }, null, 1),
    );
  }
}

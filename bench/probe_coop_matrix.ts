/**
 * Does Deno's WebGPU give a device wgpu's cooperative matrices (`wgpu-cooperative-matrix`, the
 * WGSL extension `wgpu_cooperative_matrix`: `coop_mat16x16<f16, A>`, `coopLoad`, `coopLoadT`,
 * `coopMultiplyAdd`, `coopStore`, `coopStoreT`)? Deno 2.9.6 carries wgpu 29, whose naga knows the
 * extension, but wgpu gates every experimental feature behind a second opt-in at device creation
 * that the runtime may not pass. If a device comes, one 16 x 16 x 16 product of f16 matrices into
 * f32 is checked in each load/store order against the host's product, so the matrix kernel's
 * layout could be written for it.
 *
 * Usage: deno run -A --unstable-webgpu bench/probe_coop_matrix.ts
 */

import { dispatchSrcDst, gpuBuffer, readF32 } from "../tests/gpu_device.ts";

const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) {
  console.log("no adapter");
  Deno.exit(0);
}
console.log(`adapter: ${adapter.info.vendor} ${adapter.info.device} ${adapter.info.description}`);
console.log(`listed features: ${[...adapter.features].sort().join(", ")}`);

async function tryDevice(features: string[]): Promise<GPUDevice | undefined> {
  try {
    const device = await adapter!.requestDevice({
      requiredFeatures: features as GPUFeatureName[],
    });
    console.log(`device with ${features.join(" + ")}: ${[...device.features].sort().join(", ")}`);
    return device;
  } catch (e) {
    console.log(`device with ${features.join(" + ")}: refused (${(e as Error).message})`);
    return undefined;
  }
}

(await tryDevice(["wgpu-cooperative-matrix"]))?.destroy();
const device = await tryDevice(["wgpu-cooperative-matrix", "shader-f16", "subgroups"]);
if (!device) Deno.exit(0);

// Four orders: A and B row-major (coopLoadT) or column-major (coopLoad), C stored row-major.
const orders = [
  ["coopLoadT", "coopLoadT"],
  ["coopLoad", "coopLoad"],
  ["coopLoadT", "coopLoad"],
  ["coopLoad", "coopLoadT"],
];
const n = 16;
const a = new Float32Array(n * n).map(() => Math.round((Math.random() * 2 - 1) * 64) / 64);
const b = new Float32Array(n * n).map(() => Math.round((Math.random() * 2 - 1) * 64) / 64);
for (const [loadA, loadB] of orders) {
  const code = `enable f16;
enable wgpu_cooperative_matrix;
@group(0) @binding(0) var<storage, read> ab: array<f16>;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@compute @workgroup_size(32)
fn main() {
  let ma = ${loadA}<coop_mat16x16<f16, A>>(&ab[0], 16u);
  let mb = ${loadB}<coop_mat16x16<f16, B>>(&ab[256], 16u);
  var mc = coop_mat16x16<f32, C>();
  mc = coopMultiplyAdd(ma, mb, mc);
  coopStoreT(mc, &c[0], 16u);
}`;
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  for (const m of (await module.getCompilationInfo()).messages) {
    console.log(`  ${m.type}: ${m.message}`);
  }
  const halves = new Float16Array(2 * n * n);
  halves.set(a, 0);
  halves.set(b, n * n);
  const abBuf = gpuBuffer(device, halves);
  const cBuf = gpuBuffer(device, new Float32Array(n * n).fill(NaN));
  dispatchSrcDst(device, module, abBuf, cBuf, 1);
  const err = await device.popErrorScope();
  if (err) console.log(`  ${loadA}/${loadB}: validation error ${err.message}`);
  const got = await readF32(device, cBuf, n * n);
  // Which product does it match: A B, A^T B, A B^T, A^T B^T (host, row-major storage)?
  const at = (m: Float32Array, i: number, j: number, t: boolean) => t ? m[j * n + i] : m[i * n + j];
  const fits: string[] = [];
  for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
    let worst = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += at(a, i, k, ta) * at(b, k, j, tb);
        worst = Math.max(worst, Math.abs(s - got[i * n + j]));
      }
    }
    if (worst < 1e-3) fits.push(`${ta ? "A^T" : "A"} ${tb ? "B^T" : "B"}`);
  }
  console.log(
    `  ${loadA} A, ${loadB} B, coopStoreT C: ${fits.join(", ") || "no product matches"} ` +
      `(c[0..3] = ${[...got.slice(0, 4)].map((x) => x.toFixed(4)).join(", ")})`,
  );
}
device.destroy();

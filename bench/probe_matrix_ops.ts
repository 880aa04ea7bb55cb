/**
 * Probe of the WGSL primitives the matrix-unit kernel's sums rely on (session 49), through Dawn
 * on a device with f16 subgroup matrices, each against the CPU:
 * 1. a result matrix accumulated across loop iterations with workgroup barriers between them;
 * 2. a result matrix zeroed by its constructor, stored, accumulated after a store;
 * 3. `workgroupUniformLoad` as a barrier: writes before it visible to every thread after it.
 * Prints one line per probe: its name, `ok` or the first mismatch.
 *
 * Usage: deno run -A --unstable-webgpu bench/probe_matrix_ops.ts
 */

import { loadDawn } from "../dawn.ts";
import { requestDevice, SUBGROUP_MATRIX_FEATURE } from "../src/gpu/gpu_runtime.ts";
import { MATRIX, matrixLoad, matrixStore } from "../src/kernels/matrix_ops.ts";
import { bytesBuffer, dispatchSrcDst, gpuBuffer, readF32 } from "../tests/gpu_device.ts";

const gpu = await loadDawn();
const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
const device = await requestDevice(adapter!, [SUBGROUP_MATRIX_FEATURE]);
const matrices = device.features.has(SUBGROUP_MATRIX_FEATURE as GPUFeatureName);
const HEADER = matrices
  ? `enable f16;\nenable chromium_experimental_subgroup_matrix;\n` +
    `diagnostic(off, chromium.subgroup_matrix_uniformity);\n`
  : "enable f16;\n";

/** Runs `code` (entry `main`) on one workgroup with `a` (f16 bits) and returns `out`. */
async function run(code: string, a: Uint16Array, outLen: number): Promise<Float32Array> {
  const mod = device.createShaderModule({ code: HEADER + code });
  const info = await mod.getCompilationInfo();
  for (const m of info.messages) if (m.type === "error") throw new Error(m.message);
  const src = bytesBuffer(device, a);
  const dst = gpuBuffer(device, outLen * 4);
  dispatchSrcDst(device, mod, src, dst, 1);
  const out = await readF32(device, dst, outLen);
  src.destroy();
  dst.destroy();
  return out;
}

const f16 = (x: number) => {
  // small integers only: exact in f16
  if (x === 0) return 0;
  const s = x < 0 ? 0x8000 : 0;
  const v = Math.abs(x);
  const e = Math.floor(Math.log2(v));
  return s | ((e + 15) << 10) | Math.round((v / 2 ** e - 1) * 1024);
};
const N = 4; // products accumulated
const vals = Array.from({ length: 2 * N * 256 }, (_, i) => ((i * 7919) % 7) - 3);
const a = Uint16Array.from(vals, f16);
// Expected: sum_i A_i B_i (A_i, B_i row-major 16 x 16 at 512 i and 512 i + 256).
const expected = new Float32Array(256);
for (let i = 0; i < N; i++) {
  for (let r = 0; r < 16; r++) {
    for (let c = 0; c < 16; c++) {
      let s = 0;
      for (let k = 0; k < 16; k++) {
        s += vals[512 * i + 16 * r + k] * vals[512 * i + 256 + 16 * k + c];
      }
      expected[16 * r + c] += s;
    }
  }
}
const bindings = `@group(0) @binding(0) var<storage, read> a_in: array<f16>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
`;
const report = (name: string, got: Float32Array, want: ArrayLike<number>) => {
  const bad = Array.from(want).findIndex((w, i) => got[i] !== w);
  console.log(bad < 0 ? `${name}: ok` : `${name}: element ${bad} ${got[bad]} != ${want[bad]}`);
};
const { left: L, right: R, result: S } = MATRIX;

// 1. Accumulated across a loop with barriers.
if (!matrices) console.log("no subgroup matrices on this device: probe 3 alone");
else {
  report(
    "accumulate across a loop with barriers",
    await run(
      `${bindings}var<workgroup> w: array<f32, 256>;
@compute @workgroup_size(32) fn main(@builtin(local_invocation_index) lid: u32) {
  var o = ${S}();
  for (var i = 0u; i < ${N}u; i++) {
    o = subgroupMatrixMultiplyAccumulate(${matrixLoad(L, "&a_in", "512u * i", false, "16u")}, ${
        matrixLoad(R, "&a_in", "512u * i + 256u", false, "16u")
      }, o);
    workgroupBarrier();
  }
  ${matrixStore("&out", "0u", "o", "16u")};
}`,
      a,
      256,
    ),
    expected,
  );

  // 2. Zeroed by the constructor, stored to workgroup memory, read back by threads, cleared, then
  // accumulated again.
  report(
    "zero constructor, store, clear, accumulate",
    await run(
      `${bindings}var<workgroup> w: array<f32, 256>;
@compute @workgroup_size(32) fn main(@builtin(local_invocation_index) lid: u32) {
  var o = ${S}();
  var acc = 0.0;
  for (var i = 0u; i < ${N}u; i++) {
    ${matrixStore("&w", "0u", "o", "16u")};
    workgroupBarrier();
    for (var j = lid; j < 256u; j += 32u) { acc += w[j] * f32(j == lid); }
    workgroupBarrier();
    o = ${S}();
    o = subgroupMatrixMultiplyAccumulate(${matrixLoad(L, "&a_in", "512u * i", false, "16u")}, ${
        matrixLoad(R, "&a_in", "512u * i + 256u", false, "16u")
      }, o);
  }
  ${matrixStore("&w", "0u", "o", "16u")};
  workgroupBarrier();
  // thread lid's element lid: the sum of the first N-1 products' element plus the last's.
  out[lid] = acc + w[lid];
}`,
      a,
      32,
    ),
    expected.subarray(0, 32),
  );
}
// 3. workgroupUniformLoad after writes of other threads.
const got3 = await run(
  `${bindings}var<workgroup> w: array<f32, 128>;
var<workgroup> flag: u32;
@compute @workgroup_size(128) fn main(@builtin(local_invocation_index) lid: u32) {
  w[lid] = f32(lid) + 1.0;
  if (lid == 77u) { flag = 5u; }
  let f = workgroupUniformLoad(&flag);
  out[lid] = w[(lid + 37u) % 128u] + f32(f) * 1000.0 + f32(a_in[0]) * 0.0;
}`,
  a,
  128,
);
report(
  "workgroupUniformLoad as a barrier",
  got3,
  Array.from({ length: 128 }, (_, i) => ((i + 37) % 128) + 1 + 5000),
);
device.destroy();

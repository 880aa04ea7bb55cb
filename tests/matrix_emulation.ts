/**
 * Dawn's experimental subgroup matrices emulated in plain WGSL, so that the matrix-unit kernel
 * (`src/kernels/matrix_kernel.ts`) runs where the device has no matrix units: lavapipe, in CI.
 * {@linkcode emulateSubgroupMatrices} rewrites a module's matrix types, loads, stores and
 * products into functions over whole matrices that every lane of a 32-lane group holds (each
 * lane loads all 256 elements and multiplies them all; each lane stores its own 8). The kernel's
 * structure (its staging, softmax, lazy rescaling, flushes in passes, masked tiles, the merge) is
 * then tested against float64 with every other part as it runs on the GPU; what it does not test
 * is the matrix units' own arithmetic (their f16 products' rounding, lane layouts), which the
 * H200 runs of `tests/matrix_kernel_test.ts` cover. {@linkcode emulatedMatrixDevice} wraps a
 * device so that the library sees subgroup matrices and 32-lane subgroups and compiles every
 * module through the rewrite (the kernel's shuffles span at most 8 lanes, the merge's none, so
 * lavapipe's 8-lane subgroups do).
 *
 * @module
 */

import { SUBGROUP_MATRIX_FEATURE } from "../src/gpu/gpu_runtime.ts";

const LOAD =
  /subgroupMatrixLoad<subgroup_matrix_(left|right|result)<(f16|f32), 16, 16>, (row|col)_major>\(&(\w+), /g;
const STORE = /subgroupMatrixStore<(row|col)_major>\(&(\w+), /g;

/** The element of a matrix at (row r, column c) in its array, by layout. */
const at = (layout: string) => layout === "row" ? "r * stride + c" : "c * stride + r";

/**
 * Rewrites a WGSL module's subgroup matrices (16 x 16, f16 operands, f32 results) into plain
 * WGSL: the same results, every lane holding whole matrices. Needs the entry point's
 * `local_invocation_index` (each lane's 8 elements of a store are found from it).
 *
 * @example
 * ```ts
 * import { emulateSubgroupMatrices } from "./matrix_emulation.ts";
 * const out = emulateSubgroupMatrices(`enable f16;
 * enable chromium_experimental_subgroup_matrix;
 * var<workgroup> a: array<f16, 256>;
 * @group(0) @binding(0) var<storage, read_write> o: array<f32>;
 * @compute @workgroup_size(32)
 * fn main(@builtin(local_invocation_index) lid: u32) {
 *   let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, 0u, 16u);
 *   let s = subgroupMatrixMultiplyAccumulate(l, l, subgroup_matrix_result<f32, 16, 16>());
 *   subgroupMatrixStore<row_major>(&o, 0u, s, 16u);
 * }`);
 * console.log(out.includes("subgroup_matrix"), out.includes("fn sm_mma")); // false true
 * ```
 */
export function emulateSubgroupMatrices(code: string): string {
  const loads = new Map<string, string>();
  const stores = new Map<string, string>();
  let out = code
    .replace(/^enable chromium_experimental_subgroup_matrix;\n/m, "")
    .replace(/^diagnostic\(off, chromium\.subgroup_matrix_uniformity\);\n/m, "")
    .replace(LOAD, (_, kind: string, elem: string, layout: string, arr: string) => {
      const name = `sm_load_${arr}_${layout}_${kind === "result" ? "f" : "h"}`;
      const type = kind === "result" ? "sm_f" : "sm_h";
      loads.set(
        name,
        `fn ${name}(off: u32, stride: u32) -> ${type} {
  var m: ${type};
  for (var r = 0u; r < sm_n; r++) {
    for (var c = 0u; c < sm_n; c++) {
      m[r * 16u + c] = ${elem}(${arr}[off + ${at(layout)}]);
    }
  }
  return m;
}`,
      );
      return `${name}(`;
    })
    .replace(STORE, (_, layout: string, arr: string) => {
      const name = `sm_store_${arr}_${layout}`;
      stores.set(
        name,
        `fn ${name}(off: u32, m: sm_f, stride: u32) {
  var v = m;
  for (var e = sm_lane * 8u; e < sm_lane * 8u + 8u; e++) {
    let r = e / 16u;
    let c = e % 16u;
    ${arr}[off + ${at(layout)}] = v[e];
  }
}`,
      );
      return `${name}(`;
    })
    .replaceAll("subgroupMatrixMultiplyAccumulate(", "sm_mma(")
    .replace(/subgroup_matrix_(left|right)<f16, 16, 16>/g, "sm_h")
    .replaceAll("subgroup_matrix_result<f32, 16, 16>", "sm_f");
  if (/subgroup_?[mM]atrix/.test(out)) {
    throw new Error(
      `matrix emulation: a form it does not know: ${out.match(/.*subgroup_?[mM]atrix.*/)}`,
    );
  }
  const entry = /@builtin\(local_invocation_index\) (\w+): u32,?\n?\)? \{\n/;
  const lane = out.match(entry);
  if (!lane) throw new Error("matrix emulation: the entry point has no local_invocation_index");
  out = out.replace(entry, (m) => `${m}  sm_lane = ${lane[1]} % 32u;\n  sm_n = 16u + sm_zero;\n`);
  return `${out}
// Subgroup matrices emulated (tests/matrix_emulation.ts): every lane holds whole matrices.
alias sm_h = array<f16, 256>;
alias sm_f = array<f32, 256>;
var<private> sm_lane: u32;
// The loops' 16, unknown to the compiler (workgroup memory starts zeroed): fully unrolled at
// every call site, the emulated kernels took minutes to compile on lavapipe.
var<private> sm_n: u32;
var<workgroup> sm_zero: u32;
${[...loads.values(), ...stores.values()].join("\n")}
fn sm_mma(a: sm_h, b: sm_h, c: sm_f) -> sm_f {
  var av = a;
  var bv = b;
  var o = c;
  for (var i = 0u; i < sm_n; i++) {
    for (var j = 0u; j < sm_n; j++) {
      var acc = o[i * 16u + j];
      for (var k = 0u; k < sm_n; k++) {
        acc += f32(av[i * 16u + k]) * f32(bv[k * 16u + j]);
      }
      o[i * 16u + j] = acc;
    }
  }
  return o;
}
`;
}

/**
 * A device that looks to the library like one with subgroup matrices and 32-lane subgroups, and
 * compiles every module through {@linkcode emulateSubgroupMatrices} where it uses them (calling
 * `onEmulate` for each). Its other methods are the device's own.
 */
export function emulatedMatrixDevice(
  device: GPUDevice,
  info: GPUAdapterInfo,
  onEmulate?: () => void,
): GPUDevice {
  const features = new Set([...device.features, SUBGROUP_MATRIX_FEATURE]);
  const adapterInfo = {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    subgroupMinSize: 32,
    subgroupMaxSize: 32,
    subgroupMatrixConfigs: [
      { componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 },
    ],
  };
  const createShaderModule = (d: GPUShaderModuleDescriptor) => {
    if (!d.code.includes("chromium_experimental_subgroup_matrix")) {
      return device.createShaderModule(d);
    }
    onEmulate?.();
    return device.createShaderModule({ ...d, code: emulateSubgroupMatrices(d.code) });
  };
  return new Proxy(device, {
    get(target, key) {
      if (key === "features") return features;
      if (key === "adapterInfo") return adapterInfo;
      if (key === "createShaderModule") return createShaderModule;
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

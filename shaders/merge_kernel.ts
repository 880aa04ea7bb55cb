/**
 * The merge kernel, dispatched after the decode kernel in the same compute pass: one workgroup
 * per split segment merges its partial states in slot order (ascending token position) with the
 * softmax rescale and writes the output and the LSE. The WGSL twin of `mergePartialRow`.
 *
 * @module
 */

import { NEG_SCORE } from "./decode_kernel.ts";
import {
  FLAT_WORKGROUP_WGSL,
  type KernelSpec,
  PARAMS_WGSL,
  QUERY_ROW_WGSL,
} from "./kernel_spec.ts";

/**
 * Generates the merge kernel's WGSL for a spec.
 *
 * @example
 * ```ts
 * import { mergeKernelWGSL } from "./merge_kernel.ts";
 * const wgsl = mergeKernelWGSL({
 *   headDim: 64, kvDtype: "f32", tileTokens: 64, rowsPerBlock: 2, workgroupSize: 64,
 * });
 * console.log(wgsl.includes("fn main")); // true
 * ```
 */
export function mergeKernelWGSL(spec: KernelSpec): string {
  const { headDim: D, rowsPerBlock: RP, workgroupSize: W } = spec;
  return `// lean-attention merge kernel: D=${D} RP=${RP} W=${W}
${PARAMS_WGSL}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> sched: array<u32>;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> result: array<f32>;

const D: u32 = ${D}u;
const RP: u32 = ${RP}u;
const SLOT: u32 = ${RP * (D + 2)}u;
${FLAT_WORKGROUP_WGSL}
${QUERY_ROW_WGSL}

@compute @workgroup_size(${W})
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let e = flat_workgroup(wid, nwg);
  if (e >= params.count) {
    return;
  }
  let f = params.reduce_base + e * 8u;
  let seq = sched[f];
  let kv_head = sched[f + 1u];
  let r0 = sched[f + 2u] * RP;
  let first = sched[f + 3u];
  let n = sched[f + 4u];
  let n_rows = min(RP, params.rows_per_group - r0);
  for (var i = lid; i < n_rows * D; i += ${W}u) {
    let r = i / D;
    var mx = ${NEG_SCORE.toExponential()};
    for (var s = 0u; s < n; s++) {
      let base = (first + s) * SLOT + RP * D;
      if (partials[base + RP + r] > 0.0) {
        mx = max(mx, partials[base + r]);
      }
    }
    var sum = 0.0;
    var acc = 0.0;
    for (var s = 0u; s < n; s++) {
      let base = (first + s) * SLOT;
      let l = partials[base + RP * D + RP + r];
      if (l > 0.0) {
        let w = exp2(partials[base + RP * D + r] - mx);
        sum += l * w;
        acc += w * partials[base + i];
      }
    }
    let row = query_row(seq, kv_head, r0 + r);
    result[row * D + i % D] = acc / sum;
    if (i % D == 0u) {
      result[params.lse_base + row] = (mx + log2(sum)) * 0.6931471805599453;
    }
  }
}
`;
}

/**
 * The pipeline cache key of a kernel spec: every field that changes the generated WGSL, and
 * only those (an option that does not apply to a spec leaves its key alone), so two plans with
 * the same key share a pipeline.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { kernelLayout } from "./kernel_layout.ts";
import {
  earlyLoads,
  halfMath,
  halfSteps,
  halfValues,
  intDots,
  type KernelSpec,
  queryStaged,
  rowScatter,
} from "./kernel_spec.ts";
import { variantKey } from "./variant_wgsl.ts";

/**
 * The pipeline cache key of a spec, for kernels of kind `kind` (decode or merge).
 *
 * @example
 * ```ts
 * import { specKey } from "./spec_key.ts";
 * const spec = {
 *   headDim: 128, kvDtype: "f16" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 * };
 * console.log(specKey("decode", spec) === specKey("decode", { ...spec, nanSteps: true })); // true
 * ```
 */
export function specKey(kind: string, spec: KernelSpec): string {
  const dv = (spec.headDimV ?? spec.headDim) === spec.headDim
    ? ""
    : `/${spec.headDimV}${spec.vFromK ? "k" : ""}`;
  if (spec.tiled) {
    // The tiled kernel's own fields; its blocking follows from them (`tiledLayout`).
    return `${kind}:d${spec.headDim}${dv}:${spec.kvDtype}:t${spec.tileTokens}:r${spec.rowsPerBlock}:w${spec.workgroupSize}:${
      spec.matrix ? "matrix" : `tiled${spec.matrixChunk ?? 32}`
    }${spec.paged ? ":paged" : ""}${spec.paged && spec.kvLayout === "HND" ? ":hnd" : ""}${
      spec.qDtype === "f16" ? ":qf16" : ""
    }${spec.outDtype === "f16" ? ":of16" : ""}${variantKey(spec.variant)}${
      spec.kvScales === "token" ? ":tokscale" : spec.kvScales === "layer" ? ":layerscale" : ""
    }`;
  }
  const l = kernelLayout(spec);
  return `${kind}:d${spec.headDim}${dv}:${spec.kvDtype}:t${spec.tileTokens}:r${spec.rowsPerBlock}:w${spec.workgroupSize}:l${l.lanes}:u${l.unroll}${
    l.subgroups ? ":sg" : ""
  }${l.paged ? ":paged" : ""}${l.paged && spec.kvLayout === "HND" ? ":hnd" : ""}${
    spec.qDtype === "f16" ? ":qf16" : ""
  }${spec.outDtype === "f16" ? ":of16" : ""}${
    spec.prefetch === "split" ? ":pfs" : spec.prefetch ? ":pf" : ""
  }${spec.queryShared && !halfMath(spec) ? ":qs" : ""}${queryStaged(spec) ? ":qst" : ""}${
    halfMath(spec) ? ":h16" : ""
  }${halfValues(spec) ? `:hv${halfSteps(spec)}` : ""}${intDots(spec) ? ":i8dot" : ""}${
    spec.fastSteps === false ? ":masked" : ""
  }${spec.fmaDots ? ":fma" : ""}${l.rowSets > 1 ? `:rs${l.rowSets}` : ""}${
    spec.tokenRuns ? ":runs" : ""
  }${spec.vPerToken ? ":vpt" : ""}${earlyLoads(spec) ? ":early" : ""}${
    earlyLoads(spec) && spec.earlyPages === false ? ":eplate" : ""
  }${spec.nanSteps && KV_DTYPE_INFO[spec.kvDtype].wgslNanSteps ? ":nans" : ""}${
    spec.baseAhead && !spec.paged && spec.prefetch === true ? ":bah" : ""
  }${rowScatter(spec) ? ":rsc" : ""}${
    spec.tokenRuns && l.paged && spec.pageRuns ? (spec.alignedRuns ? ":pgr1" : ":pgr") : ""
  }${l.paged && spec.pageSlices ? `:pgs${spec.pageSlices}` : ""}${variantKey(spec.variant)}${
    spec.kvScales === "token" ? ":tokscale" : spec.kvScales === "layer" ? ":layerscale" : ""
  }${l.shuffleGroups > 1 ? `:sgm${l.shuffleGroups}` : ""}`;
}

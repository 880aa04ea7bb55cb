/**
 * The module scope of a decode kernel: everything its WGSL declares before the entry point. The
 * first line names the specialisation (so a dumped or failing shader says what it was built
 * for), then come the bindings, the constants, the workgroup memory (the group merge's, the
 * lanes' exchange where no subgroup shuffles add their sums, the query rows' where they are
 * shared or staged) and the helper functions the entry point calls (K/V unpacking, addressing,
 * query and output formats, the variants'). A piece of the source `decodeKernelWGSL` splices
 * together.
 *
 * @module
 */

import {
  earlyLoads,
  halfMath,
  halfSteps,
  halfValues,
  intDots,
  type KernelSpec,
  queryStaged,
  rowScatter,
  scaleTable,
} from "./kernel_spec.ts";
import { type KernelLayout, kvLoadDim } from "./kernel_layout.ts";
import { FLAT_WORKGROUP_WGSL, PARAMS_WGSL, QUERY_ROW_WGSL } from "./kernel_params.ts";
import { kvChunkWGSL, kvLoadHalfWGSL, kvLoadWGSL, kvNanStepsWGSL } from "./kv_load.ts";
import { POISONED_WGSL } from "./decode_step.ts";
import { baseWorkgroupBytes, groupMergeWorkgroupWGSL } from "./decode_output.ts";
import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { needsHeadTable, variantFunctionsWGSL } from "./variant_wgsl.ts";
import { ioWGSL } from "./io_wgsl.ts";
import { kvAddressWGSL } from "./kv_address.ts";
import { kernelBindingsWGSL, kernelLayoutEntries, PIECE_RECORD, recordOffsetsWGSL } from "./abi.ts";

/** Sentinel for masked scores and empty states; finite so `exp2(NEG - NEG)` stays defined. */
export const NEG_SCORE = -1e30;

/**
 * What `decodeKernelWGSL` resolved from the spec that the declarations depend on, so that the
 * module scope and the entry point cannot disagree about it. (Plain functions of the spec, such
 * as `halfMath` or `ioWGSL`, are called again here.)
 */
export interface DecodePreambleChoices {
  /** The spec's thread layout (`kernelLayout(spec)`). */
  readonly layout: KernelLayout;
  /** Emit `enable subgroups;` where the kernel shuffles (`WGSLOptions.enableDirective`). */
  readonly enableDirective: boolean;
  /** Packed f16 dot products: K's chunks are read or unpacked as f16 halves. */
  readonly halfK: boolean;
  /** Packed f16 dot products over 8-bit K, whose words `unpack_kh` unpacks into halves. */
  readonly halfBytes: boolean;
  /** Packed f16 weighted sums over f16 V: V's chunks are read as `KHalves`. */
  readonly halfV16: boolean;
  /** FP8 E4M3 chunks unpacked without a NaN test per word (one test per step instead). */
  readonly nanSteps: boolean;
  /** 8-bit K/V with one scale pair per token and KV head (else per tensor). */
  readonly tokenScales: boolean;
  /** The query rows' workgroup memory declarations (`queryRowsWGSL`'s `workgroup`). */
  readonly queryWorkgroup: string;
}

/**
 * Generates a decode kernel's module-scope WGSL: its header line, bindings, constants, workgroup
 * memory and helper functions (without a trailing newline; the entry point follows).
 *
 * @example
 * ```ts
 * import { decodePreambleWGSL } from "./decode_preamble.ts";
 * import { kernelLayout } from "./kernel_layout.ts";
 * const spec = {
 *   headDim: 128, kvDtype: "f16" as const, tileTokens: 64, rowsPerBlock: 4, workgroupSize: 128,
 * };
 * const wgsl = decodePreambleWGSL(spec, {
 *   layout: kernelLayout(spec), enableDirective: false, halfK: false, halfBytes: false,
 *   halfV16: false, nanSteps: false, tokenScales: false, queryWorkgroup: "",
 * });
 * console.log(wgsl.startsWith("// lean-attention decode kernel: D=128 kv=f16")); // true
 * console.log(wgsl.includes("@compute")); // false
 * ```
 */
export function decodePreambleWGSL(spec: KernelSpec, choices: DecodePreambleChoices): string {
  const { headDim: D, tileTokens: T, rowsPerBlock: RB, workgroupSize: W } = spec;
  const { layout: L, halfK, halfBytes, halfV16, nanSteps, tokenScales } = choices;
  const { lanes, groups: G, unroll: U, step } = L;
  const RP = L.rowsPerThread;
  const RS = L.rowSets;
  const flags = spec.variant ?? {};
  const DV = spec.headDimV ?? D; // V and output rows (MLA: shorter than K's)
  const splitV = DV !== D;
  const loadDim = kvLoadDim(D, spec.headDimV);
  const raw = kvChunkWGSL(spec.kvDtype, loadDim);
  const scaled = KV_DTYPE_INFO[spec.kvDtype].scaled;
  const half = halfMath(spec);
  const halfV = halfValues(spec);
  const io = ioWGSL(spec);

  const bindings = kernelBindingsWGSL(
    kernelLayoutEntries({
      paged: L.paged,
      heads: needsHeadTable("decode", flags),
      kvScales: scaleTable(spec),
    }),
    {
      q: io.qType,
      k: `array<${halfK && !halfBytes ? "KHalves" : raw}>`,
      v: `array<${halfV16 ? "KHalves" : raw}>`,
      out: io.outType,
    },
  );
  const entries = G * RS * U * RP; // (token, row) scores per step
  const exchange = L.subgroups || lanes === 1 ? "" : `const XHALF: u32 = ${entries * (lanes + 1)}u;
const SHALF: u32 = ${entries}u;
var<workgroup> xs: array<f32, ${2 * entries * (lanes + 1)}>;
var<workgroup> ss: array<f32, ${2 * entries}>;`;

  return `${half ? "enable f16;\n" : ""}${
    choices.enableDirective && L.subgroups ? "enable subgroups;\n" : ""
  }// lean-attention decode kernel: D=${D}${
    splitV ? ` DV=${DV}` : ""
  } kv=${spec.kvDtype} T=${T} RP=${RB} W=${W} lanes=${lanes} unroll=${U}${
    L.subgroups ? " subgroups" : ""
  }${L.paged ? " paged" : ""}${L.paged && spec.kvLayout === "HND" ? " hnd" : ""}${
    scaled ? ` scales=${tokenScales ? "token" : "tensor"}` : ""
  }${RS > 1 ? ` rowSets=${RS}` : ""}${spec.prefetch === "split" ? " prefetch=split" : ""}${
    spec.queryShared && !half ? " queryShared" : ""
  }${queryStaged(spec) ? " queryStaged" : ""}${half ? " halfMath" : ""}${
    intDots(spec) ? " intDots" : ""
  }${earlyLoads(spec) ? " earlyLoads" : ""}${halfV ? ` halfValues=${halfSteps(spec)}` : ""}${
    spec.vPerToken ? " vPerToken" : ""
  }${rowScatter(spec) ? " rowScatter" : ""}
${PARAMS_WGSL}
${bindings}
${recordOffsetsWGSL(PIECE_RECORD)}

const D: u32 = ${D}u;
const D4: u32 = ${D / 4}u;
const DV: u32 = ${DV}u;
const T: u32 = ${T}u;
const RP: u32 = ${RB}u;
const CHUNKS: u32 = ${L.chunks}u;
const CHUNKS_V: u32 = ${L.chunksV}u;
const LANES: u32 = ${lanes}u;
const GROUPS: u32 = ${G}u;
const STEP: u32 = ${step}u;
const SLOT: u32 = ${RB * (DV + 2)}u;
const NEG: f32 = ${NEG_SCORE.toExponential()};
const Z4: vec4<f32> = vec4<f32>(0.0);${halfV ? "\nconst Z4H: vec4<f16> = vec4<f16>(0.0h);" : ""}
// A NaN built at run time: WGSL rejects NaN in constant expressions.
var<private> nan_bits: u32 = 0x7fc00000u;
const DIRECT: u32 = 0xffffffffu;

// The groups' merged output, and each group's row maxima then the merged sums.
var<workgroup> acc: array<vec4<f32>, ${RB * (DV / 4)}>;
var<workgroup> m_sh: array<f32, ${G * RB}>;
var<workgroup> l_sh: array<f32, ${RB}>;
var<workgroup> bad_sh: array<atomic<u32>, ${RB}>;${
    groupMergeWorkgroupWGSL(G / L.shuffleGroups, RB, DV, baseWorkgroupBytes(spec))
  }
${exchange}${choices.queryWorkgroup}
${FLAT_WORKGROUP_WGSL}
${QUERY_ROW_WGSL}
${kvLoadWGSL(spec.kvDtype, loadDim)}${
    nanSteps ? `\n${kvNanStepsWGSL(spec.kvDtype, loadDim)}` : ""
  }${
    halfBytes || (halfV && !halfV16)
      ? `
${kvLoadHalfWGSL(spec.kvDtype, loadDim)}`
      : ""
  }
${kvAddressWGSL(spec)}
${io.functions}
${POISONED_WGSL}${
    needsHeadTable("decode", flags) || flags.softCap
      ? `\n${variantFunctionsWGSL("decode", flags)}`
      : ""
  }`;
}

/**
 * The matrix-unit decode kernel (opt-in `kernel: { matrixMath: true }`): blocks of 16, 32 or 64
 * query rows of f16 or 8-bit K/V at head dims up to 128 (blocks of 16 rows up to 256, and over
 * MLA's f16 K rows of up to 576 dims with V rows of their own, up to 512), whose two products per
 * tile (scores `S = Q K^T` and the weighted sum `P V`) run on the GPU's matrix units through Dawn's
 * experimental subgroup matrices (`chromium-experimental-subgroup-matrix`: f16 x f16 -> f32, 16 x
 * 16 x 16). The operands are f16 (the queries and the weights rounded to it), the sums f32:
 * f16-grade results, as FlashAttention's f16 kernels give (bench/notes.md, sessions 45-47, where
 * its prototypes were measured on the H200).
 *
 * A workgroup is four subgroups of 32 lanes. Each 16 rows of the block belong to `G` of them (4, 2
 * or 1 at 16, 32 or 64 rows: `src/kernels/matrix_layout.ts`), which share its scores and softmax;
 * with 64 rows each subgroup owns its 16 rows over the whole piece, as FlashAttention-2's warps do.
 * Above head dim 128 tiles have 32 tokens (64 tokens' staging loads would not fit the registers),
 * so a tile's two 16-token blocks are scored by four subgroups, each over half the dims (and
 * keeping only that half's query matrices), and the softmax adds the halves. MLA's layout (K rows
 * above 256 dims) takes 16-token tiles (16 x 584 halves of staging), scored by the four subgroups
 * over a quarter of K's dims each; a tile's V rows are requested at its start, during its score
 * products, not a tile ahead with K's, so that a thread holds only one of them beside its query
 * matrices, result matrices and f32 sums (even so the driver keeps a quarter of the sums in local
 * memory on the H200, session 55); paged, its pages are read two tiles ahead and each tile's V
 * addresses taken into registers before its V loads. Paged K/V: a tile's token addresses are read
 * from the page table once each, into workgroup memory, where the staging loads find them (the next
 * tile's pages are read before a tile's score products and their addresses stored after them, so
 * the products hide the reads). Per tile of `T` tokens:
 * 1. K's rows are staged as halves in workgroup memory (each thread's 16-byte loads were issued
 *    a stage ahead, into registers with constant indices: `src/kernels/matrix_stages.ts`; 8-bit
 *    codes as their values in f16); each subgroup multiplies its rows' query block (f16
 *    matrices kept in registers for the piece) by every `G`th 16-token block of them and stores
 *    the scores.
 * 2. V's rows replace K's in the staging buffer, and the next tile's loads are issued.
 * 3. Softmax: `2 G` lanes per row, the variant's logits, the causal limit and the window as the
 *    tiled kernel's, against each row's reference maximum, which moves only when a tile's maximum
 *    exceeds it by more than 8 (log2 units; lazy rescaling, so weights stay at most 256); each
 *    weight goes to workgroup memory as f16 (-1, exact in f16, where the row does not see the
 *    token), the left operand of `P V`.
 * 4. Tiles every row of the block sees whole: `P V` on the matrix units, each subgroup every
 *    `G`th 16 dims, accumulated in its result matrices from tile to tile. After a row's
 *    reference moved, and on other tiles (a piece's causal or window edges, a few per piece),
 *    those matrices are flushed into each thread's f32 sums with the rescale and cleared (through
 *    the score region, `FW` dims per pass: a region of 16 x D floats per 16 rows would keep the
 *    workgroup above the 27 KB at which two share a multiprocessor on NVIDIA's driver); on an
 *    edge tile each thread then adds its outputs token by token with a select, so a non-finite V
 *    never reaches a row that does not see it (on the matrix units a weight of 0 times such a V
 *    would be NaN). Every workgroup array is a multiple of 16 bytes: the matrix loads and stores
 *    need 16-byte alignment.
 *
 * It reads the same uniform block, schedule, bindings and slots as the tiled kernel, so the plan,
 * the merge and the runner's encoder are unchanged. Every barrier is in uniform control flow; no
 * workgroup waits on another. Tint wants every subgroup-matrix call's arguments uniform across
 * the workgroup; `chromium.subgroup_matrix_uniformity` lifts that, so each subgroup can take its
 * own rows.
 *
 * @module
 */

import { lines } from "./decode_step.ts";
import { type KernelSpec, scaleTable } from "./kernel_spec.ts";
import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { kvLoadWGSL } from "./kv_load.ts";
import {
  FLAT_WORKGROUP_WGSL,
  kernelEntryWGSL,
  PARAMS_WGSL,
  PIECE_LOOP_WGSL,
  QUERY_ROW_WGSL,
} from "./kernel_params.ts";
import { kvAddressWGSL } from "./kv_address.ts";
import { ioWGSL } from "./io_wgsl.ts";
import { kernelBindingsWGSL, kernelLayoutEntries, PIECE_RECORD, recordOffsetsWGSL } from "./abi.ts";
import { needsHeadTable, variantFunctionsWGSL } from "./variant_wgsl.ts";
import type { WGSLOptions } from "./decode_kernel.ts";
import { matrixLayout } from "./matrix_layout.ts";
import { blockRowFinalWGSL, blockRowLimitsWGSL } from "./block_rows.ts";
import { MATRIX, matrixLoad, matrixStore } from "./matrix_ops.ts";
import { matrixStagesWGSL } from "./matrix_stages.ts";
import { dealtWGSL, matrixSumsWGSL } from "./matrix_sums.ts";

/**
 * Generates the matrix kernel's WGSL for a spec (`tiled: true, matrix: true`).
 *
 * @example
 * ```ts
 * import { matrixKernelWGSL } from "./matrix_kernel.ts";
 * const wgsl = matrixKernelWGSL({
 *   headDim: 128, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 64, workgroupSize: 128,
 *   tiled: true, matrix: true,
 * });
 * console.log(wgsl.includes("subgroupMatrixMultiplyAccumulate")); // true
 * ```
 */
export function matrixKernelWGSL(spec: KernelSpec, options: WGSLOptions = {}): string {
  const D = spec.headDim;
  const { RB, NRB, G, KP, THREADS, DV, T, KS, CHUNKS, CHUNKS_V, QR, SO, lateV, vInK } =
    matrixLayout(spec);
  // Query (and K) dim blocks per subgroup: all of them, or its part's (KP > 1).
  const KB = D / 16 / KP, TB = T / 16;
  const LPR = 2 * G; // softmax lanes per row
  const TPL = T / LPR; // tokens per softmax lane
  const flags = spec.variant ?? {};
  const scaled = KV_DTYPE_INFO[spec.kvDtype].scaled;
  const io = ioWGSL(spec);
  const headTable = needsHeadTable("decode", flags);
  const { left: L, right: R, result: S } = MATRIX;
  const PAIRS = DV / (4 * G); // output pairs per thread (src/kernels/matrix_sums.ts)
  // The variant's logits of score `v`: soft-cap, then ALiBi (log2 units, as the tiled kernel's).
  const logits = (v: string) =>
    `${flags.softCap ? `\n        ${v} = soft_cap(${v});` : ""}${
      flags.alibi ? `\n        ${v} += slope * f32(bitcast<i32>(t - pq));` : ""
    }`;
  const visible = `t < lim${flags.window ? " && t >= lo" : ""}`;
  const seesRead = `min(t, tok_end - 1u) <= pq${
    flags.window ? " && min(t, tok_end - 1u) >= lo" : ""
  }`;

  const {
    scales,
    registers,
    pageTable,
    pageRows,
    pageRead,
    pageWrite,
    pageRegisters,
    vAddresses,
    stageLoad,
    stageStore,
    queryRound,
  } = matrixStagesWGSL(spec);
  const sums = matrixSumsWGSL(spec);
  // Scores of 16-token block `jb` (over the subgroup's part `kp` of the dims where KP > 1: the
  // part's sums go to the part's 16 x T of the block's region).
  const scoreBlock = (jb: string) =>
    `      {
        var s = ${S}();
${
      lines(KB, (kk) =>
        `        s = subgroupMatrixMultiplyAccumulate(q${kk}, ${
          matrixLoad(
            R,
            "&kv_wg",
            `16u * ${jb} * ${KS}u + ${KP === 1 ? "" : `kp * ${16 * KB}u + `}${16 * kk}u`,
            true,
            `${KS}u`,
          )
        }, s);`)
    }
        ${
      matrixStore("&so_wg", `so + ${KP === 1 ? "" : `kp * ${16 * T}u + `}16u * ${jb}`, "s", `${T}u`)
    };
      }`;
  // Reductions over a row's lanes (adjacent lanes of one subgroup).
  const rowReduce = (v: string, op: (a: string, b: string) => string, indent = "      ") =>
    lines(
      Math.log2(LPR),
      (i) => `${indent}${v} = ${op(v, `subgroupShuffleXor(${v}, ${1 << i}u)`)};`,
    );

  return `enable f16;${options.enableDirective ? "\nenable subgroups;" : ""}
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);
// lean-attention matrix decode kernel: D=${D}${
    DV === D ? "" : ` DV=${DV}`
  } kv=${spec.kvDtype} RB=${RB} T=${T} G=${G}${spec.paged ? " paged" : ""}${
    spec.paged && spec.kvLayout === "HND" ? " hnd" : ""
  }${scaled ? ` scales=${spec.kvScales ?? "tensor"}` : ""}
${PARAMS_WGSL}
${
    kernelBindingsWGSL(
      kernelLayoutEntries({
        paged: spec.paged ?? false,
        heads: headTable,
        kvScales: scaleTable(spec),
      }),
      { q: io.qType, k: "array<vec4<u32>>", v: "array<vec4<u32>>", out: io.outType },
    )
  }
${recordOffsetsWGSL(PIECE_RECORD)}

const CHUNKS: u32 = ${CHUNKS}u;${DV === D ? "" : `\nconst CHUNKS_V: u32 = ${CHUNKS_V}u;`}
const DV: u32 = ${DV}u;
const RP: u32 = ${RB}u;
const SLOT: u32 = ${RB * (DV + 2)}u;
const NEG: f32 = -1e30;
const TAU: f32 = 8.0;
const DIRECT: u32 = 0xffffffffu;
var<private> nan_bits: u32 = 0x7fc00000u;
// The staged K, then V, rows of a tile (and the query rows at a piece's start), as halves.
var<workgroup> kv_wg: array<f16, ${T * KS}>;
// Each 16-row block's scores, then products P V.
var<workgroup> so_wg: array<f32, ${NRB * SO}>;
// Each 16-row block's weights as f16 (-1: unseen), [row][token].
var<workgroup> p_wg: array<f16, ${NRB * 16 * T}>;
// Each row's rescale factor; at the end its final sum, output factor and NaN flag.
var<workgroup> row_wg: array<f32, ${3 * RB}>;
// Word 0: set by a row whose sums need rescaling this tile. (Four words, to keep every array
// 16-byte aligned: a lone u32 here broke every output on the H200, session 49.)
var<workgroup> resc_wg: array<u32, 4>;${pageTable ? `\n${pageTable}` : ""}
${FLAT_WORKGROUP_WGSL}
${QUERY_ROW_WGSL}
${kvAddressWGSL(spec)}${scaled ? `\n${kvLoadWGSL(spec.kvDtype, D)}` : ""}
${io.functions}${headTable || flags.softCap ? `\n${variantFunctionsWGSL("decode", flags)}` : ""}

// NaN or +inf, by bits (compilers may fold float NaN tests away).
fn poisoned(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7fffffffu) > 0x7f800000u || b == 0x7f800000u;
}

${kernelEntryWGSL(THREADS)}
  // Subgroup sg is subgroup g of row block rb (rows rb * 16 ..); lr is the thread's index in the
  // block's ${32 * G} threads. Softmax: row br of the block takes ${LPR} lanes (parts).
  let sg = lid / 32u;
  let rb = sg / ${G}u;
  let g = sg % ${G}u;
  let lr = g * 32u + lid % 32u;
  let br = rb * 16u + lr / ${LPR}u;
  let part = lr % ${LPR}u;
  let so = rb * ${SO}u;
  let sr = (lr / ${LPR}u) * ${T}u;
  let pb = rb * ${16 * T}u;
  let pw = pb + sr;${
    KP === 1 ? "" : `
  let kp = g / ${TB}u; // the subgroup's part of the dims`
  }${scales}
${PIECE_LOOP_WGSL}
${blockRowLimitsWGSL(flags, "br")}
    var m_run = NEG;
    var l_run = 0.0;
    var bad = 0u;
    // (Zeroed by its initializer: Dawn on lavapipe left a declaration without one holding the
    // last piece's sums, found by tests/matrix_emulation.ts.)
    var acc = array<f32, ${2 * PAIRS}>();
${sums.declare}
${lines(KB, (kk) => `    var q${kk} = ${L}();`)}${
    spec.paged
      ? `\n${pageRegisters}
    // The first tile's addresses (the query rounds' barriers before their reads).
    if (tok_begin < tok_end) {
${pageRows("tok_begin")}
    }${
        lateV
          ? `
    // (MLA: the second tile's pages, into registers; each tile writes the next one's addresses
    // and reads the pages of the one after.)
    if (tok_begin + ${T}u < tok_end) {
${pageRead(`(tok_begin + ${T}u)`)}
    }`
          : ""
      }`
      : ""
  }
${lines(RB / QR, queryRound)}
${registers}
    if (tok_begin < tok_end) {
${stageLoad("tok_begin", lateV ? "k" : "kv")}${vAddresses ? `\n${vAddresses}` : ""}
    }
    for (var tile0 = tok_begin; tile0 < tok_end; tile0 += ${T}u) {
      // (Every thread read the last tile's flag before that tile's last barrier.)
      if (lid == 0u) {
        resc_wg[0] = 0u;
      }
${stageStore("kw")}${
    lateV && !vInK
      ? `\n      // This tile's V rows fly during the score products (MLA: a thread holds K's or V's).
${stageLoad("tile0", "v")}`
      : ""
  }
      workgroupBarrier();${
    spec.paged && lateV
      ? `\n      // MLA: the next tile's addresses from the pages read a tile ago (this tile's last
      // reads of tok_wg came before the barrier above), then the pages of the tile after it: a
      // 16-token tile's products are too short to hide a read of the page table.
      if (tile0 + ${T}u < tok_end) {
${pageWrite}
      }
      if (tile0 + ${2 * T}u < tok_end) {
${pageRead(`(tile0 + ${2 * T}u)`)}
      }`
      : spec.paged
      ? `\n      // The next tile's pages, read before the products so that they hide the read.
      if (tile0 + ${T}u < tok_end) {
${pageRead(`(tile0 + ${T}u)`)}
      }`
      : ""
  }
${KP === 1 ? dealtWGSL(G, TB, scoreBlock) : scoreBlock(`(g % ${TB}u)`)}${
    spec.paged && !lateV
      ? `\n      // The next tile's addresses, for its loads below (the last ones read before the
      // barrier above).
      if (tile0 + ${T}u < tok_end) {
${pageWrite}
      }`
      : ""
  }
      workgroupBarrier();
${
    vInK
      ? "      // (V is the first dims of the K rows staged: no V of its own, MLA's latent.)"
      : stageStore("vw")
  }
      // The next tile's K${lateV ? "" : " and V"} fly during the softmax and the products.
      if (tile0 + ${T}u < tok_end) {
${stageLoad(`(tile0 + ${T}u)`, lateV ? "k" : "kv")}${
    vAddresses
      ? `\n      // (MLA, paged: the next tile's V addresses now, into registers, so that its V loads
      // need no read of workgroup memory behind that tile's stores: paged went from 1.13-1.19x
      // of dense to 1.07-1.10x. K's addresses read so too, before this tile's V stores, made
      // it 1.12-1.16x: session 55, bench/notes.md.)\n${vAddresses}`
      : ""
  }
      }
      // The lane's tokens i0 .. i0 + ${TPL - 1}, their scores kept in registers (constant indices).
      let i0 = part * ${TPL}u;
      var mx = NEG;
${
    lines(TPL, (x) =>
      `      var s${x} = ${
        lines(KP, (h) =>
          `so_wg[so + ${h === 0 ? "" : `${h * 16 * T}u + `}sr + i0 + ${x}u]`)
          .split("\n").join(" + ")
      };`)
  }
${
    lines(TPL, (x) =>
      `      {
        let t = tile0 + i0 + ${x}u;${logits(`s${x}`)}
        let seen = ${visible};
        bad |= select(0u, 1u, seen && poisoned(s${x}));
        mx = select(mx, max(mx, s${x}), seen);
      }`)
  }
${rowReduce("mx", (a, b) => `max(${a}, ${b})`)}
      // Lazy rescaling: the reference moves only on a rise beyond TAU (weights <= 2^TAU).
      let m_new = select(m_run, mx, mx > m_run + TAU);
      let alpha = exp2(m_run - m_new);
      var sum = 0.0;
      // As the tiled kernel's: -1 where the row does not see the token (exact in f16), 0 past
      // the piece.
${
    lines(TPL, (x) =>
      `      {
        let t = tile0 + i0 + ${x}u;
        let e = select(-1.0, select(0.0, exp2(s${x} - m_new), t < tok_end), ${seesRead});
        p_wg[pw + i0 + ${x}u] = f16(e);
        sum += max(e, 0.0);
      }`)
  }
${rowReduce("sum", (a, b) => `${a} + ${b}`)}
      if (part == 0u) {
        row_wg[br] = alpha;
        // A row with sums so far whose reference rose (the first tile it sees has none).
        if (m_new != m_run && m_run > NEG) {
          resc_wg[0] = 1u;
        }
      }
      l_run = l_run * alpha + sum;
      m_run = m_new;
      let rescale = workgroupUniformLoad(&resc_wg)[0] != 0u;
      let plain = min(tile0 + ${T}u, tok_end) <= lim_all${
    flags.window ? " && tile0 >= lo_all" : ""
  };
      if (rescale || !plain) {
        // Flush into the f32 sums (acc), rescaled; on a masked tile then token by token, each
        // (row, token) of weight -1 left out. (so_wg is next written after this tile's end.)
${sums.flush((k) => `row_wg[rb * 16u + pr${k}]`)}
${sums.clear}
        if (!plain) {
${sums.maskedAdds}
        }
      }
      if (plain) {
${sums.products}
      }
      // The next tile's K must wait for this tile's reads of V.
      workgroupBarrier();
    }
    // The sums since the last flush join the f32 sums (the loop's last barrier is behind every
    // read of so_wg and of the rows' rescale factors).
${sums.flush(() => "1.0")}
    // Each row's final sum and output factor (a direct piece's sink joins them here, once), and
    // whether it saw a NaN or +inf score.
${rowReduce("bad", (a, b) => `${a} | ${b}`, "    ")}
    if (part == 0u) {${
    blockRowFinalWGSL(flags, "br", (l, c, nan) =>
      `      row_wg[br] = ${l};
      row_wg[${RB}u + br] = ${c};
      row_wg[${2 * RB}u + br] = ${nan};`)
  }
    }
    workgroupBarrier();
${sums.writes}
    workgroupBarrier();
  }
}
`;
}

/**
 * The matrix-unit kernel's staging (`src/kernels/matrix_kernel.ts`): a tile's K and V rows loaded
 * into registers a stage ahead, their stores into workgroup memory as halves, and the query rows
 * staged at a piece's start and loaded as each subgroup's f16 matrices.
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { lines } from "./decode_step.ts";
import type { KernelSpec } from "./kernel_spec.ts";
import { matrixLayout } from "./matrix_layout.ts";
import { MATRIX, matrixLoad } from "./matrix_ops.ts";

/** The staging statements of a matrix spec. */
export interface MatrixStages {
  /**
   * Lines of the kernel's preamble for 8-bit K/V: per-tensor (or per-layer) scales as `k_mul` and
   * `v_mul`, or with per-token scales `n_kv` (KV heads, for the scale table's rows); else "".
   */
  scales: string;
  /** The piece's staging registers `kw*`, `vw*` (and per-token scales `sw*`), declared. */
  registers: string;
  /**
   * Paged specs: the workgroup array `tok_wg` of a tile's token addresses (and with per-token
   * scales their rows); else "".
   */
  pageTable: string;
  /**
   * Paged specs: the addresses of the tile from token `t0` into `tok_wg` (its first `T` threads
   * read the page table, one token each), for a later {@linkcode stageLoad} of that tile with a
   * barrier between; else "". {@linkcode pageRead} then {@linkcode pageWrite}.
   */
  pageRows(t0: string): string;
  /**
   * Paged specs: the first half of {@linkcode pageRows}: each of the first `T` threads reads its
   * token's page of the tile from token `t0` into registers (`pg_tok`, `pg_page`), so that other
   * work can hide the read's latency before {@linkcode pageWrite}; else "".
   */
  pageRead(t0: string): string;
  /** Paged specs: the second half of {@linkcode pageRows}, the addresses into `tok_wg`; else "". */
  pageWrite: string;
  /** Paged specs: the registers of {@linkcode pageRead}, declared; else "". */
  pageRegisters: string;
  /**
   * Paged specs of the MLA layout (`lateV`): each V staging load's address, from `tok_wg` into
   * the registers `va*` that its {@linkcode stageLoad} of `"v"` reads (else ""), so that the load
   * does not wait on a read of workgroup memory behind the tile's stores.
   */
  vAddresses: string;
  /**
   * A tile's K and V rows from token `t0` into the registers `kw*` and `vw*` (paged: from the
   * addresses that {@linkcode pageRows} put in `tok_wg`); with `rows` `"k"` or `"v"` (the MLA
   * layout's `lateV`, whose K and V rows differ in length) only K's or V's.
   */
  stageLoad(t0: string, rows?: "kv" | "k" | "v"): string;
  /**
   * The registers `kw*` or `vw*` into the staging buffer `kv_wg` as halves (8-bit codes as their
   * values: with per-tensor scales the kernel's `k_mul` and `v_mul`, per-token ones `sw*`).
   */
  stageStore(w: "kw" | "vw"): string;
  /** The query rows of round `q`, staged, then loaded as the matrices `q*` of its subgroups. */
  queryRound(q: number): string;
}

/**
 * The matrix kernel's staging statements for a spec.
 *
 * @example
 * ```ts
 * import { matrixStagesWGSL } from "./matrix_stages.ts";
 * const stages = matrixStagesWGSL({
 *   headDim: 128, kvDtype: "f16", tileTokens: 64, rowsPerBlock: 64, workgroupSize: 128,
 *   tiled: true, matrix: true,
 * });
 * console.log(stages.stageLoad("tok_begin").includes("vw3 = v_cache[a];")); // true
 * ```
 */
export function matrixStagesWGSL(spec: KernelSpec): MatrixStages {
  const D = spec.headDim;
  const { RB, KP, THREADS, T, KS, CHUNKS, CHUNKS_V, CK, CKV, QR, lateV, vInK } = matrixLayout(
    spec,
  );
  // V's own loads, in the MLA layout unless V is in K's staged rows.
  const CV = vInK ? 0 : CKV;
  const paged = spec.paged ?? false;
  const KB = D / 16 / KP; // query matrices per subgroup (those of its part `kp` where KP > 1)
  const kGuard = (T * CHUNKS) % THREADS !== 0;
  const vGuard = (T * CHUNKS_V) % THREADS !== 0;
  const QV = (QR * D) / 4; // query vec4s per round
  const { left: L } = MATRIX;
  const info = KV_DTYPE_INFO[spec.kvDtype];
  const eightBit = info.scaled;
  const EPC = 16 / info.bytes; // elements per 16-byte chunk
  const tokenScales = eightBit && spec.kvScales === "token";
  const layer = eightBit && spec.kvScales === "layer";
  const fold = (info.unpackScale ?? 1) === 1 ? "" : ` * ${(info.unpackScale ?? 1).toFixed(1)}`;

  const scales = !eightBit
    ? ""
    : tokenScales
    ? "\n  let n_kv = params.num_heads / params.group_size;"
    : `\n  // The 8-bit codes' scales (times the unpacking's factor), for the staged values.
  let k_mul = ${layer ? "kv_scales[0].x" : "params.k_scale"}${fold};
  let v_mul = ${layer ? "kv_scales[0].y" : "params.v_scale"}${fold};`;
  const registers = lateV
    ? lines(
      Math.max(CK, CV),
      (i) =>
        [
          i < CK ? `    var kw${i} = vec4<u32>();` : "",
          i < CV ? `    var vw${i} = vec4<u32>();` : "",
          i < CV && paged ? `    var va${i} = 0u;` : "",
        ]
          .filter((l) => l !== "").join("\n"),
    )
    : lines(
      CK,
      (i) =>
        `    var kw${i} = vec4<u32>();\n    var vw${i} = vec4<u32>();${
          tokenScales ? `\n    var sw${i} = vec2<f32>();` : ""
        }`,
    );

  // Paged: a tile's token addresses are read once each, by its first T threads, into tok_wg (and
  // with per-token scales the tokens' rows, for the scale table), instead of each staging load
  // reading the page table and computing its address: those integer operations on every load cost
  // a kernel bound by its instructions 3-6% (session 52).
  const pageTable = paged
    ? `// A tile's token addresses (chunk 0 of the KV head's row)${
      tokenScales ? ", then their rows" : lateV && !vInK ? ", then their V rows' (MLA)" : ""
    }, read from the page table.
var<workgroup> tok_wg: array<u32, ${tokenScales || (lateV && !vInK) ? 2 * T : T}>;`
    : "";
  // The read of the page table and the store of the addresses are apart, so that a kernel can
  // issue the read before a tile's products and store after them: a read issued just before the
  // barrier that the stores must precede left its latency exposed once per tile.
  const pageRead = (t0: string) =>
    paged
      ? `      if (lid < ${T}u) {
        pg_tok = min(${t0} + lid, tok_end - 1u);
        pg_page = kv_page(kv_start, pg_tok);
      }`
      : "";
  const pageWrite = paged
    ? `      if (lid < ${T}u) {
        tok_wg[lid] = kv_addr_at(pg_page, pg_tok, kv_head);${
      tokenScales ? `\n        tok_wg[${T}u + lid] = kv_row_at(pg_page, pg_tok);` : ""
    }${
      lateV && !vInK
        ? `\n        tok_wg[${T}u + lid] = kv_addr_v_at(pg_page, pg_tok, kv_head);`
        : ""
    }
      }`
    : "";
  const pageRows = (t0: string) => paged ? `${pageRead(t0)}\n${pageWrite}` : "";
  const pageRegisters = paged ? "    var pg_tok = 0u;\n    var pg_page = 0u;" : "";
  // Statement `body` for each of a thread's staging chunks of K's rows (`v` false) or of V's at
  // their own row length (the MLA layout's, `v` true), with its guard where the tile's chunks do
  // not fill every thread: the MLA layout's loads and every layout's stores.
  const perLoad = (v: boolean, body: (i: number, chunks: number) => string) => {
    const chunks = v ? CHUNKS_V : CHUNKS;
    return lines(
      v ? CKV : CK,
      (i) =>
        `      ${(v ? vGuard : kGuard) ? `if (lid + ${i * THREADS}u < ${T * chunks}u) ` : ""}{
        let idx = lid + ${i * THREADS}u;
        ${body(i, chunks)}
      }`,
    );
  };
  // Where a paged load's token address is in `tok_wg` (V's after K's).
  const tableAddress = (v: boolean, chunks: number) =>
    `tok_wg[${v ? `${T}u + ` : ""}idx / ${chunks}u] + idx % ${chunks}u`;
  const rowsLoad = (t0: string, w: "kw" | "vw") => {
    const v = w === "vw";
    return perLoad(v, (i, chunks) => {
      const addr = paged && v
        ? `va${i}`
        : paged
        ? tableAddress(v, chunks)
        : `${v ? "kv_addr_v" : "kv_addr"}(kv_start, min(${t0} + idx / ${chunks}u, tok_end - 1u), ` +
          `kv_head) + idx % ${chunks}u`;
      return `${w}${i} = ${v ? "v" : "k"}_cache[${addr}];`;
    });
  };
  const vAddresses = !(paged && lateV) || vInK
    ? ""
    : perLoad(true, (i, chunks) => `va${i} = ${tableAddress(true, chunks)};`);
  // A tile's K and V rows from token `t0` into registers `kw0`, `vw0`, `kw1`, ... (constant
  // indices: a register array indexed in a loop went to local memory on the H200, session 47),
  // and with per-token scales each row's pair of scales into `sw0`, ... K and V rows share their
  // addresses (but in the MLA layout, above).
  const stageLoad = (t0: string, rows: "kv" | "k" | "v" = "kv") =>
    rows !== "kv" ? rowsLoad(t0, rows === "k" ? "kw" : "vw") : lines(CK, (i) => {
      const load = paged
        ? `{
        let idx = lid + ${i * THREADS}u;
        let a = tok_wg[idx / ${CHUNKS}u] + idx % ${CHUNKS}u;
        kw${i} = k_cache[a];
        vw${i} = v_cache[a];${
          tokenScales
            ? `\n        sw${i} = kv_scales[tok_wg[${T}u + idx / ${CHUNKS}u] * n_kv + kv_head];`
            : ""
        }
      }`
        : `{
        let idx = lid + ${i * THREADS}u;
        let tok = min(${t0} + idx / ${CHUNKS}u, tok_end - 1u);
        let a = kv_addr(kv_start, tok, kv_head) + idx % ${CHUNKS}u;
        kw${i} = k_cache[a];
        vw${i} = v_cache[a];${
          tokenScales ? `\n        sw${i} = kv_scales[kv_row(kv_start, tok) * n_kv + kv_head];` : ""
        }
      }`;
      return `      ${kGuard ? `if (lid + ${i * THREADS}u < ${T * CHUNKS}u) ` : ""}${load}`;
    });
  // Their stores into the staging buffer as halves: f16 words as they are, 8-bit codes as their
  // values (code times scale, and the unpacking's factor: `unpackScale`), rounded to f16.
  const stageStore = (w: "kw" | "vw") =>
    perLoad(
      w === "vw" && lateV,
      (i, chunks) =>
        `let at = (idx / ${chunks}u) * ${KS}u + (idx % ${chunks}u) * ${EPC}u;
${
          eightBit
            ? `        let u = unpack_kv(${w}${i});
        let m = ${tokenScales ? `sw${i}.${w === "kw" ? "x" : "y"}${fold}` : `${w[0]}_mul`};
${
              lines(
                16,
                (e) => `        kv_wg[at + ${e}u] = f16(u[${e >> 2}].${"xyzw"[e & 3]} * m);`,
              )
            }`
            : lines(4, (e) =>
              `        let h${e} = bitcast<vec2<f16>>(${w}${i}[${e}]);
        kv_wg[at + ${2 * e}u] = h${e}.x;
        kv_wg[at + ${2 * e + 1}u] = h${e}.y;`)
        }`,
    );
  // The query rows of round `q` (rows `q QR` on), prescaled and rounded to f16, then each of that
  // round's subgroups loads its 16 rows' matrices.
  const queryRound = (q: number) =>
    `    // Query rows ${q * QR} to ${(q + 1) * QR - 1}.
    for (var idx = lid; idx < ${QV}u; idx += ${THREADS}u) {
      let r = ${q * QR}u + idx / ${D / 4}u;
      let x = select(vec4<f32>(0.0), load_q(query_row(q_start, q_len, kv_head, r0 + min(r, n_rows - 1u)) * ${
      D / 4
    }u + idx % ${D / 4}u), r < n_rows) * params.scale_log2;
      let at = (idx / ${D / 4}u) * ${KS}u + (idx % ${D / 4}u) * 4u;
      kv_wg[at] = f16(x.x);
      kv_wg[at + 1u] = f16(x.y);
      kv_wg[at + 2u] = f16(x.z);
      kv_wg[at + 3u] = f16(x.w);
    }
    workgroupBarrier();
    ${QR === RB ? "{" : `if (rb / ${QR / 16}u == ${q}u) {`}
${
      lines(KB, (kk) =>
        `      q${kk} = ${
          matrixLoad(
            L,
            "&kv_wg",
            `(rb % ${QR / 16}u) * ${16 * KS}u + ${KP === 1 ? "" : `kp * ${16 * KB}u + `}${
              16 * kk
            }u`,
            false,
            `${KS}u`,
          )
        };`)
    }
    }
    workgroupBarrier();`;
  return {
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
  };
}

/**
 * The tiled decode kernel's loads and score arithmetic (`src/kernels/tiled_kernel.ts`): the
 * staging of query rows and keys into workgroup memory a chunk of dims at a time, each thread's
 * 4-row block of scores, and the V pieces of the weighted sum. Every load is kept as loaded until
 * it is used: anything computed from a load where it is issued makes the thread wait for it there
 * (a mask on the V loads cost MLA 11% on the H200, bench/notes.md, session 24).
 *
 * @module
 */

import { KV_DTYPE_INFO } from "../core/dtypes.ts";
import { lines } from "./decode_step.ts";
import type { KernelSpec } from "./kernel_spec.ts";
import { TILED_THREADS, type TiledLayout } from "./tiled_layout.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * WGSL of a thread's raw V piece (8 elements) of one token, and its unpacking. The load is
 * returned as loaded: anything computed from it at the load (a mask, picking a half) would make
 * the thread wait for it there, and the weighted sum requests its V pieces a group of tokens
 * ahead (masking at the load cost MLA 11% on the H200, bench/notes.md).
 *
 * @example
 * ```ts
 * import { vPieceWGSL } from "./tiled_stages.ts";
 * const spec = { headDim: 576, kvDtype: "int8" as const, tileTokens: 64, rowsPerBlock: 64, workgroupSize: 256 };
 * console.log(vPieceWGSL(spec).load.includes("c / 2u")); // true (8 bytes of a 16-byte chunk)
 * ```
 */
export function vPieceWGSL(spec: KernelSpec): { type: string; load: string; unpack: string } {
  const bytes = KV_DTYPE_INFO[spec.kvDtype].bytes;
  if (bytes === 4) {
    return {
      type: "VRaw",
      load: `struct VRaw {
  a: vec4<f32>,
  b: vec4<f32>,
}
fn v_piece(base: u32, c: u32) -> VRaw {
  return VRaw(v_cache[base + 2u * c], v_cache[base + 2u * c + 1u]);
}`,
      unpack: `fn v_unpack(x: VRaw, c: u32) -> array<vec4<f32>, 2> {
  return array<vec4<f32>, 2>(x.a, x.b);
}`,
    };
  }
  if (bytes === 2) {
    return {
      type: "vec4<u32>",
      load: `fn v_piece(base: u32, c: u32) -> vec4<u32> {
  return v_cache[base + c];
}`,
      unpack: `fn v_unpack(x: vec4<u32>, c: u32) -> array<vec4<f32>, 2> {
  return unpack_kv(x);
}`,
    };
  }
  // 8-bit: a thread's 8 bytes are one half of a 16-byte chunk, picked at the unpacking.
  return {
    type: "vec4<u32>",
    load: `fn v_piece(base: u32, c: u32) -> vec4<u32> {
  return v_cache[base + c / 2u];
}`,
    unpack: `fn v_unpack(x: vec4<u32>, c: u32) -> array<vec4<f32>, 2> {
  let h = select(x.xy, x.zw, (c & 1u) == 1u);
  return array<vec4<f32>, 2>(unpack_word(h.x), unpack_word(h.y));
}`,
  };
}

/** The statements of the score phase and the V loads, for a spec and its layout. */
export interface TiledStages {
  /** A tile's K rows (`kb_next*`, and `ks_next*` with per-token scales) from token `t0`. */
  kRows(t0: string): string;
  /** One stage's loads: K chunk `ci` from the rows `kb*`, the query rows' chunk `ci`. */
  stageLoad(ci: string, kb: string): string;
  /** Each query load slot's row and first `vec4` (`qr*`, `qok*`, `qb*`), once per piece. */
  queryRows: string;
  /** A stage's registers into workgroup memory (keys unpacked and scaled, queries prescaled). */
  stageStore: string;
  /** A stage's multiply-adds into the thread's scores `s{row}_{token}`. */
  chunkMath: string;
  /** The V pieces of `U` tokens from slot `i0` of the tile into `vn*` (and scales `vs*`). */
  vLoad(i0: string): string;
  /** One token's V piece as `let v1` (and its scale as `let vs1`), loaded where it is used. */
  vLoadOne(tok: string): string;
}

/**
 * The tiled kernel's stage statements.
 *
 * @example
 * ```ts
 * import { tiledStagesWGSL } from "./tiled_stages.ts";
 * import { tiledLayout } from "./tiled_layout.ts";
 * const spec = {
 *   headDim: 576, headDimV: 512, kvDtype: "f16" as const, tileTokens: 64, rowsPerBlock: 64,
 *   workgroupSize: 256, tiled: true,
 * };
 * const stages = tiledStagesWGSL(spec, tiledLayout(spec), "params.scale_log2");
 * console.log(stages.chunkMath.includes("fma(a0.w, b0.w")); // true
 * ```
 */
export function tiledStagesWGSL(
  spec: KernelSpec,
  layout: TiledLayout,
  qScale: string,
): TiledStages {
  const W = TILED_THREADS;
  const D = spec.headDim;
  const DV = spec.headDimV ?? D;
  const { RB, TS, DC, MA_T, TG, U, EPC, CPS, NTX, QS4, KL, QL } = layout;
  const { query: QS_OFF, keys: KS_OFF } = layout.offsets;
  const E4 = EPC / 4; // vec4s per chunk
  const kGuard = (TS * CPS) % W !== 0;
  const qGuard = ((RB * DC) / 4) % W !== 0;
  const info = KV_DTYPE_INFO[spec.kvDtype];
  const tokenScales = info.scaled && spec.kvScales === "token";
  const unpackScale = info.unpackScale ?? 1;
  const fold = unpackScale === 1 ? "" : ` * ${unpackScale.toFixed(1)}`;
  // Query loads stay raw until their store (f16 halves are unpacked there), so they fly.
  const qHalf = spec.qDtype === "f16";
  const sc = (i: number, j: number) => `s${i}_${j}`;
  const vAddr = (tok: string) => `${DV !== D ? "kv_addr_v" : "kv_addr"}(kv_start, ${tok}, kv_head)`;
  // A tile's K rows: each load slot's first chunk in the head's row (and its token's scale), so
  // a stage's load adds only its chunk (for pages, the page table is read once per tile).
  const kRows = (t0: string) =>
    lines(KL, (i) =>
      `      {
        let idx = lid + ${i * W}u;
        let tok = min(${t0} + idx / ${CPS}u, tok_end - 1u);
        kb_next${i} = kv_addr(kv_start, tok, kv_head) + idx % ${CPS}u;${
        tokenScales
          ? `\n        ks_next${i} = kv_scales[kv_row(kv_start, tok) * n_kv + kv_head].x${fold};`
          : ""
      }
      }`);
  // One stage's global loads (chunk `ci` from the rows `kb`) into registers kn*, qn*; the query
  // rows' addresses (qb*, qok*) were found once per piece.
  const stageLoad = (ci: string, kb: string) =>
    `${
      lines(KL, (i) =>
        `      ${
          kGuard ? `if (lid + ${i * W}u < ${TS * CPS}u) { ` : ""
        }kn${i} = k_cache[${kb}${i} + ${ci} * ${CPS}u];${kGuard ? " }" : ""}`)
    }
${
      lines(QL, (i) =>
        `      ${
          qGuard ? `if (lid + ${i * W}u < ${(RB * DC) / 4}u) { ` : ""
        }qn${i} = q[qb${i} + ${ci} * ${DC / 4}u];${qGuard ? " }" : ""}`)
    }`;
  // Each query load slot's row (the last real row where the block has fewer) and first vec4.
  const queryRows = lines(QL, (i) =>
    `    let qr${i} = (lid + ${i * W}u) / ${DC / 4}u;
    let qok${i} = qr${i} < n_rows;
    let qb${i} = query_row(q_start, q_len, kv_head, r0 + min(qr${i}, n_rows - 1u)) * ${
      D / 4
    }u + (lid + ${i * W}u) % ${DC / 4}u;`);
  // The registers of a stage into workgroup memory.
  const stageStore = `${
    lines(KL, (i) =>
      `      {
        let idx = lid + ${i * W}u;
        ${kGuard ? `if (idx < ${TS * CPS}u) {\n        ` : ""}let u = unpack_kv(kn${i});
${
        lines(E4, (j) =>
          `        smem[${KS_OFF}u + (idx / ${CPS}u) * ${QS4}u + (idx % ${CPS}u) * ${E4}u + ${j}u] = u[${j}]${
            tokenScales ? ` * ks${i}` : ""
          };`)
      }${kGuard ? "\n        }" : ""}
      }`)
  }
${
    lines(QL, (i) =>
      `      {
        let idx = lid + ${i * W}u;
        ${qGuard ? `if (idx < ${(RB * DC) / 4}u) { ` : ""}smem[${QS_OFF}u + (idx / ${
        DC / 4
      }u) * ${QS4}u + idx % ${DC / 4}u] = select(vec4<f32>(0.0), ${
        qHalf ? `vec4<f32>(unpack2x16float(qn${i}.x), unpack2x16float(qn${i}.y))` : `qn${i}`
      }, qok${i}) * ${qScale};${qGuard ? " }" : ""}
      }`)
  }`;
  const chunkMath = `      for (var d4 = 0u; d4 < ${DC / 4}u; d4++) {
${lines(4, (i) => `        let a${i} = smem[${QS_OFF}u + (ty * 4u + ${i}u) * ${QS4}u + d4];`)}
${lines(MA_T, (j) => `        let b${j} = smem[${KS_OFF}u + (tx + ${j * NTX}u) * ${QS4}u + d4];`)}
${
    range(4).flatMap((i) =>
      range(MA_T).map((j) =>
        `        ${
          sc(i, j)
        } = fma(a${i}.w, b${j}.w, fma(a${i}.z, b${j}.z, fma(a${i}.y, b${j}.y, fma(a${i}.x, b${j}.x, ${
          sc(i, j)
        }))));`
      )
    ).join("\n")
  }
      }`;
  // V pieces of a group of U tokens (from slot i0) into vn*.
  const vLoad = (i0: string) =>
    lines(U, (u) =>
      `      {
        let t = tile0 + tg + ${TG}u * (${i0} + ${u}u);
        let tok = min(t, tok_end - 1u);
        vn${u} = v_piece(${vAddr("tok")}, c);${
        tokenScales
          ? `\n        vs${u} = kv_scales[kv_row(kv_start, tok) * n_kv + kv_head].y${fold};`
          : ""
      }
      }`);
  const vLoadOne = (tok: string) =>
    `          let v1 = v_piece(${vAddr(tok)}, c);${
      tokenScales
        ? `\n          let vs1 = kv_scales[kv_row(kv_start, ${tok}) * n_kv + kv_head].y${fold};`
        : ""
    }`;
  return { kRows, stageLoad, queryRows, stageStore, chunkMath, vLoad, vLoadOne };
}

/**
 * K/V tiles staged through workgroup memory for the f16 matrix prototypes (sessions 46-47; the
 * wide kernel, bench/proto_hmma_wide_wgsl.ts, and the row-parallel one,
 * bench/proto_hmma_rows_wgsl.ts): each thread's 16-byte loads of a tile's rows, and their stores
 * into `kv_wg` (rows `KS` halves apart), as halves, since a subgroup matrix loads from an
 * `array<f16>`. NVIDIA's driver lowers matrix loads from workgroup memory to `ldmatrix` and those
 * from storage to 2-byte loads (session 47), hence the staging.
 *
 * The generated statements use the kernels' names: `P` (its `n` and `hkv`), `seq`, `head`, `lid`
 * and `kv_wg`.
 *
 * @module
 */

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const join = (n: number, f: (i: number) => string, sep = "\n") => range(n).map(f).join(sep);

/** The staging's shape: tokens per tile, threads, the staged rows' stride, halves or words. */
export interface StagingShape {
  /** Tokens per tile. */
  T: number;
  /** Threads of the workgroup, each taking its share of a tile's 16-byte chunks. */
  threads: number;
  /** Stride of the staged rows in `kv_wg`, in halves. */
  KS: number;
  /**
   * Loads of eight halves (`array<f16>` bindings, two `vec4<f16>` registers per chunk) instead of
   * `vec4<u32>` words taken apart into halves. NVIDIA's driver did not merge them (session 47).
   */
  halves: boolean;
}

/** The staging statements: `buf` names a binding, `w` a register (array) name. */
export interface Staging {
  /** Session 46's staging in one block: a tile's loads into a register array, then its stores. */
  stage(buf: string, rowDims: number, dims: number, dim0: string): string;
  /** Declarations of a tile's staging registers `w0`, `w1`, ... (`dims` halves per token). */
  regsDecl(w: string, dims: number): string;
  /** A tile's loads from token `t` into `w0`, `w1`, ..., every register index a constant. */
  pipeLoad(buf: string, rowDims: number, dims: number, dim0: string, w: string, t: string): string;
  /** The registers `w0`, `w1`, ... stored into `kv_wg`. */
  pipeStore(dims: number, w: string): string;
}

/**
 * The staging statements for a shape. Rows of `buf` hold `rowDims` halves per (token, KV head);
 * a tile stages `dims` of them from chunk `dim0` (an expression, in 16-byte chunks).
 */
export function stagingWGSL(shape: StagingShape): Staging {
  const { T, threads, KS, halves } = shape;
  // Staging: the tile's rows of `buf` (u32x4 chunks of 8 halves, `rowDims` per token and head;
  // `dims` of them from chunk `dim0`) into kv_wg, each thread's loads first, then its stores.
  const stageLoad = (
    buf: string,
    rowDims: number,
    dims: number,
    dim0: string,
    w: string,
    t: string,
  ) => {
    const per = dims / 8, C = (T * per) / threads;
    return `      for (var c = 0u; c < ${C}u; c++) {
        let id = lid + ${threads}u * c;
        ${w}[c] = ${buf}[((seq * P.n + ${t} + id / ${per}u) * P.hkv + head) * ${
      rowDims / 8
    }u + ${dim0} + id % ${per}u];
      }`;
  };
  const stageStore = (dims: number, w: string) => {
    const per = dims / 8, C = (T * per) / threads;
    return `      for (var c = 0u; c < ${C}u; c++) {
        let id = lid + ${threads}u * c;
        let at = (id / ${per}u) * ${KS}u + (id % ${per}u) * 8u;
        for (var e = 0u; e < 4u; e++) {
          let h = bitcast<vec2<f16>>(${w}[c][e]);
          kv_wg[at + 2u * e] = h.x;
          kv_wg[at + 2u * e + 1u] = h.y;
        }
      }`;
  };
  const stage = (buf: string, rowDims: number, dims: number, dim0: string) =>
    `    {
      var w: array<vec4u, ${(T * dims) / 8 / threads}>;
${stageLoad(buf, rowDims, dims, dim0, "w", "t")}
${stageStore(dims, "w")}
    }`;
  // Pipelined staging: a tile's K in registers kw0, kw1, ... and its V in vw0, ... (one 16-byte
  // chunk each, or with `halves` two vec4<f16> each: kw0a, kw0b), every index a constant (session
  // 47's first pipelined kernel indexed register arrays in loops: NVIDIA's compiler put them in
  // local memory, STL.128 / LDL.128 in the token loop).
  const regNames = (w: string, dims: number) =>
    range((T * dims) / 8 / threads).flatMap((i) =>
      halves ? [`${w}${i}a`, `${w}${i}b`] : [`${w}${i}`]
    );
  const regsDecl = (w: string, dims: number) =>
    regNames(w, dims).map((r) => `  var ${r} = ${halves ? "vec4<f16>" : "vec4u"}();`).join("\n");
  const pipeLoad = (
    buf: string,
    rowDims: number,
    dims: number,
    dim0: string,
    w: string,
    t: string,
  ) => {
    const per = dims / 8;
    return join((T * per) / threads, (i) => {
      const b = `((seq * P.n + ${t} + (lid + ${threads * i}u) / ${per}u) * P.hkv + head) * ${
        rowDims / 8
      }u + ${dim0} + (lid + ${threads * i}u) % ${per}u`;
      return halves
        ? `      {
        let b = 8u * (${b});
        ${w}${i}a = vec4<f16>(${buf}[b], ${buf}[b + 1u], ${buf}[b + 2u], ${buf}[b + 3u]);
        ${w}${i}b = vec4<f16>(${buf}[b + 4u], ${buf}[b + 5u], ${buf}[b + 6u], ${buf}[b + 7u]);
      }`
        : `      ${w}${i} = ${buf}[${b}];`;
    });
  };
  const pipeStore = (dims: number, w: string) => {
    const per = dims / 8;
    return join((T * per) / threads, (i) =>
      `      {
        let at = ((lid + ${threads * i}u) / ${per}u) * ${KS}u + ((lid + ${
        threads * i
      }u) % ${per}u) * 8u;
${
        halves
          ? join(8, (e) => `        kv_wg[at + ${e}u] = ${w}${i}${e < 4 ? "a" : "b"}[${e % 4}];`)
          : join(4, (e) =>
            `        let h${e} = bitcast<vec2<f16>>(${w}${i}[${e}]);
        kv_wg[at + ${2 * e}u] = h${e}.x;
        kv_wg[at + ${2 * e + 1}u] = h${e}.y;`)
      }
      }`);
  };
  return { stage, regsDecl, pipeLoad, pipeStore };
}

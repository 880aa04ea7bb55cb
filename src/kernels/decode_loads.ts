/**
 * The decode kernel's K and V loads: each lane group's chunks of `U` tokens per step, issued
 * before the step's arithmetic, or (with prefetch) the next step's issued while this step
 * computes, or (split prefetch) the next step's K issued once this step's dot products have
 * consumed its K and the next step's V once its V is consumed. A piece of the source
 * `decodeKernelWGSL` splices together.
 *
 * @module
 */

import { lines } from "./decode_step.ts";

/** The step's load geometry: what the generated statements index. */
export interface StepLoadShape {
  /** Token groups in a workgroup. */
  readonly G: number;
  /** Tokens loaded per group and step. */
  readonly U: number;
  /** K chunks per lane. */
  readonly CPL: number;
  /** V chunks per lane. */
  readonly CPLV: number;
  /** 8-bit KV with per-token scales (binding `kv_scales`). */
  readonly tokenScales: boolean;
  /** V rows have their own head dim and address (`kv_addr_v`, MLA). */
  readonly splitV: boolean;
  /**
   * K and V through page tables: with prefetch, each token's page is read a step before its
   * rows (`npg{u}`), so a row's request need not wait for the page table.
   */
  readonly paged?: boolean;
  /**
   * Each group takes `U` consecutive tokens per step (`g * U + u`) instead of tokens `G` apart
   * (`u * G + g`): the same tokens per step, in another order within the groups.
   */
  readonly runs?: boolean;
  /**
   * Paged with prefetch and `runs`, pages of at least `U` tokens: a group's `U` tokens of a step
   * lie in at most two pages, read a step ahead (`npgA`, `npgB`: the pages of its first and last
   * token) instead of one page-table read per token.
   */
  readonly pageRuns?: boolean;
  /**
   * With `pageRuns`, runs that never cross a page (page size and runs' first tokens multiples
   * of `U`): one page read a step ahead per group (`npgA`), the page of all its tokens.
   */
  readonly alignedRuns?: boolean;
  /**
   * Paged with prefetch, without `runs`, pages and pieces holding whole slices of `G` tokens:
   * the pages' slices (page size / `G`). The `G` tokens `u * G + g` of a step lie in one page,
   * read a step ahead (`npg{u}`) for the slice, and each row's address is the page's plus the
   * slice's place in it (none with one slice per page) plus the thread's fixed offset.
   */
  readonly pageSlices?: number;
  /**
   * Dense KV with whole prefetch: the next step's rows are addressed from the piece's first row
   * read again from the schedule a step ahead (`nkb`), as paged kernels read their pages.
   */
  readonly baseAhead?: boolean;
  /** WGSL offset of a lane's K chunk `i` in the row (padded rounds use `kpad`). */
  readonly kOff: (i: number) => string;
  /** WGSL offset of a lane's V chunk `i` in the row (padded rounds use `vpad`). */
  readonly vOff: (i: number) => string;
  /**
   * Request the next step's K and V before this step's arithmetic (`true`), or each tensor once
   * this step has consumed its own (`"split"`: one tensor's load registers in flight, not two).
   */
  readonly prefetch: boolean | "split";
  /**
   * Whole prefetch: a word of each of the next step's chunks enters a test that never holds
   * before the step's softmax update (`useEarly`), so the compiler issues their loads where the
   * source has them (the top of the step) instead of sinking them to its end.
   */
  readonly early?: boolean;
  /** With `early`, the page-table entries read ahead go early too (default true). */
  readonly earlyPages?: boolean;
  /** K or V chunks read as `KHalves` (f16 K or V of packed f16 math), not as words. */
  readonly halfChunks?: { readonly k: boolean; readonly v: boolean };
}

/** The statements of a step's loads, in the places `decodeKernelWGSL` splices them. */
export interface StepLoads {
  /** Top of the step: the step's tokens `t{u}` and its K (and V unless split) chunks. */
  readonly loads: string;
  /** Before the loop: the first step's requests (prefetch; empty otherwise). */
  readonly prefetchInit: string;
  /** After the dot products (split prefetch): the next step's K requests. */
  readonly afterDots: string;
  /** Before V is unpacked (split prefetch): this step's V chunks. */
  readonly takeV: string;
  /** End of the step (split prefetch): the next step's V requests. */
  readonly afterV: string;
  /** Before the step's softmax update (`early`): the next step's words used; empty otherwise. */
  readonly useEarly: string;
}

/**
 * The statements of a step's loads (`loads`, at the top of the step loop) and, with prefetch,
 * the first step's requests before the loop (`prefetchInit`; empty without prefetch).
 *
 * @example
 * ```ts
 * import { stepLoadsWGSL } from "./decode_loads.ts";
 * const { loads, prefetchInit } = stepLoadsWGSL({
 *   G: 8, U: 2, CPL: 1, CPLV: 1, tokenScales: false, splitV: false,
 *   kOff: (i) => ` + ${i * 16}u`, vOff: (i) => ` + ${i * 16}u`, prefetch: true,
 * });
 * console.log(loads.includes("nk1_0 = k_cache"), prefetchInit.includes("var nk0_0")); // true true
 * ```
 */
export function stepLoadsWGSL(shape: StepLoadShape): StepLoads {
  const { G, U, CPL, CPLV, tokenScales, splitV, kOff, vOff, prefetch } = shape;
  // Token u of group g within a step: U consecutive tokens per group, or tokens G apart.
  const offset = (u: number) => (shape.runs ?? false) ? `g * ${U}u + ${u}u` : `${u * G}u + g`;
  // Paged with prefetch: the page of each of a step's tokens is read one step ahead (`npg{u}`,
  // for the step after the one being requested), so the requests of K and V rows never wait for
  // a page-table read (an L2 round trip in front of every prefetch otherwise).
  const pageAhead = (shape.paged ?? false) && prefetch !== false;
  // Dense with `baseAhead`: the piece's first row read again for the step after the one just
  // requested (its index depends on the step, so the read stays in the loop), as the pages are.
  const ahead = (shape.baseAhead ?? false) && !(shape.paged ?? false) && prefetch === true;
  const runs = shape.runs ?? false;
  const pageRuns = pageAhead && runs && (shape.pageRuns ?? false);
  const aligned = pageRuns && (shape.alignedRuns ?? false);
  // Page slices: slice u of a step begins at token `at + u * G`, in page `(at + u * G) >>
  // page_shift` (at + u * G is a multiple of G, so with one slice per page that is the step's
  // first page plus u). A slice past the piece's last page reads that page again (rows past the
  // piece's end are masked).
  const S = pageAhead && !runs && !splitV ? shape.pageSlices ?? 0 : 0;
  const slices = S > 0;
  const slicePage = (at: string, u: number) =>
    S === 1
      ? `pages[min(kv_start + (${at} >> params.page_shift) + ${u}u, page_last)]`
      : `pages[min(kv_start + ((${at} + ${u * G}u) >> params.page_shift), page_last)]`;
  const sliceAddr = (page: string, at: string, u: number) =>
    `kv_slice_addr(${page}, ${at} + ${u * G}u, slice_off)`;
  // A row's place in the pages (for its per-token scales).
  const sliceRow = (page: string, at: string, u: number) =>
    S === 1
      ? `((${page} << params.page_shift) + g)`
      : `((${page} << params.page_shift) + ((${at} + ${
        u * G
      }u) & ((1u << params.page_shift) - 1u)) + g)`;
  // Loads: K and V chunks of U tokens (a token past the piece re-reads its last token; its
  // score is masked, so no load needs a branch). With prefetch, the next step's chunks are
  // requested before this step's arithmetic, so loads stay in flight through it.
  const tokenAt = (at: string, u: number) => `min(${at} + ${offset(u)}, tok_end - 1u)`;
  // The K part: the token's scales, its row addresses (kept for the V part) and K chunks.
  const issueK = (at: string, decl: string, prefix: string) =>
    lines(U, (u) => {
      const t = tokenAt(at, u);
      // Row and address functions: through the page read ahead, or from the table now. With
      // page runs, a token is in its group's first page or else in its last.
      const page = !pageRuns ? `npg${u}` : u === 0 || aligned ? "npgA" : `${prefix}pgr${u}`;
      const pick = pageRuns && !aligned && u > 0
        ? `      let ${prefix}pgr${u} = select(npgB, npgA, (${t} >> params.page_shift) == (${
          tokenAt(at, 0)
        } >> params.page_shift));\n`
        : "";
      const row = slices
        ? sliceRow(page, at, u)
        : pageAhead
        ? `kv_row_at(${page}, ${t})`
        : `kv_row(kv_start, ${t})`;
      const base = ahead && prefix === "n" ? "nkb" : "kv_start";
      const addr = (fn: string) =>
        slices
          ? sliceAddr(page, at, u)
          : pageAhead
          ? `${fn}_at(${page}, ${t}, kv_head)`
          : `${fn}(${base}, ${t}, kv_head)`;
      return `${pick}${
        tokenScales ? `      ${decl}${prefix}sc${u} = kv_scales[${row} * n_kv + kv_head];\n` : ""
      }      let ${prefix}row${u} = ${addr("kv_addr")} + lane;${
        splitV ? `\n      let ${prefix}vrow${u} = ${addr("kv_addr_v")} + lane;` : ""
      }
${
        lines(
          CPL,
          (i) => `      ${decl}${prefix}k${u}_${i} = k_cache[${prefix}row${u}${kOff(i)}];`,
        )
      }`;
    });
  // The pages (or dense base) of the step after the one just requested (prefetch).
  const pagesAfter = (at: string, decl: string) =>
    ahead
      ? `\n      ${decl}nkb = sched[f + PIECE_KV_START + (${at} >> 31u)];`
      : !pageAhead
      ? ""
      : aligned
      ? `\n      ${decl}npgA = kv_page(kv_start, ${tokenAt(at, 0)});`
      : pageRuns
      ? `\n      ${decl}npgA = kv_page(kv_start, ${tokenAt(at, 0)});
      ${decl}npgB = kv_page(kv_start, ${tokenAt(at, U - 1)});`
      : `\n${
        lines(U, (u) =>
          `      ${decl}npg${u} = ${
            slices ? slicePage(at, u) : `kv_page(kv_start, ${tokenAt(at, u)})`
          };`)
      }`;
  // The V part, from the row addresses of the K part.
  const issueV = (decl: string, prefix: string) =>
    lines(
      U,
      (u) =>
        lines(
          CPLV,
          (i) =>
            `      ${decl}${prefix}v${u}_${i} = v_cache[${prefix}${splitV ? "v" : ""}row${u}${
              vOff(i)
            }];`,
        ),
    );
  const issue = (at: string, decl: string, prefix: string) =>
    `${issueK(at, decl, prefix)}
${issueV(decl, prefix)}`;
  const tokens = lines(U, (u) => `      let t${u} = s0 + ${offset(u)};`);
  const takeK = `${lines(U, (u) => lines(CPL, (i) => `      let k${u}_${i} = nk${u}_${i};`))}${
    tokenScales ? `\n${lines(U, (u) => `      let sc${u} = nsc${u};`)}` : ""
  }`;
  const takeV = lines(U, (u) => lines(CPLV, (i) => `      let v${u}_${i} = nv${u}_${i};`));
  // The piece's last page-table entry, and this thread's fixed offset in a page.
  const sliceInit = slices
    ? `      let page_last = kv_start + ((tok_end - 1u) >> params.page_shift);
      let slice_off = kv_slice_offset(g, kv_head);
`
    : "";
  const init = ahead
    ? `      var nkb = kv_start;
${issue("tok_begin", "var ", "n")}${pagesAfter("(tok_begin + STEP)", "")}`
    : pageAhead
    ? `${sliceInit}${pagesAfter("tok_begin", "var ").slice(1)}
${issue("tok_begin", "var ", "n")}${pagesAfter("(tok_begin + STEP)", "")}`
    : issue("tok_begin", "var ", "n");
  if (prefetch === "split") {
    return {
      loads: `${tokens}
${takeK}`,
      prefetchInit: init,
      afterDots: `${issueK("(s0 + STEP)", "", "n")}${pagesAfter("(s0 + 2u * STEP)", "")}`,
      takeV,
      afterV: issueV("", "n"),
      useEarly: "",
    };
  }
  const loads = prefetch
    ? `${tokens}
${takeK}
${takeV}
${issue("(s0 + STEP)", "", "n")}${pagesAfter("(s0 + 2u * STEP)", "")}`
    : `${tokens}
${issue("s0", "let ", "")}`;
  const early = prefetch === true && (shape.early ?? false);
  const prefetchInit = !prefetch ? "" : early
    ? `${init}
    var early = 0u;`
    : init;
  return { loads, prefetchInit, afterDots: "", takeV: "", afterV: "", useEarly: useEarly(shape) };
}

/**
 * Early loads' use of the next step's words: one word of each chunk xored into `early`, tested
 * against a token no step starts at (s0 < tok_end <= 2^32 - 1), so nothing changes at run time
 * but the compiler must have the words, hence their requests, before the softmax update.
 */
function useEarly(shape: StepLoadShape): string {
  if (shape.prefetch !== true || !(shape.early ?? false)) return "";
  const { U, CPL, CPLV } = shape;
  // With per-token scales, the next step's scale pairs too, and with pages the page-table
  // entries read for the step after it (left out, their loads stay at the loop's end, and the
  // next step waits there for them all the same).
  const pages = !(shape.paged ?? false) || shape.earlyPages === false
    ? []
    : (shape.runs ?? false) && (shape.pageRuns ?? false)
    ? (shape.alignedRuns ?? false) ? ["npgA"] : ["npgA", "npgB"]
    : Array.from({ length: U }, (_, u) => `npg${u}`);
  // A word of a chunk; of `KHalves` (read as two halves), one f16 of each half, packed.
  const word = (n: string, halves: boolean) =>
    halves ? `pack2x16float(vec2<f32>(f32(${n}.lo.x), f32(${n}.hi.x)))` : `bitcast<u32>(${n}.x)`;
  const words = [
    ...Array.from(
      { length: U * CPL },
      (_, x) => word(`nk${Math.floor(x / CPL)}_${x % CPL}`, shape.halfChunks?.k ?? false),
    ),
    ...Array.from(
      { length: U * CPLV },
      (_, x) => word(`nv${Math.floor(x / CPLV)}_${x % CPLV}`, shape.halfChunks?.v ?? false),
    ),
    ...(shape.tokenScales ? Array.from({ length: U }, (_, u) => word(`nsc${u}`, false)) : []),
    ...pages,
  ];
  return `      early ^= ${words.join(" ^ ")};
      if (early == 0x9e3779b9u && s0 == 0xffffffffu) { bad[0] = 1u; }`;
}

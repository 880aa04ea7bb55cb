/**
 * A picture of a plan as SVG: one row per workgroup against the LeanTiles in global order
 * (sequence, KV head, row block, token). Each piece of a workgroup's run is a bar coloured by its
 * sequence (hue) and KV head (shade); bars that write a partial state are hatched; a tick marks
 * where a run crosses a head or sequence boundary, and the merge row underneath shows which
 * segments have their partial states reduced and how many. Readable up to a few hundred
 * workgroups; rows get thinner beyond that.
 *
 * @module
 */

import type { Plan } from "../plan/plan.ts";
import { DIRECT, PIECE, PIECE_STRIDE, REDUCE, REDUCE_STRIDE } from "../plan/schedule.ts";

/**
 * Options for {@linkcode planSvg}.
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { planSvg, type PlanSvgOptions } from "@lean/attention/cli";
 * const options: PlanSvgOptions = { width: 800, title: "one sequence" };
 * const plan = createPlan({ seqLens: [500], numHeads: 1, numKVHeads: 1, headDim: 8 }, { grid: 3 });
 * console.log(planSvg(plan, options).includes("one sequence")); // true
 * ```
 */
export interface PlanSvgOptions {
  /** Picture width in pixels (default 1100, at least 400). */
  width?: number;
  /** A title line above the plot (default: the strategy and shape). */
  title?: string;
  /** Pixels per workgroup row, 1 to 14 (default: as many as fit 640 pixels of rows, at most 14). */
  rowHeight?: number;
  /** Draw the legend under the plot (default true). */
  legend?: boolean;
}

/**
 * Fill colour of a (sequence, KV head) pair: hue by sequence (golden-angle steps, so neighbours
 * differ), shade by head (darker = lower head).
 *
 * @example
 * ```ts
 * import { segmentColour } from "@lean/attention/cli";
 * console.log(segmentColour(1, 0, 8)); // hsl(138,62%,34%)
 * ```
 */
export function segmentColour(seq: number, kvHead: number, numKVHeads: number): string {
  const hue = Math.round((seq * 137.508) % 360);
  const light = numKVHeads === 1 ? 52 : Math.round(34 + (36 * kvHead) / (numKVHeads - 1));
  return `hsl(${hue},62%,${light}%)`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const fmt = (x: number) => String(Math.round(x * 100) / 100);

/** A round tick step giving about `target` ticks over `range`. */
function tickStep(range: number, target: number): number {
  const raw = Math.max(1, range / target);
  const base = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * base >= raw) return m * base;
  return 10 * base;
}

/**
 * Draws a plan as a standalone SVG document.
 *
 * Elements carry classes so the picture can be checked: `piece` (one per schedule piece, with
 * `data-wg`, `data-seq`, `data-head`, `data-slot`), `partial` (hatching over pieces that write a
 * partial state), `cross cross-seq` / `cross cross-head` (a run crossing a sequence / head or row
 * block boundary), `merge` (one per reduced segment, `data-slots` partial states).
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { planSvg } from "@lean/attention/cli";
 * const plan = createPlan(
 *   { seqLens: [700, 90, 300], numHeads: 8, numKVHeads: 2, headDim: 64 },
 *   { grid: 12 },
 * );
 * const svg = planSvg(plan);
 * console.log(svg.startsWith("<svg"), svg.split('class="piece"').length - 1); // true 16
 * ```
 */
export function planSvg(plan: Plan, options: PlanSvgOptions = {}): string {
  const width = options.width ?? 1100;
  if (typeof width !== "number") throw new TypeError(`width must be a number: got ${typeof width}`);
  if (!Number.isInteger(width) || width < 400 || width > 20000) {
    throw new RangeError(`width must be an integer from 400 to 20000: got ${width}`);
  }
  const { problem: p, tiles, schedule: s, partition: part } = plan;
  const segStarts = part.segmentTileStarts;
  const rowBlocks = tiles.rowBlocks;
  const T = tiles.tileTokens;
  const H = p.numKVHeads;
  const W = s.workgroups;
  const numTiles = Math.max(1, plan.numTiles);
  const segmentOf = (seq: number, head: number, block: number) =>
    (seq * H + head) * rowBlocks + block;

  const left = 70;
  const right = 20;
  const plotW = width - left - right;
  const x = (tile: number) => left + (tile / numTiles) * plotW;
  const rowH = options.rowHeight ?? rowHeightFor(W);
  if (!Number.isInteger(rowH) || rowH < 1 || rowH > 14) {
    throw new RangeError(`rowHeight must be an integer from 1 to 14: got ${rowH}`);
  }
  const gap = rowH >= 6 ? 1 : 0;

  const out: string[] = [];
  const title = options.title ??
    `${plan.strategy}: ${p.numSeqs} sequences x ${H} KV heads (${p.numHeads} query heads), ` +
      `${plan.numTiles} tiles of ${T} tokens on ${W} workgroups (grid ${plan.grid})`;
  let y = 22;
  out.push(`<text x="${left}" y="${y}" class="title">${escapeXml(title)}</text>`);
  y += 18;
  out.push(
    `<text x="${left}" y="${y}" class="note">${s.pieceOffsets[W]} pieces, ` +
      `${s.partialSlots} partial states merged into ${
        s.reduce.length / REDUCE_STRIDE
      } segments</text>`,
  );

  // Sequence strip and segment (head) strip.
  y += 12;
  const seqTop = y;
  out.push(`<text x="${left - 6}" y="${seqTop + 12}" class="label" text-anchor="end">seq</text>`);
  for (let seq = 0; seq < p.numSeqs; seq++) {
    const a = segStarts[segmentOf(seq, 0, 0)];
    const b = segStarts[segmentOf(seq + 1, 0, 0)];
    const w = x(b) - x(a);
    out.push(
      `<rect class="seq" x="${fmt(x(a))}" y="${seqTop}" width="${fmt(w)}" height="16" ` +
        `fill="${segmentColour(seq, Math.floor((H - 1) / 2), H)}"><title>sequence ${seq}: ` +
        `${p.seqLens[seq]} tokens, tiles ${a}..${b}</title></rect>`,
    );
    const label = w > 90 ? `seq ${seq} (${p.seqLens[seq]} tok)` : w > 28 ? `${seq}` : "";
    if (label) {
      out.push(
        `<text x="${fmt(x(a) + w / 2)}" y="${seqTop + 12}" class="strip" text-anchor="middle">` +
          `${label}</text>`,
      );
    }
  }
  const headTop = seqTop + 18;
  out.push(`<text x="${left - 6}" y="${headTop + 9}" class="label" text-anchor="end">head</text>`);
  for (let seq = 0; seq < p.numSeqs; seq++) {
    for (let h = 0; h < H; h++) {
      const a = segStarts[segmentOf(seq, h, 0)];
      const b = segStarts[segmentOf(seq, h + 1, 0)];
      out.push(
        `<rect class="head" x="${fmt(x(a))}" y="${headTop}" width="${fmt(x(b) - x(a))}" ` +
          `height="10" fill="${segmentColour(seq, h, H)}"/>`,
      );
    }
  }

  // Rows: boundaries first, then the pieces and the crossing ticks on top.
  const top = headTop + 16;
  const rowsBottom = top + W * rowH;
  const segPixels = plotW / Math.max(1, plan.numSegments / rowBlocks);
  for (let seq = 0; seq < p.numSeqs; seq++) {
    for (let h = seq === 0 ? 1 : 0; h < H; h++) {
      const isSeq = h === 0;
      if (!isSeq && segPixels < 3) continue;
      const bx = fmt(x(segStarts[segmentOf(seq, h, 0)]));
      out.push(
        `<line class="${isSeq ? "seq-boundary" : "head-boundary"}" x1="${bx}" x2="${bx}" ` +
          `y1="${seqTop}" y2="${rowsBottom}"/>`,
      );
    }
  }
  const labelEvery = Math.max(1, Math.ceil(12 / rowH));
  for (let wg = 0; wg < W; wg += labelEvery) {
    out.push(
      `<text x="${left - 6}" y="${fmt(top + wg * rowH + rowH / 2 + 3.5)}" class="label" ` +
        `text-anchor="end">wg ${wg}</text>`,
    );
  }
  const ticks: string[] = [];
  for (let wg = 0; wg < W; wg++) {
    const rowY = top + wg * rowH;
    for (let i = s.pieceOffsets[wg]; i < s.pieceOffsets[wg + 1]; i++) {
      const o = i * PIECE_STRIDE;
      const seq = s.pieces[o + PIECE.seq];
      const head = s.pieces[o + PIECE.kvHead];
      const block = s.pieces[o + PIECE.rowBlock];
      const tokenBegin = s.pieces[o + PIECE.tokenBegin];
      const tokenEnd = s.pieces[o + PIECE.tokenEnd];
      const slot = s.pieces[o + PIECE.slot];
      const segStart = segStarts[segmentOf(seq, head, block)];
      const a = segStart + tokenBegin / T;
      const b = segStart + Math.ceil(tokenEnd / T);
      const px = x(a);
      const pw = Math.max(0.5, x(b) - px);
      const partial = slot !== DIRECT;
      const what = partial ? `partial slot ${slot}` : "writes the output";
      out.push(
        `<rect class="piece" x="${fmt(px)}" y="${rowY}" width="${fmt(pw)}" ` +
          `height="${rowH - gap}" fill="${segmentColour(seq, head, H)}" data-wg="${wg}" ` +
          `data-seq="${seq}" data-head="${head}" data-slot="${partial ? slot : "direct"}">` +
          `<title>wg ${wg}: seq ${seq} head ${head}${rowBlocks > 1 ? ` block ${block}` : ""}, ` +
          `tokens ${tokenBegin}..${tokenEnd} (tiles ${a}..${b}), ${what}</title></rect>`,
      );
      if (partial) {
        out.push(
          `<rect class="partial" x="${fmt(px)}" y="${rowY}" width="${fmt(pw)}" ` +
            `height="${rowH - gap}" fill="url(#hatch)"/>`,
        );
      }
      if (i > s.pieceOffsets[wg]) {
        const prevSeq = s.pieces[o - PIECE_STRIDE + PIECE.seq];
        const kind = prevSeq !== seq ? "cross-seq" : "cross-head";
        ticks.push(
          `<line class="cross ${kind}" x1="${fmt(px)}" x2="${fmt(px)}" y1="${rowY - 1}" ` +
            `y2="${rowY + rowH - gap + 1}"/>`,
        );
      }
    }
  }
  out.push(...ticks);

  // Merge row: one bar per segment whose partial states are reduced.
  const mergeTop = rowsBottom + 8;
  out.push(
    `<text x="${left - 6}" y="${mergeTop + 11}" class="label" text-anchor="end">merge</text>`,
  );
  for (let r = 0; r < s.reduce.length; r += REDUCE_STRIDE) {
    const seq = s.reduce[r + REDUCE.seq];
    const head = s.reduce[r + REDUCE.kvHead];
    const block = s.reduce[r + REDUCE.rowBlock];
    const slots = s.reduce[r + REDUCE.numSlots];
    const seg = segmentOf(seq, head, block);
    const mx = x(segStarts[seg]);
    const mw = Math.max(1, x(segStarts[seg + 1]) - mx);
    out.push(
      `<rect class="merge" x="${fmt(mx)}" y="${mergeTop}" width="${fmt(mw)}" height="14" ` +
        `fill="${segmentColour(seq, head, H)}" data-slots="${slots}"><title>seq ${seq} head ` +
        `${head}: ${slots} partial states (slots ${s.reduce[r + REDUCE.firstSlot]}..` +
        `${s.reduce[r + REDUCE.firstSlot] + slots - 1}) merged</title></rect>`,
    );
    if (mw >= 14) {
      out.push(
        `<text x="${fmt(mx + mw / 2)}" y="${mergeTop + 11}" class="strip" ` +
          `text-anchor="middle">${mw >= 40 ? `merge ${slots}` : slots}</text>`,
      );
    }
  }

  // Axis.
  const axisY = mergeTop + 24;
  out.push(`<line class="axis" x1="${left}" x2="${left + plotW}" y1="${axisY}" y2="${axisY}"/>`);
  const step = tickStep(numTiles, 10);
  for (let t = 0; t <= numTiles; t += step) {
    out.push(
      `<line class="axis" x1="${fmt(x(t))}" x2="${fmt(x(t))}" y1="${axisY}" y2="${axisY + 4}"/>`,
      `<text x="${fmt(x(t))}" y="${axisY + 15}" class="label" text-anchor="middle">${t}</text>`,
    );
  }
  out.push(
    `<text x="${left + plotW / 2}" y="${axisY + 31}" class="note" text-anchor="middle">` +
      `LeanTiles (${T} tokens) in order of sequence, KV head, row block, token</text>`,
  );
  let height = axisY + 40;
  if (options.legend ?? true) {
    out.push(...legend(left, axisY + 50));
    height = axisY + 80;
  }
  return svgDocument(width, height, out);
}

/** Rows of `workgroups` fitting about 640 pixels, 1 to 14 pixels each. */
function rowHeightFor(workgroups: number): number {
  return Math.max(1, Math.min(14, Math.floor(640 / Math.max(1, workgroups))));
}

/** The legend: direct and partial pieces, crossings, colours; 2 lines from `legendY`. */
function legend(left: number, legendY: number): string[] {
  const hatchX = left + 250;
  const crossX = left + 520;
  return [
    `<rect x="${left}" y="${legendY - 9}" width="22" height="10" fill="${
      segmentColour(0, 0, 1)
    }"/>`,
    `<text x="${left + 28}" y="${legendY}" class="note">piece writes the output directly</text>`,
    `<rect x="${hatchX}" y="${legendY - 9}" width="22" height="10" fill="${
      segmentColour(0, 0, 1)
    }"/>`,
    `<rect x="${hatchX}" y="${legendY - 9}" width="22" height="10" fill="url(#hatch)"/>`,
    `<text x="${hatchX + 28}" y="${legendY}" class="note">piece writes a partial state</text>`,
    `<line class="cross-seq legend" x1="${crossX}" x2="${crossX}" y1="${legendY - 11}" y2="${
      legendY + 2
    }"/>`,
    `<text x="${crossX + 6}" y="${legendY}" class="note">run crosses a sequence</text>`,
    `<line class="cross-head legend" x1="${crossX + 160}" x2="${crossX + 160}" y1="${
      legendY - 11
    }" ` +
    `y2="${legendY + 2}"/>`,
    `<text x="${crossX + 166}" y="${legendY}" class="note">crosses a head</text>`,
    `<text x="${left}" y="${legendY + 18}" class="note">colour: hue by sequence, shade by KV head` +
    ` (darker = lower head); merge row: segments whose partial states are reduced, and how many</text>`,
  ];
}

/** A standalone SVG document around `body`. */
function svgDocument(width: number, height: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<defs><pattern id="hatch" width="5" height="5" patternUnits="userSpaceOnUse" ` +
    `patternTransform="rotate(45)"><rect width="2" height="5" fill="rgba(255,255,255,0.75)"/>` +
    `</pattern></defs>`,
    `<style>.title{font-size:14px;font-weight:bold}.note{font-size:11px;fill:#333}` +
    `.label{font-size:10px;fill:#444}.strip{font-size:10px;fill:#fff}` +
    `.seq-boundary{stroke:#222;stroke-width:1}.head-boundary{stroke:#999;stroke-width:0.5;` +
    `stroke-dasharray:2,2}.cross-seq{stroke:#000;stroke-width:2}.cross-head{stroke:#555;` +
    `stroke-width:1.5}.merge{stroke:#000;stroke-width:0.75}.axis{stroke:#444}</style>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...body,
    `</svg>`,
    "",
  ].join("\n");
}

/**
 * Draws plans of one batch side by side (e.g. lean, split and single), on the same tile scale and
 * row height, under one title and one legend. Each panel is {@linkcode planSvg}'s picture.
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { planComparisonSvg } from "@lean/attention/cli";
 * const shape = { seqLens: [900, 60, 300], numHeads: 4, numKVHeads: 2, headDim: 64 };
 * const plans = (["lean", "split", "single"] as const).map((strategy) =>
 *   createPlan(shape, { strategy, grid: 8 })
 * );
 * const svg = planComparisonSvg(plans, { width: 1500 });
 * console.log(svg.split('class="panel"').length - 1); // 3
 * ```
 */
export function planComparisonSvg(plans: readonly Plan[], options: PlanSvgOptions = {}): string {
  if (!Array.isArray(plans)) throw new TypeError(`plans must be an array: got ${typeof plans}`);
  if (plans.length < 1 || plans.length > 8) {
    throw new RangeError(`plans must hold 1 to 8 plans: got ${plans.length}`);
  }
  const width = options.width ?? 1500;
  if (typeof width !== "number") throw new TypeError(`width must be a number: got ${typeof width}`);
  if (!Number.isInteger(width) || width < 400 * plans.length || width > 20000) {
    throw new RangeError(
      `width must be an integer from ${400 * plans.length} to 20000: got ${width}`,
    );
  }
  const panelW = Math.floor(width / plans.length);
  const rowHeight = options.rowHeight ??
    rowHeightFor(Math.max(...plans.map((p) => p.schedule.workgroups)));
  const p = plans[0].problem;
  const title = options.title ??
    `${p.numSeqs} sequences (${p.seqLens.join(", ")} tokens) x ${p.numKVHeads} KV heads, ` +
      `${plans[0].numTiles} tiles of ${plans[0].tiles.tileTokens} tokens, grid ${plans[0].grid}`;
  const top = 30;
  let height = 0;
  const panels = plans.map((plan, i) => {
    const runs = plan.partition.runStarts;
    let longest = 0;
    for (let w = 0; w < plan.schedule.workgroups; w++) {
      longest = Math.max(longest, runs[w + 1] - runs[w]);
    }
    const svg = planSvg(plan, {
      width: panelW,
      rowHeight,
      legend: false,
      // The longest run bounds the decode dispatch's time: the point of the comparison.
      title:
        `${plan.strategy}: ${plan.schedule.workgroups} workgroups, longest run ${longest} tiles`,
    })
      // One document, so each panel's hatch pattern needs an id of its own.
      .replaceAll('id="hatch"', `id="hatch-${i}"`).replaceAll("url(#hatch)", `url(#hatch-${i})`);
    const panelH = Number(/height="(\d+)"/.exec(svg)?.[1]);
    height = Math.max(height, panelH);
    return svg.replace("<svg ", `<svg class="panel" x="${i * panelW}" y="${top}" `);
  });
  const body = [
    `<text x="70" y="20" class="title">${escapeXml(title)}</text>`,
    ...panels,
    ...legend(70, top + height + 14),
  ];
  return svgDocument(width, top + height + 44, body);
}

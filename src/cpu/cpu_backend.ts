/**
 * The CPU backend: executes a plan exactly as the GPU does (same workgroups, pieces, tiles,
 * partial slots and merge order), one workgroup after another. It is the portable fallback and
 * the executable specification of the kernels.
 *
 * @module
 */

import { rowHooks } from "../core/variant.ts";
import { type Backend, type DeviceProfile, MAX_STREAM_RUNS } from "../plan/backend.ts";
import { decodeInputKV } from "../core/dtypes.ts";
import { keysAndValues } from "../core/values_from_keys.ts";
import type { Plan } from "../plan/plan.ts";
import { pagedElement, type PagedKV } from "../plan/kv_addressing.ts";
import type { DecodeInput, DecodeOutput } from "../core/problem.ts";
import { mergePartialRow, slotFloats } from "../core/reducer.ts";
import { DIRECT, PIECE, PIECE_STRIDE, REDUCE, REDUCE_STRIDE } from "../plan/schedule.ts";

/**
 * The CPU backend's lean grid: fixed, so CPU plans are the same on every machine.
 *
 * @example
 * ```ts
 * import { CPU_GRID } from "@lean/attention/plan";
 * console.log(CPU_GRID); // 16
 * ```
 */
export const CPU_GRID = 16;

/**
 * Row `r` of a KV group's rows of a sequence with `qLen` query tokens from `qStart`: its flat
 * query row (query head `r / qLen` of the group, query position `r % qLen`) and position.
 */
function rowIndex(
  plan: Plan,
  qStart: number,
  qLen: number,
  kvHead: number,
  r: number,
): { row: number; pos: number; head: number } {
  const { groupSize, numHeads } = plan.problem;
  const head = kvHead * groupSize + Math.floor(r / qLen);
  const pos = r % qLen;
  return { row: (qStart + pos) * numHeads + head, pos, head };
}

/**
 * Executes a plan on the CPU and returns output and LSE. Exported for tests and for callers who
 * want the plan semantics without a decoder.
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { executePlanOnCpu } from "@lean/attention/plan";
 * const input = {
 *   q: new Float32Array(8).fill(0.5), k: new Float32Array(24).fill(1), v: new Float32Array(24).fill(3),
 *   seqLens: [3], numHeads: 1, numKVHeads: 1, headDim: 8,
 * };
 * const { out } = executePlanOnCpu(createPlan(input, { grid: 2 }), input, 0.35);
 * console.log(out[0]); // 3
 * ```
 */
export function executePlanOnCpu(plan: Plan, input: DecodeInput, scale: number): DecodeOutput {
  const { k, v } = decodeInputKV(keysAndValues(input, plan.problem), plan.problem.kvDtype);
  return runSchedule(plan, input.q, k, v, scale);
}

/**
 * Runs a plan's tables on decoded K/V: dense (each piece's rows from its `kvStart`, window by
 * window) or, given `paged`, through its page tables (every row of the whole storage `k`/`v`).
 */
export function runSchedule(
  plan: Plan,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  scale: number,
  paged?: PagedKV,
): DecodeOutput {
  const { problem: p, tiles, schedule: s } = plan;
  const D = p.headDim;
  const DV = p.headDimV;
  const Rp = tiles.rowsPerBlock;
  const T = tiles.tileTokens;
  const out = new Float32Array(p.totalQueries * p.numHeads * DV);
  const lse = new Float32Array(p.totalQueries * p.numHeads);
  const stride = slotFloats(Rp, DV);
  const partials = new Float32Array(s.partialSlots * stride);
  const qScale = scale * Math.LOG2E;
  // The variant's row hooks are the CPU twin of the kernels' (src/core/variant.ts).
  const variant = p.variant;
  const m = new Float64Array(Rp);
  const l = new Float64Array(Rp);
  const o = new Float64Array(Rp * DV);
  const scores = new Float64Array(Rp * T);
  const kvRow = p.numKVHeads * D;
  const kvRowV = p.numKVHeads * DV;
  if (paged) {
    for (let w = 0; w < s.workgroups; w++) runWorkgroup(w, k, v);
  }
  for (const win of paged ? [] : s.windows) {
    // The window's rows only, as the GPU binds them: a read outside it is undefined (NaN).
    const kWin = k.subarray(win.tokenBegin * kvRow, win.tokenEnd * kvRow);
    const vWin = v.subarray(win.tokenBegin * kvRowV, win.tokenEnd * kvRowV);
    for (let w = win.workgroupBegin; w < win.workgroupEnd; w++) {
      runWorkgroup(w, kWin, vWin);
    }
  }
  function runWorkgroup(w: number, k: Float32Array, v: Float32Array): void {
    for (let pc = s.pieceOffsets[w]; pc < s.pieceOffsets[w + 1]; pc++) {
      const f = pc * PIECE_STRIDE;
      const seq = s.pieces[f + PIECE.seq];
      const kvHead = s.pieces[f + PIECE.kvHead];
      const r0 = s.pieces[f + PIECE.rowBlock] * Rp;
      const qStart = s.pieces[f + PIECE.qStart];
      const qLen = s.pieces[f + PIECE.qLen];
      const rows = Math.min(Rp, p.groupSize * qLen - r0);
      const begin = s.pieces[f + PIECE.tokenBegin];
      const end = s.pieces[f + PIECE.tokenEnd];
      const slot = s.pieces[f + PIECE.slot];
      const kvStart = s.pieces[f + PIECE.kvStart];
      const seqLen = s.pieces[f + PIECE.seqLen];
      const idx = Array.from(
        { length: rows },
        (_, i) => rowIndex(plan, qStart, qLen, kvHead, r0 + i),
      );
      // Counted from the piece's kvStart, as the kernel counts (t - P does not change).
      const hooks = idx.map((x) => rowHooks(variant, seqLen, qLen, x.pos, x.head));
      m.fill(-Infinity);
      l.fill(0);
      o.fill(0);
      for (let t0 = begin; t0 < end; t0 += T) {
        const t1 = Math.min(t0 + T, end);
        for (let i = 0; i < rows; i++) {
          const { begin: first, end: visible, logit } = hooks[i];
          const qo = idx[i].row * D;
          let tileMax = -Infinity;
          for (let t = t0; t < t1; t++) {
            let dot = -Infinity;
            if (t < visible && t >= first) {
              const ko = paged
                ? pagedElement(paged, seq, t, kvHead, p.numKVHeads, D)
                : (kvStart + t) * kvRow + kvHead * D;
              dot = 0;
              for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
              dot *= qScale;
              if (logit) dot = logit(dot * Math.LN2, t) * Math.LOG2E;
            }
            scores[i * T + t - t0] = dot;
            tileMax = Math.max(tileMax, dot);
          }
          const mNew = Math.max(m[i], tileMax);
          if (mNew === -Infinity) continue;
          const alpha = 2 ** (m[i] - mNew);
          l[i] *= alpha;
          for (let d = 0; d < DV; d++) o[i * DV + d] *= alpha;
          for (let t = t0; t < t1; t++) {
            const sc = scores[i * T + t - t0];
            if (sc === -Infinity) continue;
            const pr = 2 ** (sc - mNew);
            l[i] += pr;
            const vo = paged
              ? pagedElement(paged, seq, t, kvHead, p.numKVHeads, DV)
              : (kvStart + t) * kvRowV + kvHead * DV;
            for (let d = 0; d < DV; d++) o[i * DV + d] += pr * v[vo + d];
          }
          m[i] = mNew;
        }
      }
      for (let i = 0; i < rows; i++) {
        if (slot === DIRECT) {
          // The sink joins the final denominator, here or in the merge: exactly once.
          const fin = withSink(m[i], l[i], hooks[i].sink);
          const oo = idx[i].row * DV;
          for (let d = 0; d < DV; d++) out[oo + d] = (o[i * DV + d] * fin.c) / fin.l;
          lse[idx[i].row] = (fin.m + Math.log2(fin.l)) * Math.LN2;
        } else {
          const base = slot * stride;
          for (let d = 0; d < DV; d++) partials[base + i * DV + d] = o[i * DV + d];
          partials[base + Rp * DV + i] = m[i];
          partials[base + Rp * DV + Rp + i] = l[i];
        }
      }
    }
  }
  for (let e = 0; e < s.reduce.length; e += REDUCE_STRIDE) {
    const kvHead = s.reduce[e + REDUCE.kvHead];
    const r0 = s.reduce[e + REDUCE.rowBlock] * Rp;
    const qStart = s.reduce[e + REDUCE.qStart];
    const qLen = s.reduce[e + REDUCE.qLen];
    const rows = Math.min(Rp, p.groupSize * qLen - r0);
    for (let i = 0; i < rows; i++) {
      const { row, head } = rowIndex(plan, qStart, qLen, kvHead, r0 + i);
      lse[row] = mergePartialRow(
        partials,
        stride,
        Rp,
        DV,
        s.reduce[e + REDUCE.firstSlot],
        s.reduce[e + REDUCE.numSlots],
        i,
        out,
        row * DV,
        p.variant?.sinks?.[head],
      );
    }
  }
  return { out, lse };
}

/**
 * A final state `(m, l)` (log2 units) with a sink logit (natural units) added to its
 * denominator: the new max `m`, sum `l` and the factor `c` that rescales the output.
 */
function withSink(
  m: number,
  l: number,
  sink: number | undefined,
): { m: number; l: number; c: number } {
  if (sink === undefined) return { m, l, c: 1 };
  const s = sink * Math.LOG2E;
  const mx = Math.max(m, s);
  const c = 2 ** (m - mx);
  return { m: mx, l: l * c + 2 ** (s - mx), c };
}

/**
 * Creates the CPU backend. `maxBindingBytes` splits KV caches into windows as a GPU with that
 * binding limit would (the CPU itself has none).
 */
export function createCpuBackend(grid = CPU_GRID, maxBindingBytes?: number): Backend {
  const profile: DeviceProfile = {
    name: "cpu (TypeScript, single thread)",
    grid,
    source: grid === CPU_GRID ? "builtin" : "option",
    ...(maxBindingBytes === undefined ? {} : { maxBindingBytes }),
  };
  return {
    name: "cpu",
    profile,
    run: (plan, input, scale) => Promise.resolve(executePlanOnCpu(plan, input, scale)),
    stats: () => ({ buffersCreated: 0, buffersLive: 0, pipelinesCreated: 0 }),
    time: (plan, input, scale, { runs, warmup, streamMs = 0 }) => {
      const ms: number[] = [];
      for (let i = 0; i < warmup + runs; i++) {
        const t0 = performance.now();
        executePlanOnCpu(plan, input, scale);
        if (i >= warmup) ms.push(performance.now() - t0);
      }
      if (!(streamMs > 0)) return Promise.resolve({ samplesMs: ms, warmMs: 0, lastWarmMs: NaN });
      // Back to back as on a GPU, sized from the fastest single run.
      const fastest = Math.max(1e-3, Math.min(...ms));
      const perPass = Math.max(1, Math.min(MAX_STREAM_RUNS, Math.ceil(streamMs / fastest)));
      const stream: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        for (let k = 0; k < perPass; k++) executePlanOnCpu(plan, input, scale);
        stream.push((performance.now() - t0) / perPass);
      }
      return Promise.resolve({
        samplesMs: ms,
        warmMs: 0,
        lastWarmMs: NaN,
        streamSamplesMs: stream,
        runsPerStreamPass: perPass,
      });
    },
    dispose: () => Promise.resolve(),
  };
}

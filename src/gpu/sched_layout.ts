/**
 * How a schedule's tables sit in the one `sched` storage buffer the kernels read: one section per
 * KV window (its workgroups' piece offsets, rebased to 0, then its piece records), each at an
 * offset aligned for a storage binding, then the reduce records. Each window's decode dispatch
 * binds its own section, so the kernels see the same table format whatever the window count;
 * the merge dispatch binds the whole buffer and finds the reduce records at `reduceBase`.
 *
 * @module
 */

import { PIECE_STRIDE, type Schedule } from "../plan/schedule.ts";

/** One window's section of the `sched` buffer. */
export interface SchedSection {
  /** Byte offset of the section (a multiple of the binding alignment). */
  readonly offset: number;
  /** Bytes of the section. */
  readonly size: number;
  /** `u32` index of the first piece record inside the section (the kernel's `piece_base`). */
  readonly pieceBase: number;
  /** Workgroups of the window's decode dispatch. */
  readonly workgroups: number;
}

/** The `sched` buffer's contents and where each part is. */
export interface SchedLayout {
  readonly data: Uint32Array;
  /** One section per KV window, in window order. */
  readonly sections: readonly SchedSection[];
  /** `u32` index of the first reduce record in the whole buffer (the kernel's `reduce_base`). */
  readonly reduceBase: number;
}

/**
 * Lays out a schedule's tables with window sections aligned to `alignBytes` (the device's
 * `minStorageBufferOffsetAlignment`, at least 4).
 *
 * @example
 * ```ts
 * import { createPlan } from "@lean/attention";
 * import { schedLayout } from "./sched_layout.ts";
 * const plan = createPlan({ seqLens: [300], numHeads: 2, numKVHeads: 2, headDim: 64 }, {
 *   grid: 4, maxBindingBytes: 128 * 512,
 * });
 * const layout = schedLayout(plan.schedule, 256);
 * console.log(layout.sections.length, layout.sections[1].offset % 256); // 3 0
 * ```
 */
export function schedLayout(schedule: Schedule, alignBytes: number): SchedLayout {
  const alignWords = Math.max(1, Math.ceil(alignBytes / 4));
  const { pieceOffsets, pieces, reduce } = schedule;
  const placed: { at: number; words: number; begin: number; count: number }[] = [];
  let at = 0;
  for (const win of schedule.windows) {
    const count = win.workgroupEnd - win.workgroupBegin;
    const p0 = pieceOffsets[win.workgroupBegin];
    const p1 = pieceOffsets[win.workgroupEnd];
    const words = count + 1 + (p1 - p0) * PIECE_STRIDE;
    placed.push({ at, words, begin: win.workgroupBegin, count });
    at = Math.ceil((at + words) / alignWords) * alignWords;
  }
  const reduceBase = at;
  const data = new Uint32Array(Math.max(4, reduceBase + reduce.length));
  const sections = placed.map(({ at, words, begin, count }) => {
    const p0 = pieceOffsets[begin];
    for (let w = 0; w <= count; w++) data[at + w] = pieceOffsets[begin + w] - p0;
    data.set(
      pieces.subarray(p0 * PIECE_STRIDE, pieceOffsets[begin + count] * PIECE_STRIDE),
      at + count + 1,
    );
    return { offset: 4 * at, size: 4 * words, pieceBase: count + 1, workgroups: count };
  });
  data.set(reduce, reduceBase);
  return { data, sections, reduceBase };
}

/**
 * The softmax-rescale reducer. Online softmax is associative: a state `(m, l, o)` (running max,
 * sum of `2^(s - m)`, unnormalised output) of one token range merges with another's by rescaling
 * both to the larger max. Partial states are merged in a fixed order (ascending token position),
 * so results are bitwise reproducible whatever order the workgroups ran in.
 *
 * Scores are kept in log2 units (`s = scale * log2(e) * q.k`) so kernels use `exp2`.
 *
 * @module
 */

/**
 * Floats one partial slot holds: `o[rows][headDim]`, then `m[rows]`, then `l[rows]`.
 *
 * @example
 * ```ts
 * import { slotFloats } from "@lean/attention/plan";
 * console.log(slotFloats(4, 64)); // 264
 * ```
 */
export function slotFloats(rowsPerBlock: number, headDim: number): number {
  return rowsPerBlock * (headDim + 2);
}

/**
 * An attention state in FlashInfer's `merge_state` form: normalised output and natural LSE.
 *
 * @example
 * ```ts
 * import { type AttentionState, mergeStates } from "@lean/attention";
 * const a: AttentionState = { out: new Float32Array([1, 0]), lse: new Float32Array([0]) };
 * const b: AttentionState = { out: new Float32Array([0, 1]), lse: new Float32Array([0]) };
 * console.log(mergeStates([a, b]).out); // Float32Array [0.5, 0.5]
 * ```
 */
export interface AttentionState {
  /** Normalised output, `[rows][headDim]`. */
  out: Float32Array;
  /** Natural log-sum-exp of the scores, `[rows]`; `-Infinity` marks an empty state. */
  lse: Float32Array;
}

/**
 * Merges two or more attention states over disjoint token sets, in the order given
 * (FlashInfer's `merge_state` semantics with natural-log LSE). An empty state (`lse` of
 * `-Infinity`) is the identity.
 *
 * @example
 * ```ts
 * import { mergeStates } from "@lean/attention";
 * const a = { out: new Float32Array([1, 2]), lse: new Float32Array([0]) };
 * const b = { out: new Float32Array([3, 4]), lse: new Float32Array([0]) };
 * const m = mergeStates([a, b]);
 * console.log(m.out, m.lse); // Float32Array [2, 3], Float32Array [0.6931...]
 * ```
 */
export function mergeStates(states: readonly AttentionState[]): AttentionState {
  if (!Array.isArray(states)) throw new TypeError(`states must be an array: got ${typeof states}`);
  if (states.length === 0) throw new RangeError("states must hold at least one state: got 0");
  const rows = states[0]?.lse?.length;
  states.forEach((s, i) => {
    if (!(s?.out instanceof Float32Array) || !(s?.lse instanceof Float32Array)) {
      throw new TypeError(`states[${i}] must have Float32Array out and lse`);
    }
    if (s.lse.length !== rows || s.out.length !== states[0].out.length) {
      throw new RangeError(
        `states[${i}] must match states[0]'s shape (${rows} rows): got ${s.lse.length} rows`,
      );
    }
  });
  const dim = rows === 0 ? 0 : states[0].out.length / rows;
  if (!Number.isInteger(dim)) {
    throw new RangeError(`states[0].out length must be a multiple of its rows (${rows})`);
  }
  const out = new Float32Array(rows * dim);
  const lse = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (const s of states) max = Math.max(max, s.lse[r]);
    if (max === -Infinity) {
      lse[r] = -Infinity;
      continue;
    }
    let sum = 0;
    for (const s of states) {
      const w = Math.exp(s.lse[r] - max);
      if (w === 0) continue;
      sum += w;
      for (let d = 0; d < dim; d++) out[r * dim + d] += w * s.out[r * dim + d];
    }
    for (let d = 0; d < dim; d++) out[r * dim + d] /= sum;
    lse[r] = max + Math.log(sum);
  }
  return { out, lse };
}

/**
 * Merges the partial states `firstSlot .. firstSlot + numSlots - 1` of one row in slot order and
 * writes the normalised output and natural LSE (with no slots, the identity: output 0 and LSE
 * `-Infinity`, sinks or not: an empty request has no query to attend; a slot whose sum is NaN,
 * its rows having seen a NaN or +inf score, makes the output and LSE NaN). This is the CPU twin
 * of the merge kernel. A `sink` logit (natural units, attention sinks) joins the final denominator
 * here, once: the partial states never hold it, so they stay associative.
 *
 * @example
 * ```ts
 * import { mergePartialRow, slotFloats } from "@lean/attention/plan";
 * // Two slots of one row (rowsPerBlock 1, headDim 2): o[2], then m, then l.
 * const partials = new Float32Array([2, 0, 0, 2, 0, 2, 0, 2]); // o=(2,0) m=0 l=2; o=(0,2) m=0 l=2
 * const out = new Float32Array(2);
 * const lse = mergePartialRow(partials, slotFloats(1, 2), 1, 2, 0, 2, 0, out, 0);
 * console.log(out, lse.toFixed(4)); // Float32Array [0.5, 0.5] 1.3863
 * ```
 */
export function mergePartialRow(
  partials: Float32Array,
  slotStride: number,
  rowsPerBlock: number,
  headDim: number,
  firstSlot: number,
  numSlots: number,
  row: number,
  out: Float32Array,
  outOffset: number,
  sink?: number,
): number {
  const mOff = rowsPerBlock * headDim + row;
  const lOff = mOff + rowsPerBlock;
  if (numSlots === 0) {
    // No states (an empty request): the merge identity.
    for (let d = 0; d < headDim; d++) out[outOffset + d] = 0;
    return -Infinity;
  }
  let max = -Infinity;
  for (let i = 0; i < numSlots; i++) {
    const base = (firstSlot + i) * slotStride;
    const l = partials[base + lOff];
    if (Number.isNaN(l)) {
      // A slot whose rows saw a NaN or +inf score makes the row NaN, as in the reference.
      for (let d = 0; d < headDim; d++) out[outOffset + d] = NaN;
      return NaN;
    }
    if (l > 0) max = Math.max(max, partials[base + mOff]);
  }
  let sum = 0;
  for (let d = 0; d < headDim; d++) out[outOffset + d] = 0;
  for (let i = 0; i < numSlots; i++) {
    const base = (firstSlot + i) * slotStride;
    const l = partials[base + lOff];
    if (!(l > 0)) continue;
    const w = 2 ** (partials[base + mOff] - max);
    sum += l * w;
    const o = base + row * headDim;
    for (let d = 0; d < headDim; d++) out[outOffset + d] += w * partials[o + d];
  }
  if (sink !== undefined) {
    const s = sink * Math.LOG2E;
    const mx = Math.max(max, s);
    const c = 2 ** (max - mx);
    for (let d = 0; d < headDim; d++) out[outOffset + d] *= c;
    sum = sum * c + 2 ** (s - mx);
    max = mx;
  }
  for (let d = 0; d < headDim; d++) out[outOffset + d] /= sum;
  return (max + Math.log2(sum)) * Math.LN2;
}

/**
 * The f16 matrix prototype's data (bench/proto_hmma.ts): its shapes, inputs, check shapes and
 * timed cases, the host's merge of its pieces, a float64 reference, and the CPU emulation of its
 * arithmetic (`--emulate`).
 *
 * @module
 */

import { randomHalves } from "./bench_input.ts";
import { mulberry32 } from "./random.ts";
import { LO_SCALE, PARAM_BYTES } from "./proto_hmma_wgsl.ts";

/** One problem: `seqs` sequences of `n` tokens, `hkv` KV heads of `rows` query rows each. */
export interface Shape {
  seqs: number;
  n: number;
  hkv: number;
  rows: number;
  DK: number;
  DV: number;
}

export interface Data {
  q: Float32Array;
  k: Uint16Array;
  v: Uint16Array;
}

export const PAD_TOKENS = 64;

export function makeData(s: Shape, seed: number): Data {
  const rand = mulberry32(seed);
  const kv = (d: number, sd: number) => {
    const n = s.seqs * s.n * s.hkv * d;
    const out = new Uint16Array(n + PAD_TOKENS * s.hkv * d);
    out.set(randomHalves(n, sd));
    return out;
  };
  return {
    q: new Float32Array(s.seqs * s.hkv * s.rows * s.DK).map(() => rand() * 2 - 1),
    k: kv(s.DK, seed * 7 + 1),
    v: kv(s.DV, seed * 7 + 2),
  };
}

export const rowBlocks = (s: Shape): number => Math.ceil(s.rows / 16);
export const pieceFloats = (s: Shape): number => 16 * s.DV + 32;

export function params(s: Shape, splits: number): ArrayBuffer {
  const buf = new ArrayBuffer(PARAM_BYTES);
  new Uint32Array(buf, 0, 5).set([s.n, Math.ceil(s.n / splits), s.hkv, splits, s.rows]);
  new Float32Array(buf, 20, 1).set([Math.LOG2E / Math.sqrt(s.DK)]);
  new Uint32Array(buf, 24, 1).set([halfQueryLength(s)]);
  return buf;
}

/** Halves in each of the kernel's two query copies (rows padded to blocks of 16). */
export const halfQueryLength = (s: Shape): number => s.seqs * s.hkv * rowBlocks(s) * 16 * s.DK;

/**
 * The queries as f16 (rows padded with zeros to blocks of 16), then their f16 remainders scaled
 * by `LO_SCALE`.
 */
export function halfQueries(s: Shape, q: Float32Array): Uint16Array {
  const n = halfQueryLength(s), out = new Float16Array(2 * n);
  const padded = rowBlocks(s) * 16;
  for (let sh = 0; sh < s.seqs * s.hkv; sh++) {
    for (let r = 0; r < s.rows; r++) {
      for (let d = 0; d < s.DK; d++) {
        const x = q[(sh * s.rows + r) * s.DK + d], at = (sh * padded + r) * s.DK + d;
        out[at] = x;
        out[n + at] = (x - out[at]) * LO_SCALE;
      }
    }
  }
  return new Uint16Array(out.buffer);
}

/** The pieces merged: each row's output, `[seq][kv head][row][dim]`. */
export function merge(parts: Float32Array, s: Shape, splits: number): Float64Array {
  const out = new Float64Array(s.seqs * s.hkv * s.rows * s.DV);
  const rbs = rowBlocks(s), stride = pieceFloats(s);
  for (let sh = 0; sh < s.seqs * s.hkv; sh++) {
    for (let r = 0; r < s.rows; r++) {
      const at = (sp: number) => ((sh * rbs + Math.floor(r / 16)) * splits + sp) * stride;
      const rr = r % 16;
      let mMax = -Infinity;
      for (let sp = 0; sp < splits; sp++) mMax = Math.max(mMax, parts[at(sp) + 16 * s.DV + rr]);
      let l = 0;
      const o = new Float64Array(s.DV);
      for (let sp = 0; sp < splits; sp++) {
        const w = 2 ** (parts[at(sp) + 16 * s.DV + rr] - mMax);
        l += parts[at(sp) + 16 * s.DV + 16 + rr] * w;
        for (let d = 0; d < s.DV; d++) o[d] += parts[at(sp) + rr * s.DV + d] * w;
      }
      for (let d = 0; d < s.DV; d++) out[(sh * s.rows + r) * s.DV + d] = o[d] / l;
    }
  }
  return out;
}

/** Float64 attention over the f16 values. */
export function reference(s: Shape, data: Data): Float64Array {
  const k = new Float16Array(data.k.buffer), v = new Float16Array(data.v.buffer);
  const out = new Float64Array(s.seqs * s.hkv * s.rows * s.DV);
  const scale = 1 / Math.sqrt(s.DK);
  for (let seq = 0; seq < s.seqs; seq++) {
    for (let h = 0; h < s.hkv; h++) {
      for (let r = 0; r < s.rows; r++) {
        const qAt = ((seq * s.hkv + h) * s.rows + r) * s.DK;
        const x = new Float64Array(s.n);
        for (let t = 0; t < s.n; t++) {
          const kAt = ((seq * s.n + t) * s.hkv + h) * s.DK;
          let dot = 0;
          for (let d = 0; d < s.DK; d++) dot += data.q[qAt + d] * k[kAt + d];
          x[t] = dot * scale;
        }
        const m = Math.max(...x);
        let l = 0;
        const o = out.subarray(((seq * s.hkv + h) * s.rows + r) * s.DV).subarray(0, s.DV);
        for (let t = 0; t < s.n; t++) {
          const p = Math.exp(x[t] - m);
          l += p;
          const vAt = ((seq * s.n + t) * s.hkv + h) * s.DV;
          for (let d = 0; d < s.DV; d++) o[d] += p * v[vAt + d];
        }
        for (let d = 0; d < s.DV; d++) o[d] /= l;
      }
    }
  }
  return out;
}

export const CHECKS: { shape: Shape; splits: number[] }[] = [
  { shape: { seqs: 1, n: 64, hkv: 1, rows: 16, DK: 128, DV: 128 }, splits: [1, 2] },
  { shape: { seqs: 1, n: 80, hkv: 2, rows: 4, DK: 128, DV: 128 }, splits: [1] },
  { shape: { seqs: 2, n: 333, hkv: 2, rows: 16, DK: 128, DV: 128 }, splits: [1, 3] },
  { shape: { seqs: 1, n: 100, hkv: 1, rows: 32, DK: 576, DV: 512 }, splits: [1, 2] },
  { shape: { seqs: 1, n: 70, hkv: 1, rows: 128, DK: 576, DV: 512 }, splits: [1] },
];

/** The timed cases, each named as the benchmark case the library decodes beside it. */
export const CASES: { name: string; shape: Shape; splits: number[] }[] = [
  {
    name: "qLen4 gqa 16k",
    shape: { seqs: 1, n: 16384, hkv: 8, rows: 16, DK: 128, DV: 128 },
    splits: [33, 66],
  },
  {
    name: "gqa32/8 128k",
    shape: { seqs: 1, n: 131072, hkv: 8, rows: 4, DK: 128, DV: 128 },
    splits: [33, 66],
  },
  {
    name: "mqa h128/1 b1 32k",
    shape: { seqs: 1, n: 32768, hkv: 1, rows: 128, DK: 128, DV: 128 },
    splits: [33, 66],
  },
  {
    name: "mla b1 32k",
    shape: { seqs: 1, n: 32768, hkv: 1, rows: 128, DK: 576, DV: 512 },
    splits: [17, 33],
  },
  {
    name: "mla b8 32k",
    shape: { seqs: 8, n: 32768, hkv: 1, rows: 128, DK: 576, DV: 512 },
    splits: [4, 8],
  },
];

/**
 * The kernel's arithmetic on the CPU: its pieces and tiles of `T` tokens, queries and weights
 * rounded to f16 (with `split`, plus their f16 remainders scaled by `LO_SCALE`), products and sums
 * in float64 (the matrix units' exact products and f32 sums, less their f32 rounding).
 */
export function emulate(
  s: Shape,
  splits: number,
  data: Data,
  T: number,
  split: boolean,
): Float32Array {
  const k = new Float16Array(data.k.buffer), v = new Float16Array(data.v.buffer);
  const h16 = Math.f16round, scale = Math.LOG2E / Math.sqrt(s.DK);
  const parts = (x: number): [number, number] => {
    const hi = h16(x);
    return [hi, split ? h16((x - hi) * LO_SCALE) / LO_SCALE : 0];
  };
  const rbs = rowBlocks(s), stride = pieceFloats(s), chunk = Math.ceil(s.n / splits);
  const out = new Float32Array(s.seqs * s.hkv * rbs * splits * stride);
  for (let seq = 0; seq < s.seqs; seq++) {
    for (let h = 0; h < s.hkv; h++) {
      for (let r = 0; r < s.rows; r++) {
        const qAt = ((seq * s.hkv + h) * s.rows + r) * s.DK;
        const q = Array.from({ length: s.DK }, (_, d) => parts(data.q[qAt + d]));
        for (let sp = 0; sp < splits; sp++) {
          const t0 = Math.min(s.n, sp * chunk), t1 = Math.min(s.n, t0 + chunk);
          const base = (((seq * s.hkv + h) * rbs + Math.floor(r / 16)) * splits + sp) * stride;
          let m = -3e38, l = 0;
          const o = new Float64Array(s.DV);
          for (let t = t0; t < t1; t += T) {
            const x: number[] = [];
            for (let i = t; i < Math.min(t1, t + T); i++) {
              const kAt = ((seq * s.n + i) * s.hkv + h) * s.DK;
              let hi = 0, lo = 0;
              for (let d = 0; d < s.DK; d++) {
                hi += q[d][0] * k[kAt + d];
                lo += q[d][1] * k[kAt + d];
              }
              x.push((hi + lo) * scale);
            }
            const mNew = Math.max(m, ...x), alpha = 2 ** (m - mNew);
            m = mNew;
            l *= alpha;
            for (let d = 0; d < s.DV; d++) o[d] *= alpha;
            x.forEach((xi, j) => {
              const p = 2 ** (xi - mNew), [hi, lo] = parts(p);
              l += p;
              const vAt = ((seq * s.n + t + j) * s.hkv + h) * s.DV;
              for (let d = 0; d < s.DV; d++) o[d] += (hi + lo) * v[vAt + d];
            });
          }
          out.set(o, base + (r % 16) * s.DV);
          out[base + 16 * s.DV + (r % 16)] = m;
          out[base + 16 * s.DV + 16 + (r % 16)] = l;
        }
      }
    }
  }
  return out;
}

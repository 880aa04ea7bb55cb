/**
 * The integer-matrix prototype's problem (bench/proto_imma.ts): its shapes and data, the pieces'
 * states merged on the CPU, and the kernel's algorithm emulated on the CPU with its integer
 * products exact (`emulate`), so the arithmetic is checked against float64 on any machine.
 *
 * @module
 */

import { type DecodeInput, referenceAttention } from "../mod.ts";
import { mulberry32 } from "./random.ts";
import { PARAM_BYTES, QUANT } from "./proto_imma_wgsl.ts";

/** One problem: `seqs` sequences of `n` tokens, `hkv` KV heads of `G` query rows each. */
export interface Shape {
  seqs: number;
  n: number;
  hkv: number;
  G: number;
  D: number;
}

export interface ProtoData {
  q: Float32Array;
  k: Int8Array;
  v: Int8Array;
  kScale: number;
  vScale: number;
}

/**
 * `count` values: the first 2^20 from `next`, the rest copies of them (the timed cases' gigabytes
 * fill in a second; streaming reads do not care that the data repeats).
 */
export function filled<T extends Int8Array | Uint16Array>(out: T, next: () => number): T {
  const head = Math.min(out.length, 1 << 20);
  for (let i = 0; i < head; i++) out[i] = next();
  for (let at = head; at < out.length; at *= 2) {
    out.copyWithin(at, 0, Math.min(at, out.length - at));
  }
  return out;
}

export function makeData(s: Shape, seed: number): ProtoData {
  const rand = mulberry32(seed);
  const codes = (n: number) => filled(new Int8Array(n), () => Math.floor(rand() * 255) - 127);
  return {
    q: new Float32Array(s.seqs * s.hkv * s.G * s.D).map(() => rand() * 2 - 1),
    k: codes(s.seqs * s.n * s.hkv * s.D),
    v: codes(s.seqs * s.n * s.hkv * s.D),
    kScale: 0.02,
    vScale: 0.03,
  };
}

export function params(s: Shape, splits: number, data: ProtoData): ArrayBuffer {
  const chunk = Math.ceil(s.n / splits);
  const buf = new ArrayBuffer(PARAM_BYTES);
  new Uint32Array(buf, 0, 4).set([s.n, chunk, s.hkv, splits]);
  new Float32Array(buf, 16, 3).set([Math.LOG2E / Math.sqrt(s.D), data.kScale, data.vScale]);
  return buf;
}

/** Each piece's state: `G * D` outputs, `G` maxima (log2), `G` sums. */
export const pieceFloats = (s: Shape): number => s.G * s.D + 2 * s.G;

/** The pieces' states merged: each row's output, `[seq][kv head][row][dim]`. */
export function mergePieces(parts: ArrayLike<number>, s: Shape, splits: number): Float64Array {
  const { G, D } = s, stride = pieceFloats(s);
  const out = new Float64Array(s.seqs * s.hkv * G * D);
  for (let sh = 0; sh < s.seqs * s.hkv; sh++) {
    for (let r = 0; r < G; r++) {
      const base = (sp: number) => (sh * splits + sp) * stride;
      let mMax = -Infinity;
      for (let sp = 0; sp < splits; sp++) mMax = Math.max(mMax, parts[base(sp) + G * D + r]);
      let l = 0;
      const o = new Float64Array(D);
      for (let sp = 0; sp < splits; sp++) {
        const w = 2 ** (parts[base(sp) + G * D + r] - mMax);
        l += parts[base(sp) + G * D + G + r] * w;
        for (let d = 0; d < D; d++) o[d] += parts[base(sp) + r * D + d] * w;
      }
      for (let d = 0; d < D; d++) out[(sh * G + r) * D + d] = o[d] / l;
    }
  }
  return out;
}

/** `n` fresh values of `make`. */
const rows = <T>(n: number, make: () => T): T[] => Array.from({ length: n }, make);

/** Three signed bytes of a 24-bit integer: `x = 65536 hi + 256 mid + lo`. */
function pieces(x: number): [number, number, number] {
  const lo = ((((x + 128) % 256) + 256) % 256) - 128;
  const r1 = (x - lo) / 256;
  const mid = ((((r1 + 128) % 256) + 256) % 256) - 128;
  return [(r1 - mid) / 256, mid, lo];
}

/**
 * The kernel's algorithm on the CPU, with its integer products exact and its f32 steps rounded:
 * the pieces' states as the kernel writes them.
 */
export function emulate(s: Shape, splits: number, data: ProtoData, tau: number): Float32Array {
  const { G, D, n, hkv } = s, f = Math.fround;
  const chunk = Math.ceil(n / splits), scale = Math.LOG2E / Math.sqrt(D);
  const out = new Float32Array(s.seqs * hkv * splits * pieceFloats(s));
  for (let seq = 0; seq < s.seqs; seq++) {
    for (let h = 0; h < hkv; h++) {
      const qAt = (seq * hkv + h) * G * D;
      const qScale: number[] = [], qi: [number, number, number][][] = [];
      for (let r = 0; r < G; r++) {
        let amax = 0;
        for (let d = 0; d < D; d++) amax = Math.max(amax, Math.abs(data.q[qAt + r * D + d]));
        qScale.push(f(amax / QUANT));
        qi.push(
          Array.from(
            { length: D },
            (_, d) =>
              pieces(qScale[r] > 0 ? Math.round(f(data.q[qAt + r * D + d] / qScale[r])) : 0),
          ),
        );
      }
      for (let sp = 0; sp < splits; sp++) {
        const t0 = Math.min(n, sp * chunk), t1 = Math.min(n, t0 + chunk);
        // The kernel's tiles: references moved only past TAU, weights summed in integers
        // (exact) between moves, each move and the end adding them into f64 (the kernel's f32).
        const m = Array(G).fill(-3e38), l = Array(G).fill(0), pq = QUANT / 2 ** tau;
        const acc = Array.from({ length: G }, () => new Float64Array(D));
        const sums = Array.from({ length: G }, () => new Float64Array(D));
        const flush = (alpha: number[]) => {
          for (let r = 0; r < G; r++) {
            for (let d = 0; d < D; d++) {
              acc[r][d] = alpha[r] * (acc[r][d] + (data.vScale / pq) * sums[r][d]);
            }
            sums[r].fill(0);
          }
        };
        for (let t = t0; t < t1; t += 32) {
          const live = Math.min(32, t1 - t);
          const x = rows(G, () => new Float64Array(live));
          for (let i = 0; i < live; i++) {
            const at = ((seq * n + t + i) * hkv + h) * D;
            for (let r = 0; r < G; r++) {
              const part = [0, 0, 0];
              for (let d = 0; d < D; d++) {
                for (let p = 0; p < 3; p++) part[p] += qi[r][d][p] * data.k[at + d];
              }
              x[r][i] = (part[0] * 65536 + part[1] * 256 + part[2]) * qScale[r] * data.kScale *
                scale;
            }
          }
          const mt = x.map((xs) => Math.max(...xs));
          if (mt.some((v, r) => v > m[r] + tau)) {
            const alpha = mt.map((v, r) => (v > m[r] + tau ? 2 ** (m[r] - v) : 1));
            mt.forEach((v, r) => {
              if (v > m[r] + tau) m[r] = v;
              l[r] *= alpha[r];
            });
            flush(alpha);
          }
          for (let i = 0; i < live; i++) {
            const at = ((seq * n + t + i) * hkv + h) * D;
            for (let r = 0; r < G; r++) {
              const pi = Math.round(2 ** (x[r][i] - m[r]) * pq);
              l[r] += pi / pq;
              for (let d = 0; d < D; d++) sums[r][d] += pi * data.v[at + d];
            }
          }
        }
        flush(Array(G).fill(1));
        const base = ((seq * hkv + h) * splits + sp) * pieceFloats(s);
        for (let r = 0; r < G; r++) {
          out.set(acc[r], base + r * D);
          out[base + G * D + r] = m[r];
          out[base + G * D + G + r] = l[r];
        }
      }
    }
  }
  return out;
}

export function reference(s: Shape, data: ProtoData): Float64Array {
  return referenceAttention(decodeInput(s, data)).out;
}

export function decodeInput(s: Shape, data: ProtoData): DecodeInput {
  return {
    q: data.q,
    k: data.k,
    v: data.v,
    kvDtype: "int8",
    kScale: data.kScale,
    vScale: data.vScale,
    seqLens: Array(s.seqs).fill(s.n),
    numHeads: s.hkv * s.G,
    numKVHeads: s.hkv,
    headDim: s.D,
  };
}

/**
 * WGSL kernels of the runner's GPU backend, everything but attention (which is the library's):
 * embedding gather, RMSNorm, matmul with optional bias and residual add, RoPE with the Q/K/V
 * split, SwiGLU (or Gemma's GeGLU), Gemma 2's output norms and final soft-cap, the gather of each
 * sequence's last row, and greedy argmax. Activations are f32;
 * weight matrices are read in their stored dtype (f32, or f16/bf16 pairs packed in `u32`,
 * unpacked in the shader, so no kernel needs `shader-f16`). Deliberately simple: the matmul is
 * one 64-thread workgroup per output column with 16-byte weight loads and a tree sum, not a
 * tuned GEMM.
 *
 * Every kernel reads the step's shape from one uniform (`rows`, `seqs`, `qLen`, `histBase`) and
 * per-row data from one `u32` table: token ids at `TOK`, positions at `POS`, and per sequence its
 * batch slot at `SLOT` (where the sampled token goes; {@linkcode NO_SLOT}: do not sample).
 *
 * ```ts
 * import { matmulWGSL } from "./gpu_kernels.ts";
 * const code = matmulWGSL({ inDim: 64, outDim: 32, dtype: "BF16", rows: "rows", bias: true, accumulate: false });
 * console.log(code.includes("@compute")); // true
 * ```
 *
 * @module
 */

import type { FloatDtype } from "./safetensors.ts";

/** Token id meaning "the token this sequence sampled last". */
export const GENERATED = 0xffffffff;
/** Slot meaning "this sequence does not sample in this step". */
export const NO_SLOT = 0xffffffff;
/** Threads of the row-parallel kernels and of a matmul workgroup. */
export const THREADS = 64;
/** Rows a matmul workgroup accumulates at once (more rows loop). */
const ROW_BLOCK = 8;

/** Offsets of the step table's regions (in `u32`), for a batch shape. */
export interface TableLayout {
  maxRows: number;
  maxSeqs: number;
}

/** The step uniform every kernel reads (binding 0 of group 0). */
export const STEP = `struct Step { rows: u32, seqs: u32, qLen: u32, histBase: u32 }
@group(0) @binding(0) var<uniform> step: Step;`;

/** `index(g, n)`: the flat thread index of a 2-D dispatch of {@linkcode THREADS}-thread groups. */
export const INDEX =
  `fn index(g: vec3<u32>, n: vec3<u32>) -> u32 { return g.x + g.y * n.x * ${THREADS}u; }`;

/** Loads 4 consecutive weights starting at element `4 i` as f32. */
function load4(dtype: FloatDtype): { type: string; body: string } {
  if (dtype === "F32") return { type: "vec4<f32>", body: "return w[i];" };
  const unpack = dtype === "F16"
    ? "vec4<f32>(unpack2x16float(p.x), unpack2x16float(p.y))"
    : "vec4<f32>(bitcast<f32>(p.x << 16u), bitcast<f32>(p.x & 0xffff0000u), bitcast<f32>(p.y << 16u), bitcast<f32>(p.y & 0xffff0000u))";
  return { type: "vec2<u32>", body: `let p = w[i];\n  return ${unpack};` };
}

/**
 * `x[row] = embedding[token(row)] * scale`: one thread per 2 elements (`scale` 1 but for Gemma 2,
 * `sqrt(hidden)` rounded to f32).
 */
export function embedWGSL(
  hidden: number,
  dtype: FloatDtype,
  t: TableLayout,
  scale = 1,
): string {
  const read = dtype === "F32"
    ? "vec2<f32>(emb[2u * e], emb[2u * e + 1u])"
    : dtype === "F16"
    ? "unpack2x16float(emb[e])"
    : "vec2<f32>(bitcast<f32>(emb[e] << 16u), bitcast<f32>(emb[e] & 0xffff0000u))";
  return `${STEP}
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> next: array<u32>;
@group(0) @binding(3) var<storage, read> emb: array<${dtype === "F32" ? "f32" : "u32"}>;
@group(0) @binding(4) var<storage, read_write> x: array<vec2<f32>>;
${INDEX}
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let i = index(g, n);
  if (i >= step.rows * ${hidden / 2}u) { return; }
  let r = i / ${hidden / 2}u;
  var tok = table[r];
  if (tok == ${GENERATED}u) { tok = next[table[${2 * t.maxRows}u + r / step.qLen]]; }
  let e = tok * ${hidden / 2}u + i % ${hidden / 2}u;
  x[i] = ${scale === 1 ? read : `${read} * ${f32(scale)}`};
}`;
}

/**
 * `tanh` written out: drivers' `tanh` (as `(e^2x - 1) / (e^2x + 1)`) loses the relative precision
 * of small arguments. A Taylor series below 1/8, `(1 - e^-2a) / (1 + e^-2a)` above.
 */
const TANH = `
fn tanh_f32(x: f32) -> f32 {
  let a = min(abs(x), 15.0);
  let e = exp(-2.0 * a);
  var t = (1.0 - e) / (1.0 + e);
  if (a < 0.125) {
    let a2 = a * a;
    t = a * (1.0 + a2 * (-0.33333334 + a2 * (0.13333334 + a2 * -0.053968254)));
  }
  return select(-t, t, x >= 0.0);
}`;

/** A WGSL f32 literal that is exactly `x` (an f32 value). */
export function f32(x: number): string {
  return `bitcast<f32>(${new Uint32Array(Float32Array.of(x).buffer)[0]}u)`;
}

/** RMSNorm, one workgroup per row: `y = x * rsqrt(mean(x^2) + eps) * w`. */
export function rmsnormWGSL(hidden: number, eps: number): string {
  return `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let base = wid.x * ${hidden}u;
  var s = 0.0;
  for (var i = t; i < ${hidden}u; i += ${THREADS}u) { let v = x[base + i]; s += v * v; }
  part[t] = s;
  for (var k = ${THREADS / 2}u; k > 0u; k >>= 1u) {
    workgroupBarrier();
    if (t < k) { part[t] += part[t + k]; }
  }
  workgroupBarrier();
  let inv = inverseSqrt(part[0] / ${hidden}.0 + ${eps.toExponential()});
  for (var i = t; i < ${hidden}u; i += ${THREADS}u) { y[base + i] = (x[base + i] * inv) * w[i]; }
}`;
}

/** What a matmul computes. */
export interface MatmulSpec {
  inDim: number;
  outDim: number;
  dtype: FloatDtype;
  /** Rows from the step: all rows, or one per sequence (the last-row logits). */
  rows: "rows" | "seqs";
  /** Add a bias vector (binding 3). */
  bias: boolean;
  /** Add the result to `y` (the residual stream) instead of overwriting it. */
  accumulate: boolean;
}

/**
 * `y[r][o] (+)= x[r] . w[o] (+ bias[o])`, `w` output-major (`nn.Linear`): one workgroup per
 * output column (2-D dispatch past 65,535), its threads striding over the input in 16-byte loads,
 * rows in blocks of 8, then a tree sum per row.
 */
export function matmulWGSL(s: MatmulSpec): string {
  const n4 = s.inDim / 4;
  const { type, body } = load4(s.dtype);
  const T = THREADS, R = ROW_BLOCK;
  const result = `part[t * ${T}u] ${s.bias ? "+ bias[o]" : ""}`;
  return `${STEP}
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<${type}>;
${s.bias ? "@group(0) @binding(3) var<storage, read> bias: array<f32>;" : ""}
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, ${T * R}>;
fn load(i: u32) -> vec4<f32> {
  ${body}
}
@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let o = wid.x + wid.y * nw.x;
  if (o >= ${s.outDim}u) { return; }
  let rows = step.${s.rows};
  for (var r0 = 0u; r0 < rows; r0 += ${R}u) {
    var acc = array<f32, ${R}>();
    for (var i = t; i < ${n4}u; i += ${T}u) {
      let wv = load(o * ${n4}u + i);
      for (var r = 0u; r < ${R}u; r++) {
        if (r0 + r < rows) { acc[r] += dot(x[(r0 + r) * ${n4}u + i], wv); }
      }
    }
    for (var r = 0u; r < ${R}u; r++) { part[r * ${T}u + t] = acc[r]; }
    for (var k = ${T / 2}u; k > 0u; k >>= 1u) {
      workgroupBarrier();
      if (t < k) {
        for (var r = 0u; r < ${R}u; r++) { part[r * ${T}u + t] += part[r * ${T}u + t + k]; }
      }
    }
    workgroupBarrier();
    if (t < ${R}u && r0 + t < rows) {
      let at = (r0 + t) * ${s.outDim}u + o;
      y[at] = ${s.accumulate ? `y[at] + (${result})` : result};
    }
    workgroupBarrier();
  }
}`;
}

/**
 * Splits the projected `[row][q | k | v]` into `q [row][head][dim]`, `k`, `v [row][kvHead][dim]`,
 * rotating q and k by RoPE at each row's position (`rotate_half`: element `i` with
 * `i + headDim / 2`), cos/sin from the host's table `[position][headDim / 2]`.
 */
export function ropeWGSL(heads: number, kvHeads: number, headDim: number, t: TableLayout): string {
  const half = headDim / 2;
  const all = heads + 2 * kvHeads;
  return `${STEP}
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> cosT: array<f32>;
@group(0) @binding(4) var<storage, read> sinT: array<f32>;
@group(0) @binding(5) var<storage, read_write> q: array<f32>;
@group(0) @binding(6) var<storage, read_write> k: array<f32>;
@group(0) @binding(7) var<storage, read_write> v: array<f32>;
${INDEX}
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let idx = index(g, n);
  if (idx >= step.rows * ${all * half}u) { return; }
  let r = idx / ${all * half}u;
  let head = (idx / ${half}u) % ${all}u;
  let i = idx % ${half}u;
  let src = r * ${all * headDim}u + head * ${headDim}u + i;
  let a = qkv[src];
  let b = qkv[src + ${half}u];
  if (head >= ${heads + kvHeads}u) {
    let o = (r * ${kvHeads}u + head - ${heads + kvHeads}u) * ${headDim}u + i;
    v[o] = a;
    v[o + ${half}u] = b;
    return;
  }
  let at = table[${t.maxRows}u + r] * ${half}u + i;
  let c = cosT[at];
  let s = sinT[at];
  let lo = a * c - b * s;
  let hi = b * c + a * s;
  if (head < ${heads}u) {
    let o = (r * ${heads}u + head) * ${headDim}u + i;
    q[o] = lo;
    q[o + ${half}u] = hi;
  } else {
    let o = (r * ${kvHeads}u + head - ${heads}u) * ${headDim}u + i;
    k[o] = lo;
    k[o + ${half}u] = hi;
  }
}`;
}

/**
 * The gated activation: `h = act(gate) * up` from `[row][gate | up]`, SwiGLU (`silu`) or Gemma's
 * GeGLU (`gelu` with the tanh approximation, PyTorch's `gelu_pytorch_tanh`).
 */
export function swigluWGSL(ffn: number, act: "silu" | "gelu_tanh" = "silu"): string {
  const activated = act === "silu"
    ? "(gate / (1.0 + exp(-gate)))"
    : "(0.5 * gate * (1.0 + tanh_f32(0.7978845608028654 * (gate + 0.044715 * gate * gate * gate))))";
  return `${STEP}
@group(0) @binding(1) var<storage, read> gu: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;
${INDEX}${act === "silu" ? "" : TANH}
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let i = index(g, n);
  if (i >= step.rows * ${ffn}u) { return; }
  let r = i / ${ffn}u;
  let j = i % ${ffn}u;
  let gate = gu[r * ${2 * ffn}u + j];
  h[i] = ${activated} * gu[r * ${2 * ffn}u + ${ffn}u + j];
}`;
}

/**
 * Gemma 2's sublayer output norm: `x += rmsnorm(t) * w` (the norm's weight holds `1 + w`), one
 * workgroup per row.
 */
export function normAddWGSL(hidden: number, eps: number): string {
  return `@group(0) @binding(0) var<storage, read> t: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
var<workgroup> part: array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let base = wid.x * ${hidden}u;
  var s = 0.0;
  for (var i = l; i < ${hidden}u; i += ${THREADS}u) { let v = t[base + i]; s += v * v; }
  part[l] = s;
  for (var k = ${THREADS / 2}u; k > 0u; k >>= 1u) {
    workgroupBarrier();
    if (l < k) { part[l] += part[l + k]; }
  }
  workgroupBarrier();
  let inv = inverseSqrt(part[0] / ${hidden}.0 + ${eps.toExponential()});
  for (var i = l; i < ${hidden}u; i += ${THREADS}u) { x[base + i] += (t[base + i] * inv) * w[i]; }
}`;
}

/** Gemma 2's final logit soft-cap: `logits = cap * tanh(logits / cap)` for each sequence's row. */
export function softcapWGSL(vocab: number, cap: number): string {
  return `${STEP}
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
${INDEX}${TANH}
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let i = index(g, n);
  if (i >= step.seqs * ${vocab}u) { return; }
  logits[i] = tanh_f32(logits[i] / ${f32(cap)}) * ${f32(cap)};
}`;
}

/** Copies each sequence's last row (`qpos = qLen - 1`) of the residual stream. */
export function lastRowsWGSL(hidden: number): string {
  return `${STEP}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> last: array<f32>;
${INDEX}
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let i = index(g, n);
  if (i >= step.seqs * ${hidden}u) { return; }
  let s = i / ${hidden}u;
  last[i] = x[(s * step.qLen + step.qLen - 1u) * ${hidden}u + i % ${hidden}u];
}`;
}

/**
 * Greedy sampling, one workgroup per sequence: the first index of the largest logit (as
 * `torch.argmax`), to `next[slot]` and `history[histBase + slot]`.
 */
export function argmaxWGSL(vocab: number, t: TableLayout): string {
  return `${STEP}
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> next: array<u32>;
@group(0) @binding(4) var<storage, read_write> history: array<u32>;
var<workgroup> bestV: array<f32, ${THREADS}>;
var<workgroup> bestI: array<u32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let s = wid.x;
  var bv = -3.4e38;
  var bi = 0u;
  for (var j = t; j < ${vocab}u; j += ${THREADS}u) {
    let v = logits[s * ${vocab}u + j];
    if (v > bv) { bv = v; bi = j; }
  }
  bestV[t] = bv;
  bestI[t] = bi;
  for (var k = ${THREADS / 2}u; k > 0u; k >>= 1u) {
    workgroupBarrier();
    if (t < k) {
      let ov = bestV[t + k];
      let oi = bestI[t + k];
      if (ov > bestV[t] || (ov == bestV[t] && oi < bestI[t])) { bestV[t] = ov; bestI[t] = oi; }
    }
  }
  let slot = table[${2 * t.maxRows}u + s];
  if (t == 0u && slot != ${NO_SLOT}u) {
    next[slot] = bestI[0];
    history[step.histBase + slot] = bestI[0];
  }
}`;
}

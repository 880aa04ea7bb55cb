/**
 * WGSL kernels of the decode-loop example's llama-style model: weight init from a seeded hash,
 * embedding, RMSNorm, matmul, RoPE (with the Q/K/V split), SwiGLU and greedy argmax. All `f32`,
 * deliberately simple (one thread per output column); shapes are baked in as constants.
 *
 * @module
 */

/** Model dimensions every kernel is specialised for. */
export interface ModelDims {
  /** Residual width. */
  dim: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** MLP hidden width. */
  ffn: number;
  vocab: number;
  /** Rows per step (the batch). */
  rows: number;
}

/** Token id meaning "use the token the model generated". */
export const GENERATED = 0xffffffff;

const HASH = `
fn hash(x: u32) -> u32 {
  var h = x * 0x9e3779b9u;
  h = (h ^ (h >> 16u)) * 0x21f0aaadu;
  h = (h ^ (h >> 15u)) * 0x735a2d97u;
  return h ^ (h >> 15u);
}`;

/** `w[i] = offset + scale * u(seed, i)`, `u` uniform in `[-1, 1)`; 2-D dispatch of 256-wide groups. */
export function initWGSL(): string {
  return `${HASH}
struct P { n: u32, seed: u32, scale: f32, offset: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let i = g.x + g.y * n.x * 256u;
  if (i >= p.n) { return; }
  let u = f32(hash(i ^ hash(p.seed)) >> 8u) / 8388608.0 - 1.0;
  w[i] = p.offset + p.scale * u;
}`;
}

/** `x[r] = emb[token(r)]`, the token forced by the host or else the generated one. */
export function embedWGSL(d: ModelDims): string {
  return `@group(0) @binding(0) var<storage, read> forced: array<u32>;
@group(0) @binding(1) var<storage, read> next: array<u32>;
@group(0) @binding(2) var<storage, read> emb: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= ${d.rows * d.dim}u) { return; }
  let r = i / ${d.dim}u;
  let tok = select(next[r], forced[r], forced[r] != ${GENERATED}u);
  x[i] = emb[tok * ${d.dim}u + i % ${d.dim}u];
}`;
}

/** RMSNorm of each row (one workgroup per row). */
export function rmsnormWGSL(d: ModelDims): string {
  return `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * ${d.dim}u;
  var s = 0.0;
  for (var i = lid; i < ${d.dim}u; i += 64u) { let v = x[base + i]; s += v * v; }
  part[lid] = s;
  workgroupBarrier();
  for (var k = 32u; k > 0u; k >>= 1u) {
    if (lid < k) { part[lid] += part[lid + k]; }
    workgroupBarrier();
  }
  let inv = inverseSqrt(part[0] / ${d.dim}.0 + 1e-5);
  for (var i = lid; i < ${d.dim}u; i += 64u) { y[base + i] = x[base + i] * inv * w[i]; }
}`;
}

/** Threads of a matmul workgroup (one workgroup per output column). */
export const MATMUL_THREADS = 64;

/**
 * `y[r][o] (+)= sum_i x[r][i] * w[o][i]`: one workgroup per output column `o` (dispatch
 * `outDim` workgroups), its threads striding over `i` (contiguous weight reads), then a tree sum
 * per row. The weights are stored output-major so every workgroup streams one contiguous row.
 */
export function matmulWGSL(
  rows: number,
  inDim: number,
  outDim: number,
  accumulate: boolean,
): string {
  const T = MATMUL_THREADS;
  return `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
var<workgroup> part: array<f32, ${T * rows}>;
@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let o = wid.x;
  if (o >= ${outDim}u) { return; }
  var acc = array<f32, ${rows}>();
  for (var i = t; i < ${inDim}u; i += ${T}u) {
    let wv = w[o * ${inDim}u + i];
    for (var r = 0u; r < ${rows}u; r++) { acc[r] += x[r * ${inDim}u + i] * wv; }
  }
  for (var r = 0u; r < ${rows}u; r++) { part[r * ${T}u + t] = acc[r]; }
  for (var half = ${T / 2}u; half > 0u; half >>= 1u) {
    workgroupBarrier();
    if (t < half) {
      for (var r = 0u; r < ${rows}u; r++) { part[r * ${T}u + t] += part[r * ${T}u + t + half]; }
    }
  }
  workgroupBarrier();
  for (var r = t; r < ${rows}u; r += ${T}u) {
    y[r * ${outDim}u + o] = ${accumulate ? `y[r * ${outDim}u + o] + ` : ""}part[r * ${T}u];
  }
}`;
}

/**
 * Splits the fused QKV rows into `q [row][head][dim]`, `k` and `v [row][kvHead][dim]`, rotating
 * q and k by RoPE (interleaved pairs, base 10000) at each row's position.
 */
export function ropeWGSL(d: ModelDims): string {
  const qkv = (d.heads + 2 * d.kvHeads) * d.headDim;
  return `@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> pos: array<u32>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<storage, read_write> k: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let pair = g.x;
  if (pair >= ${d.rows * qkv / 2}u) { return; }
  let r = pair / ${qkv / 2}u;
  let e = (pair % ${qkv / 2}u) * 2u;
  let head = e / ${d.headDim}u;
  let i = (e % ${d.headDim}u) / 2u;
  let a = qkv[r * ${qkv}u + e];
  let b = qkv[r * ${qkv}u + e + 1u];
  let angle = f32(pos[r]) * pow(10000.0, -2.0 * f32(i) / ${d.headDim}.0);
  let c = cos(angle);
  let s = sin(angle);
  if (head < ${d.heads}u) {
    let o = r * ${d.heads * d.headDim}u + e;
    q[o] = a * c - b * s;
    q[o + 1u] = a * s + b * c;
  } else if (head < ${d.heads + d.kvHeads}u) {
    let o = r * ${d.kvHeads * d.headDim}u + e - ${d.heads * d.headDim}u;
    k[o] = a * c - b * s;
    k[o + 1u] = a * s + b * c;
  } else {
    let o = r * ${d.kvHeads * d.headDim}u + e - ${(d.heads + d.kvHeads) * d.headDim}u;
    v[o] = a;
    v[o + 1u] = b;
  }
}`;
}

/** SwiGLU: `h = silu(gate) * up` from the fused `[row][gate | up]` rows. */
export function swigluWGSL(d: ModelDims): string {
  return `@group(0) @binding(0) var<storage, read> gu: array<f32>;
@group(0) @binding(1) var<storage, read_write> h: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= ${d.rows * d.ffn}u) { return; }
  let r = i / ${d.ffn}u;
  let j = i % ${d.ffn}u;
  let gate = gu[r * ${2 * d.ffn}u + j];
  h[i] = gate / (1.0 + exp(-gate)) * gu[r * ${2 * d.ffn}u + ${d.ffn}u + j];
}`;
}

/** Greedy sampling: the first index of each row's largest logit, to `next` and the history. */
export function argmaxWGSL(d: ModelDims): string {
  return `struct P { step: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> next: array<u32>;
@group(0) @binding(3) var<storage, read_write> history: array<u32>;
var<workgroup> best_v: array<f32, 64>;
var<workgroup> best_i: array<u32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x;
  var bv = -3.4e38;
  var bi = 0u;
  for (var j = lid; j < ${d.vocab}u; j += 64u) {
    let v = logits[r * ${d.vocab}u + j];
    if (v > bv) { bv = v; bi = j; }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  workgroupBarrier();
  for (var k = 32u; k > 0u; k >>= 1u) {
    if (lid < k) {
      let ov = best_v[lid + k];
      let oi = best_i[lid + k];
      if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
        best_v[lid] = ov;
        best_i[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    next[r] = best_i[0];
    history[p.step * ${d.rows}u + r] = best_i[0];
  }
}`;
}

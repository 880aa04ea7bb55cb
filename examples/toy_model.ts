/**
 * The decode-loop example's llama-style model on the GPU (examples/decode_loop.ts): random weights
 * generated from a seed, one row of activations per sequence, and the dispatches of a step around
 * the attention, which the example leaves to `@lean/attention`'s runner API. Its kernels are in
 * examples/model_kernels.ts.
 *
 * @module
 */

import {
  argmaxWGSL,
  embedWGSL,
  initWGSL,
  matmulWGSL,
  type ModelDims,
  rmsnormWGSL,
  ropeWGSL,
  swigluWGSL,
} from "./model_kernels.ts";

/** Model shape. */
export interface ModelConfig {
  dim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  vocab: number;
}

/** The CI shape: runs in seconds on a software adapter. */
export const SMALL_MODEL: ModelConfig = {
  dim: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 128,
  vocab: 256,
};
/** A ~1B-parameter shape (head dim 128, GQA 4:1) for GPUs. */
export const LARGE_MODEL: ModelConfig = {
  dim: 2048,
  layers: 16,
  heads: 16,
  kvHeads: 4,
  ffn: 5632,
  vocab: 32000,
};

/** `GPUBufferUsage` flags (spelled out: the constants are not global in every runtime). */
export const USAGE = {
  MAP_READ: 1,
  COPY_SRC: 4,
  COPY_DST: 8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;
const STORAGE = USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC;

/** The model on a device, for a batch of `rows` sequences. */
export interface ToyModel {
  readonly headDim: number;
  /** This step's query rows `[seq][head][dim]` (f32), written by {@linkcode encodeQKV}. */
  readonly q: GPUBuffer;
  /** This step's new K and V rows `[seq][kvHead][dim]` (f32), to append to the KV cache. */
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  /** The attention's output `[seq][head][dim]` (f32), read by {@linkcode encodeMLP}. */
  readonly attn: GPUBuffer;
  /**
   * Writes a step's inputs: each sequence's forced token (its next prompt token, or
   * `GENERATED` for the token the model generated last) and position.
   */
  setStep(
    step: number,
    forced: Uint32Array<ArrayBuffer>,
    positions: Uint32Array<ArrayBuffer>,
  ): void;
  /** The token embedding. */
  encodeEmbed(pass: GPUComputePassEncoder): void;
  /** A layer up to the attention: RMSNorm, the QKV projection, RoPE. */
  encodeQKV(pass: GPUComputePassEncoder, layer: number): void;
  /** A layer after the attention: the output projection, RMSNorm and the SwiGLU MLP. */
  encodeMLP(pass: GPUComputePassEncoder, layer: number): void;
  /** The final norm, the LM head and greedy sampling (into the token history). */
  encodeHead(pass: GPUComputePassEncoder): void;
  /** A storage buffer of `floats` floats, destroyed with the model. */
  buffer(floats: number, usage?: number): GPUBuffer;
  /** The tokens sampled at each step, `[step][seq]`. */
  readHistory(): Promise<Uint32Array>;
  destroy(): void;
}

/** Builds the model: weights from `seed`, activations for `rows` sequences and `steps` steps. */
export function createToyModel(
  device: GPUDevice,
  m: ModelConfig,
  rows: number,
  steps: number,
  seed = 1,
): ToyModel {
  const headDim = m.dim / m.heads;
  const d: ModelDims = { ...m, headDim, rows };
  const qkvDim = (m.heads + 2 * m.kvHeads) * headDim;
  const buffers: GPUBuffer[] = [];
  const buffer = (floats: number, usage: number = STORAGE) => {
    const b = device.createBuffer({ size: Math.max(16, 4 * floats), usage });
    buffers.push(b);
    return b;
  };
  const pipeline = (code: string) =>
    device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
    });
  const group = (p: GPUComputePipeline, list: GPUBuffer[]) =>
    device.createBindGroup({
      layout: p.getBindGroupLayout(0),
      entries: list.map((b, binding) => ({ binding, resource: { buffer: b } })),
    });

  // Weights, generated on the GPU from the seed.
  const init = pipeline(initWGSL());
  const initParams = buffer(4, USAGE.UNIFORM | USAGE.COPY_DST);
  let tensor = 0;
  const weight = (n: number, scale: number, offset = 0) => {
    const b = buffer(n);
    const p = new ArrayBuffer(16);
    new Uint32Array(p).set([n, seed * 1000 + tensor++]);
    new Float32Array(p).set([scale, offset], 2);
    device.queue.writeBuffer(initParams, 0, p);
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(init);
    pass.setBindGroup(0, group(init, [initParams, b]));
    const groups = Math.ceil(n / 256);
    const y = Math.ceil(groups / 65535);
    pass.dispatchWorkgroups(Math.ceil(groups / y), y);
    pass.end();
    device.queue.submit([enc.finish()]);
    return b;
  };
  const emb = weight(m.vocab * m.dim, 1);
  const layers = Array.from({ length: m.layers }, () => ({
    attnNorm: weight(m.dim, 0, 1),
    wqkv: weight(m.dim * qkvDim, 1 / Math.sqrt(m.dim)),
    wo: weight(m.heads * headDim * m.dim, 1 / Math.sqrt(m.dim)),
    mlpNorm: weight(m.dim, 0, 1),
    wgu: weight(m.dim * 2 * m.ffn, 1 / Math.sqrt(m.dim)),
    wd: weight(m.ffn * m.dim, 1 / Math.sqrt(m.ffn)),
  }));
  const finalNorm = weight(m.dim, 0, 1);
  const lmHead = weight(m.dim * m.vocab, 1 / Math.sqrt(m.dim));

  // Activations (one row per sequence) and step inputs.
  const x = buffer(rows * m.dim);
  const xn = buffer(rows * m.dim);
  const qkv = buffer(rows * qkvDim);
  const q = buffer(rows * m.heads * headDim);
  const k = buffer(rows * m.kvHeads * headDim);
  const v = buffer(rows * m.kvHeads * headDim);
  const attn = buffer(rows * m.heads * headDim);
  const gu = buffer(rows * 2 * m.ffn);
  const h = buffer(rows * m.ffn);
  const logits = buffer(rows * m.vocab);
  const forced = buffer(rows);
  const pos = buffer(rows);
  const next = buffer(rows);
  const history = buffer(steps * rows);
  const stepParams = buffer(4, USAGE.UNIFORM | USAGE.COPY_DST);

  const p = {
    embed: pipeline(embedWGSL(d)),
    norm: pipeline(rmsnormWGSL(d)),
    qkv: pipeline(matmulWGSL(rows, m.dim, qkvDim, false)),
    rope: pipeline(ropeWGSL(d)),
    wo: pipeline(matmulWGSL(rows, m.heads * headDim, m.dim, true)),
    gu: pipeline(matmulWGSL(rows, m.dim, 2 * m.ffn, false)),
    swiglu: pipeline(swigluWGSL(d)),
    wd: pipeline(matmulWGSL(rows, m.ffn, m.dim, true)),
    lm: pipeline(matmulWGSL(rows, m.dim, m.vocab, false)),
    argmax: pipeline(argmaxWGSL(d)),
  };
  const g = {
    embed: group(p.embed, [forced, next, emb, x]),
    layers: layers.map((w) => ({
      attnNorm: group(p.norm, [x, w.attnNorm, xn]),
      qkv: group(p.qkv, [xn, w.wqkv, qkv]),
      rope: group(p.rope, [qkv, pos, q, k, v]),
      wo: group(p.wo, [attn, w.wo, x]),
      mlpNorm: group(p.norm, [x, w.mlpNorm, xn]),
      gu: group(p.gu, [xn, w.wgu, gu]),
      swiglu: group(p.swiglu, [gu, h]),
      wd: group(p.wd, [h, w.wd, x]),
    })),
    finalNorm: group(p.norm, [x, finalNorm, xn]),
    lm: group(p.lm, [xn, lmHead, logits]),
    argmax: group(p.argmax, [stepParams, logits, next, history]),
  };
  const run = (
    pass: GPUComputePassEncoder,
    pl: GPUComputePipeline,
    bg: GPUBindGroup,
    n: number,
  ) => {
    pass.setPipeline(pl);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(n);
  };
  const wg = (n: number) => Math.ceil(n / 64);
  const stepHost = new Uint32Array(4);

  return {
    headDim,
    q,
    k,
    v,
    attn,
    setStep(step, forcedTokens, positions) {
      stepHost[0] = step;
      device.queue.writeBuffer(forced, 0, forcedTokens);
      device.queue.writeBuffer(pos, 0, positions);
      device.queue.writeBuffer(stepParams, 0, stepHost);
    },
    encodeEmbed(pass) {
      run(pass, p.embed, g.embed, wg(rows * m.dim));
    },
    encodeQKV(pass, layer) {
      const lg = g.layers[layer];
      run(pass, p.norm, lg.attnNorm, rows);
      run(pass, p.qkv, lg.qkv, qkvDim);
      run(pass, p.rope, lg.rope, wg((rows * qkvDim) / 2));
    },
    encodeMLP(pass, layer) {
      const lg = g.layers[layer];
      run(pass, p.wo, lg.wo, m.dim);
      run(pass, p.norm, lg.mlpNorm, rows);
      run(pass, p.gu, lg.gu, 2 * m.ffn);
      run(pass, p.swiglu, lg.swiglu, wg(rows * m.ffn));
      run(pass, p.wd, lg.wd, m.dim);
    },
    encodeHead(pass) {
      run(pass, p.norm, g.finalNorm, rows);
      run(pass, p.lm, g.lm, m.vocab);
      run(pass, p.argmax, g.argmax, rows);
    },
    buffer,
    async readHistory() {
      return new Uint32Array((await readFloats(device, history, steps * rows)).buffer);
    },
    destroy() {
      for (const b of buffers) b.destroy();
    },
  };
}

/** Copies `floats` floats of `src` back to the host. */
export async function readFloats(
  device: GPUDevice,
  src: GPUBuffer,
  floats: number,
): Promise<Float32Array> {
  const staging = device.createBuffer({
    size: Math.max(16, 4 * floats),
    usage: USAGE.MAP_READ | USAGE.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, 4 * floats);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(USAGE.MAP_READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out.subarray(0, floats);
}

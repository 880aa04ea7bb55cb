/**
 * Setting up the runner's GPU backend: weights uploaded in their stored dtype (tied embeddings
 * share one buffer), activation buffers sized for the largest step, the RoPE table, and one
 * pipeline and bind group per kernel of every layer, all made once.
 *
 * ```ts ignore
 * import { GpuResources, uploadModel } from "./gpu_setup.ts";
 * const resources = new GpuResources(device);
 * const stages = uploadModel(resources, weights, { maxRows: 64, maxSeqs: 4 }, { maxTokens: 256, maxGenerated: 64 });
 * ```
 *
 * @module
 */

import type { Matrix, ModelWeights } from "./checkpoint.ts";
import {
  argmaxWGSL,
  embedWGSL,
  lastRowsWGSL,
  type MatmulSpec,
  matmulWGSL,
  normAddWGSL,
  rmsnormWGSL,
  ropeWGSL,
  softcapWGSL,
  swigluWGSL,
  type TableLayout,
} from "./gpu_kernels.ts";
import { expertActivationWGSL, routeExpertsWGSL } from "./moe_kernels.ts";
import { ropeInvFreq, ropeTable } from "./rope.ts";

/** `GPUBufferUsage` bits (spelled out: Dawn in Deno installs no WebGPU globals). */
export const U = {
  MAP_READ: 1,
  COPY_SRC: 4,
  COPY_DST: 8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY: 0x200,
};
const STORAGE = U.STORAGE | U.COPY_DST | U.COPY_SRC;

/** A pipeline and its bind group. */
export type Stage = [GPUComputePipeline, GPUBindGroup];
/**
 * The dispatches of one decoder layer (attention itself is the library's); Gemma 2 adds the norms
 * of the attention's and the MLP's outputs (`postAttn`, `postMlp`), gpt-oss the router's matmul
 * and the routing (`router`, `route`; its `swiglu` is the experts' activation).
 */
export type LayerStage =
  | "attnNorm"
  | "qkv"
  | "rope"
  | "o"
  | "postAttn"
  | "mlpNorm"
  | "router"
  | "route"
  | "gu"
  | "swiglu"
  | "down"
  | "postMlp";
/** The dispatches before and after the layers (`softcap`: Gemma 2's final logit soft-cap). */
export type FinalStage = "embed" | "last" | "norm" | "lm" | "softcap" | "argmax";

/** The buffers and pipelines a model owns on a device. */
export class GpuResources {
  readonly device: GPUDevice;
  /** Every buffer made, for `destroy`. */
  buffers: GPUBuffer[] = [];
  /** Buffers by name. */
  readonly b: Record<string, GPUBuffer> = {};
  #pipelines = new Map<string, GPUComputePipeline>();

  constructor(device: GPUDevice) {
    this.device = device;
  }

  /** A zero-filled buffer (size rounded up to 16 bytes), registered under `name`. */
  buffer(name: string, bytes: number, usage = STORAGE): GPUBuffer {
    const b = this.device.createBuffer({
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage,
      label: name,
    });
    this.buffers.push(b);
    this.b[name] = b;
    return b;
  }

  /** A buffer holding `data` (uploaded in 64 MiB pieces). */
  data(name: string, data: Float32Array | Uint16Array | Uint32Array): GPUBuffer {
    const b = this.buffer(name, data.byteLength);
    const chunk = 1 << 26; // bounded staging copies for GB-sized tensors
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    for (let at = 0; at < bytes.length; at += chunk) {
      const part = bytes.subarray(at, Math.min(bytes.length, at + chunk));
      this.device.queue.writeBuffer(b, at, part as unknown as ArrayBuffer);
    }
    return b;
  }

  /** A compute pipeline per WGSL source (compiled once). */
  pipeline(code: string): GPUComputePipeline {
    let p = this.#pipelines.get(code);
    if (!p) {
      const module = this.device.createShaderModule({ code });
      p = this.device.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: "main" },
      });
      this.#pipelines.set(code, p);
    }
    return p;
  }

  /** A bind group of `p`'s group 0 (binding number to buffer). */
  group(p: GPUComputePipeline, bindings: Record<number, GPUBuffer>): GPUBindGroup {
    return this.device.createBindGroup({
      layout: p.getBindGroupLayout(0),
      entries: Object.entries(bindings).map(([i, buffer]) => ({
        binding: Number(i),
        resource: { buffer },
      })),
    });
  }

  /** Destroys every buffer. */
  destroy(): void {
    for (const b of this.buffers) b.destroy();
    this.buffers = [];
  }
}

/** Sizes of {@linkcode uploadModel}'s buffers. */
export interface UploadSizes {
  /** Positions the RoPE table covers. */
  maxTokens: number;
  /** Generated tokens per sequence the history holds. */
  maxGenerated: number;
}

/** The stages of a model, ready to dispatch. */
export interface ModelStages {
  layers: Partial<Record<LayerStage, Stage>>[];
  final: Partial<Record<FinalStage, Stage>>;
}

/**
 * Uploads weights and the RoPE table, makes the activation buffers (named in `r.b`: step, table,
 * next, history, x, xn, qkv, q, k, v, attn, gu, h, router, last, lastN, logits) and every stage.
 */
export function uploadModel(
  r: GpuResources,
  w: ModelWeights,
  t: TableLayout,
  { maxTokens, maxGenerated }: UploadSizes,
): ModelStages {
  const c = w.config;
  const { maxRows, maxSeqs } = t;
  const qkvDim = (c.heads + 2 * c.kvHeads) * c.headDim;
  const attnDim = c.heads * c.headDim;
  // gpt-oss's experts widen gu and h (see moe.ts); the dense MLP's are 2 ffn and ffn wide.
  const guCols = w.layers[0].gateUp.rows;
  const hCols = w.layers[0].down.cols;
  const matrices = new Map<Matrix, GPUBuffer>();
  const matrix = (name: string, m: Matrix) => {
    let b = matrices.get(m);
    if (!b) matrices.set(m, b = r.data(name, m.data));
    return b;
  };
  const b = {
    step: r.buffer("step", 16, U.UNIFORM | U.COPY_DST),
    table: r.buffer("table", 4 * (2 * maxRows + maxSeqs)),
    next: r.buffer("next", 4 * maxSeqs),
    history: r.buffer("history", 4 * maxSeqs * maxGenerated),
    x: r.buffer("x", 4 * maxRows * c.hidden),
    xn: r.buffer("xn", 4 * maxRows * c.hidden),
    qkv: r.buffer("qkv", 4 * maxRows * qkvDim),
    q: r.buffer("q", 4 * maxRows * attnDim),
    k: r.buffer("k", 4 * maxRows * c.kvHeads * c.headDim),
    v: r.buffer("v", 4 * maxRows * c.kvHeads * c.headDim),
    attn: r.buffer("attn", 4 * maxRows * attnDim),
    gu: r.buffer("gu", 4 * maxRows * guCols),
    h: r.buffer("h", 4 * maxRows * hCols),
    router: r.buffer("router", 4 * maxRows * (c.moe?.experts ?? 0)),
    last: r.buffer("last", 4 * maxSeqs * c.hidden),
    lastN: r.buffer("lastN", 4 * maxSeqs * c.hidden),
    logits: r.buffer("logits", 4 * maxSeqs * c.vocab),
    norm: r.data("norm", w.norm),
    embed: matrix("embed", w.embed),
    lmHead: matrix("lmHead", w.lmHead),
  };
  const rope = ropeTable(ropeInvFreq(c.rope, c.headDim), maxTokens, c.rope.attentionScaling);
  const cosT = r.data("cos", rope.cos);
  const sinT = r.data("sin", rope.sin);
  const mm = (m: Matrix, spec: Omit<MatmulSpec, "inDim" | "outDim" | "dtype">) =>
    r.pipeline(matmulWGSL({ inDim: m.cols, outDim: m.rows, dtype: m.dtype, ...spec }));
  const norm = r.pipeline(rmsnormWGSL(c.hidden, c.eps));
  const embedScale = c.gemma ? Math.fround(Math.sqrt(c.hidden)) : 1;
  const p = {
    embed: r.pipeline(embedWGSL(c.hidden, w.embed.dtype, t, embedScale)),
    rope: r.pipeline(ropeWGSL(c.heads, c.kvHeads, c.headDim, t)),
    swiglu: r.pipeline(
      c.moe
        ? expertActivationWGSL(c.moe, c.ffn)
        : swigluWGSL(c.ffn, c.gemma ? "gelu_tanh" : "silu"),
    ),
    route: c.moe ? r.pipeline(routeExpertsWGSL(c.moe, c.ffn)) : undefined,
    normAdd: c.gemma ? r.pipeline(normAddWGSL(c.hidden, c.eps)) : undefined,
    softcap: c.finalSoftCap > 0 ? r.pipeline(softcapWGSL(c.vocab, c.finalSoftCap)) : undefined,
    last: r.pipeline(lastRowsWGSL(c.hidden)),
    lm: mm(w.lmHead, { rows: "seqs", bias: false, accumulate: false }),
    argmax: r.pipeline(argmaxWGSL(c.vocab, t)),
  };
  const layers = w.layers.map((l, i) => {
    const n = (s: string) => `layer ${i} ${s}`;
    const qkvBias = l.qkvBias ? r.data(n("qkv bias"), l.qkvBias) : undefined;
    const oBias = l.oBias ? r.data(n("o bias"), l.oBias) : undefined;
    const bias = (x?: GPUBuffer): Record<number, GPUBuffer> => (x ? { 3: x } : {});
    const pair = (pl: GPUComputePipeline, bindings: Record<number, GPUBuffer>): Stage => [
      pl,
      r.group(pl, bindings),
    ];
    const pq = mm(l.qkv, { rows: "rows", bias: !!qkvBias, accumulate: false });
    // Gemma 2 norms the sublayers' outputs (written to xn) before adding them to x.
    const post = !!l.postAttnNorm;
    const po = mm(l.o, { rows: "rows", bias: !!oBias, accumulate: !post });
    const guBias = l.gateUpBias ? r.data(n("gate up bias"), l.gateUpBias) : undefined;
    const pgu = mm(l.gateUp, { rows: "rows", bias: !!guBias, accumulate: false });
    const pd = mm(l.down, { rows: "rows", bias: false, accumulate: !post });
    const out = post ? b.xn : b.x;
    const postStages = post && p.normAdd
      ? {
        postAttn: pair(p.normAdd, {
          0: b.xn,
          1: r.data(n("post attn norm"), l.postAttnNorm!),
          2: b.x,
        }),
        postMlp: pair(p.normAdd, {
          0: b.xn,
          1: r.data(n("post mlp norm"), l.postMlpNorm!),
          2: b.x,
        }),
      }
      : {};
    const moeStages = l.router && p.route
      ? {
        router: pair(mm(l.router, { rows: "rows", bias: true, accumulate: false }), {
          0: b.step,
          1: b.xn,
          2: matrix(n("router"), l.router),
          3: r.data(n("router bias"), l.routerBias!),
          4: b.router,
        }),
        route: pair(p.route, { 0: b.step, 1: b.router, 2: b.h }),
      }
      : {};
    return {
      ...postStages,
      ...moeStages,
      attnNorm: pair(norm, { 0: b.x, 1: r.data(n("attn norm"), l.attnNorm), 2: b.xn }),
      qkv: pair(pq, {
        0: b.step,
        1: b.xn,
        2: matrix(n("qkv"), l.qkv),
        ...bias(qkvBias),
        4: b.qkv,
      }),
      rope: pair(p.rope, {
        0: b.step,
        1: b.table,
        2: b.qkv,
        3: cosT,
        4: sinT,
        5: b.q,
        6: b.k,
        7: b.v,
      }),
      o: pair(po, { 0: b.step, 1: b.attn, 2: matrix(n("o"), l.o), ...bias(oBias), 4: out }),
      mlpNorm: pair(norm, { 0: b.x, 1: r.data(n("mlp norm"), l.mlpNorm), 2: b.xn }),
      gu: pair(pgu, {
        0: b.step,
        1: b.xn,
        2: matrix(n("gate up"), l.gateUp),
        ...bias(guBias),
        4: b.gu,
      }),
      swiglu: pair(p.swiglu, { 0: b.step, 1: b.gu, 2: b.h }),
      down: pair(pd, { 0: b.step, 1: b.h, 2: matrix(n("down"), l.down), 4: out }),
    };
  });
  const pair = (pl: GPUComputePipeline, group: GPUBindGroup): Stage => [pl, group];
  const final = {
    embed: pair(
      p.embed,
      r.group(p.embed, { 0: b.step, 1: b.table, 2: b.next, 3: b.embed, 4: b.x }),
    ),
    last: pair(p.last, r.group(p.last, { 0: b.step, 1: b.x, 2: b.last })),
    norm: pair(norm, r.group(norm, { 0: b.last, 1: b.norm, 2: b.lastN })),
    lm: pair(p.lm, r.group(p.lm, { 0: b.step, 1: b.lastN, 2: b.lmHead, 4: b.logits })),
    ...(p.softcap
      ? { softcap: pair(p.softcap, r.group(p.softcap, { 0: b.step, 1: b.logits })) }
      : {}),
    argmax: pair(
      p.argmax,
      r.group(p.argmax, { 0: b.step, 1: b.table, 2: b.logits, 3: b.next, 4: b.history }),
    ),
  };
  return { layers, final };
}

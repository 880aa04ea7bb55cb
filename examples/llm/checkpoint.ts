/**
 * Loads a Hugging Face checkpoint folder (`config.json` and one or more `*.safetensors`) of the
 * Llama family, Gemma 2 or gpt-oss into host memory, in the layout the runner's kernels read: Q, K
 * and V projections stacked into one matrix (and their biases, Qwen2's and gpt-oss's), gate and up
 * stacked into one (gpt-oss: every expert's, in `moe.ts`'s layout), matrices kept in their stored
 * dtype (f32, or f16/bf16 bits), norms, biases and sinks as f32. Tied embeddings
 * (`tie_word_embeddings`, or no `lm_head.weight` in the files) share the embedding matrix.
 *
 * ```ts ignore
 * import { loadCheckpoint } from "./checkpoint.ts";
 * const model = await loadCheckpoint("path/to/Llama-3.2-1B");
 * console.log(model.config.layers, model.embed.dtype, model.lmHead === model.embed);
 * ```
 *
 * @module
 */

import { decodeKV } from "../../mod.ts";
import { type ModelConfig, parseModelConfig } from "./config.ts";
import { expertWeights } from "./moe.ts";
import { loadMlaLayers, type MlaLayerWeights } from "./mla_weights.ts";
import {
  type FloatDtype,
  openSafetensors,
  type SafetensorsFile,
  type Tensor,
} from "./safetensors.ts";

/** A weight matrix `[rows][cols]` (output-major, like `nn.Linear.weight`). */
export interface Matrix {
  dtype: FloatDtype;
  rows: number;
  cols: number;
  data: Float32Array | Uint16Array;
}

/** One decoder layer's weights. */
export interface LayerWeights {
  attnNorm: Float32Array;
  /** `[q rows; k rows; v rows]`: `(heads + 2 kvHeads) headDim` rows of `hidden`. */
  qkv: Matrix;
  /** Biases of `qkv` (Qwen2; zeros where a projection has none), or undefined. */
  qkvBias?: Float32Array;
  o: Matrix;
  oBias?: Float32Array;
  mlpNorm: Float32Array;
  /** Gemma 2: the norms of the attention's and the MLP's outputs (before the residual add). */
  postAttnNorm?: Float32Array;
  postMlpNorm?: Float32Array;
  /**
   * `[gate rows; up rows]`: `2 ffn` rows of `hidden`; gpt-oss: every expert's (`E * 2 ffn` rows,
   * see `moe.ts`).
   */
  gateUp: Matrix;
  /** gpt-oss: the experts' gate/up biases, in `gateUp`'s row order. */
  gateUpBias?: Float32Array;
  /** `hidden` rows of `ffn`; gpt-oss: of `E * ffn + E` (every expert's, then their biases). */
  down: Matrix;
  /** gpt-oss: per-head attention sinks `[heads]`. */
  sinks?: Float32Array;
  /** gpt-oss: the router `[E][hidden]` and its bias. */
  router?: Matrix;
  routerBias?: Float32Array;
}

/** A whole model in host memory. */
export interface ModelWeights {
  config: ModelConfig;
  embed: Matrix;
  layers: LayerWeights[];
  norm: Float32Array;
  /** The output projection; the same object as `embed` when the embeddings are tied. */
  lmHead: Matrix;
  /** DeepSeek-V3: its layers (MLA, experts), where `layers` is empty. */
  mlaLayers?: MlaLayerWeights[];
}

/** Floats of any stored dtype as f32. */
export function toF32(t: { dtype: FloatDtype; data: Float32Array | Uint16Array }): Float32Array {
  if (t.dtype === "F32") return t.data as Float32Array;
  return decodeKV(t.data as Uint16Array, t.dtype === "F16" ? "f16" : "bf16");
}

/** Stacks matrices of equal width row-wise; mixed dtypes are widened to f32. */
function stack(parts: Matrix[]): Matrix {
  const cols = parts[0].cols;
  const same = parts.every((p) => p.dtype === parts[0].dtype);
  const dtype: FloatDtype = same ? parts[0].dtype : "F32";
  const rows = parts.reduce((n, p) => n + p.rows, 0);
  const data = dtype === "F32" ? new Float32Array(rows * cols) : new Uint16Array(rows * cols);
  let at = 0;
  for (const p of parts) {
    data.set(same ? p.data : toF32(p), at);
    at += p.rows * cols;
  }
  return { dtype, rows, cols, data };
}

/** Reads every tensor by name across a folder's safetensors files. */
export class TensorSource {
  #files: SafetensorsFile[];
  #where = new Map<string, SafetensorsFile>();

  constructor(files: SafetensorsFile[]) {
    this.#files = files;
    for (const f of files) for (const n of f.names) this.#where.set(n, f);
  }

  has(name: string): boolean {
    return this.#where.has(name);
  }

  async tensor(name: string, shape: number[]): Promise<Tensor> {
    const file = this.#where.get(name);
    if (!file) throw new RangeError(`the checkpoint holds no tensor "${name}"`);
    const t = await file.read(name);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new RangeError(
        `tensor "${name}" must have shape ${JSON.stringify(shape)}: got ${JSON.stringify(t.shape)}`,
      );
    }
    return t;
  }

  async matrix(name: string, rows: number, cols: number): Promise<Matrix> {
    const t = await this.tensor(name, [rows, cols]);
    return { dtype: t.dtype, rows, cols, data: t.data };
  }

  async vector(name: string, n: number): Promise<Float32Array> {
    return Float32Array.from(toF32(await this.tensor(name, [n])));
  }

  close(): void {
    for (const f of this.#files) f.close();
  }
}

/** Loads a checkpoint folder; missing or misshapen tensors throw `RangeError` naming them. */
export async function loadCheckpoint(dir: string): Promise<ModelWeights> {
  const config = parseModelConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".safetensors")) names.push(e.name);
  }
  if (names.length === 0) throw new RangeError(`${dir} holds no .safetensors file`);
  names.sort();
  const src = new TensorSource(await Promise.all(names.map((n) => openSafetensors(`${dir}/${n}`))));
  try {
    const { hidden, ffn, heads, kvHeads, headDim, vocab, moe } = config;
    // Gemma 2's norms scale by (1 + w), computed in f32 as transformers does: stored that way.
    const norm = async (name: string) => {
      const w = await src.vector(name, hidden);
      if (config.gemma) { for (let i = 0; i < w.length; i++) w[i] = Math.fround(1 + w[i]); }
      return w;
    };
    // A tied checkpoint stores one of the two names (transformers keeps the embedding's).
    const embedName = src.has("model.embed_tokens.weight") || !src.has("lm_head.weight")
      ? "model.embed_tokens.weight"
      : "lm_head.weight";
    const embed = await src.matrix(embedName, vocab, hidden);
    const layers: LayerWeights[] = [];
    const mlaLayers = config.mla ? await loadMlaLayers(src, config) : undefined;
    for (let l = 0; l < (mlaLayers ? 0 : config.layers); l++) {
      const p = `model.layers.${l}.`;
      if (src.has(`${p}mlp.gate_proj.bias`)) {
        throw new RangeError(`${p}mlp has biases (mlp_bias): not implemented by this runner`);
      }
      const qkvRows = [heads * headDim, kvHeads * headDim, kvHeads * headDim];
      const proj = ["q", "k", "v"];
      const qkv = stack(
        await Promise.all(
          proj.map((x, i) => src.matrix(`${p}self_attn.${x}_proj.weight`, qkvRows[i], hidden)),
        ),
      );
      let qkvBias: Float32Array | undefined;
      if (proj.some((x) => src.has(`${p}self_attn.${x}_proj.bias`))) {
        qkvBias = new Float32Array(qkv.rows);
        let at = 0;
        for (let i = 0; i < 3; i++) {
          const name = `${p}self_attn.${proj[i]}_proj.bias`;
          if (src.has(name)) qkvBias.set(await src.vector(name, qkvRows[i]), at);
          at += qkvRows[i];
        }
      }
      const oName = `${p}self_attn.o_proj.bias`;
      const mlp = moe
        ? await (async () => {
          const E = moe.experts, x = `${p}mlp.experts.`;
          const w = expertWeights(
            {
              router: await src.tensor(`${p}mlp.router.weight`, [E, hidden]),
              routerBias: await src.vector(`${p}mlp.router.bias`, E),
              gateUp: await src.tensor(`${x}gate_up_proj`, [E, hidden, 2 * ffn]),
              gateUpBias: toF32(await src.tensor(`${x}gate_up_proj_bias`, [E, 2 * ffn])),
              down: await src.tensor(`${x}down_proj`, [E, ffn, hidden]),
              downBias: await src.tensor(`${x}down_proj_bias`, [E, hidden]),
            },
            { hidden, ffn, experts: E },
            toF32,
          );
          return {
            gateUp: w.gateUp,
            gateUpBias: w.gateUpBias,
            down: w.down,
            router: w.router,
            routerBias: w.routerBias,
            sinks: await src.vector(`${p}self_attn.sinks`, heads),
          };
        })()
        : {
          gateUp: stack([
            await src.matrix(`${p}mlp.gate_proj.weight`, ffn, hidden),
            await src.matrix(`${p}mlp.up_proj.weight`, ffn, hidden),
          ]),
          down: await src.matrix(`${p}mlp.down_proj.weight`, hidden, ffn),
        };
      layers.push({
        attnNorm: await norm(`${p}input_layernorm.weight`),
        qkv,
        qkvBias,
        o: await src.matrix(`${p}self_attn.o_proj.weight`, hidden, heads * headDim),
        oBias: src.has(oName) ? await src.vector(oName, hidden) : undefined,
        mlpNorm: await norm(
          `${p}${config.gemma ? "pre_feedforward" : "post_attention"}_layernorm.weight`,
        ),
        ...(config.gemma
          ? {
            postAttnNorm: await norm(`${p}post_attention_layernorm.weight`),
            postMlpNorm: await norm(`${p}post_feedforward_layernorm.weight`),
          }
          : {}),
        ...mlp,
      });
    }
    const finalNorm = await norm("model.norm.weight");
    const tied = config.tieEmbeddings || !src.has("lm_head.weight") ||
      embedName === "lm_head.weight";
    const lmHead = tied ? embed : await src.matrix("lm_head.weight", vocab, hidden);
    return { config, embed, layers, norm: finalNorm, lmHead, ...(mlaLayers ? { mlaLayers } : {}) };
  } finally {
    src.close();
  }
}

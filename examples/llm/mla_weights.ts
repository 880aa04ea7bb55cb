/**
 * DeepSeek-V3's layer weights as a checkpoint names them (transformers 5 writes each routed expert
 * as its own `gate_proj`, `up_proj` and `down_proj`, as DeepSeek's own checkpoints do): MLA's
 * projections and norms, then a dense MLP for the first `first_k_dense_replace` layers and the
 * routed experts, their router and the shared expert after them.
 *
 * @module
 */

import type { Matrix, TensorSource } from "./checkpoint.ts";
import type { ModelConfig } from "./config.ts";

/** One DeepSeek-V3 layer's weights. */
export interface MlaLayerWeights {
  attnNorm: Float32Array;
  /** `q_a_proj` (`qLoraRank` rows of `hidden`), absent without query LoRA. */
  qA?: Matrix;
  /** `q_a_layernorm`, with `qA`. */
  qANorm?: Float32Array;
  /** `q_b_proj` (or `q_proj`): `heads (nope + rope)` rows. */
  qB: Matrix;
  /** `kv_a_proj_with_mqa`: `kvLoraRank + rope` rows of `hidden` (the latent, then the shared key). */
  kvA: Matrix;
  /** `kv_a_layernorm` of the latent. */
  kvANorm: Float32Array;
  /** `kv_b_proj`: per head, `nope` key rows then `vHeadDim` value rows, of `kvLoraRank`. */
  kvB: Matrix;
  /** `o_proj`: `hidden` rows of `heads vHeadDim`. */
  o: Matrix;
  mlpNorm: Float32Array;
  /** The first layers' dense MLP: `[gate rows; up rows]` and `down`. */
  dense?: { gateUp: Matrix; down: Matrix };
  /** The other layers' experts. */
  experts?: {
    /** `mlp.gate.weight`: `[experts][hidden]`. */
    router: Matrix;
    /** `mlp.gate.e_score_correction_bias`: added to the scores for the choice only. */
    correction: Float32Array;
    /** Each routed expert's `[gate rows; up rows]` and `down`. */
    gateUp: Matrix[];
    down: Matrix[];
    /** The shared expert, absent with `n_shared_experts` 0. */
    shared?: { gateUp: Matrix; down: Matrix };
  };
}

/** `[a rows; b rows]` of two matrices of one width and dtype. */
function stack2(a: Matrix, b: Matrix): Matrix {
  const data = a.dtype === "F32"
    ? new Float32Array(a.data.length + b.data.length)
    : new Uint16Array(
      a.data.length + b.data.length,
    );
  if (a.dtype !== b.dtype) throw new RangeError(`mixed dtypes: ${a.dtype} and ${b.dtype}`);
  data.set(a.data);
  data.set(b.data, a.data.length);
  return { dtype: a.dtype, rows: a.rows + b.rows, cols: a.cols, data };
}

/** A gate/up/down MLP of `width` under `prefix` (`...mlp.` or `...mlp.experts.3.`). */
async function mlp(src: TensorSource, prefix: string, hidden: number, width: number) {
  return {
    gateUp: stack2(
      await src.matrix(`${prefix}gate_proj.weight`, width, hidden),
      await src.matrix(`${prefix}up_proj.weight`, width, hidden),
    ),
    down: await src.matrix(`${prefix}down_proj.weight`, hidden, width),
  };
}

/** Loads every layer of a DeepSeek-V3 checkpoint; missing or misshapen tensors throw, named. */
export async function loadMlaLayers(
  src: TensorSource,
  config: ModelConfig,
): Promise<MlaLayerWeights[]> {
  const { hidden, heads, mla, deepseekMoe: moe } = config;
  if (!mla || !moe) throw new TypeError("loadMlaLayers: the config is not DeepSeek-V3's");
  const qDim = heads * (mla.nopeDim + mla.ropeDim);
  const layers: MlaLayerWeights[] = [];
  for (let l = 0; l < config.layers; l++) {
    const p = `model.layers.${l}.`, a = `${p}self_attn.`;
    const lora = mla.qLoraRank > 0;
    layers.push({
      attnNorm: await src.vector(`${p}input_layernorm.weight`, hidden),
      ...(lora
        ? {
          qA: await src.matrix(`${a}q_a_proj.weight`, mla.qLoraRank, hidden),
          qANorm: await src.vector(`${a}q_a_layernorm.weight`, mla.qLoraRank),
        }
        : {}),
      qB: lora
        ? await src.matrix(`${a}q_b_proj.weight`, qDim, mla.qLoraRank)
        : await src.matrix(`${a}q_proj.weight`, qDim, hidden),
      kvA: await src.matrix(`${a}kv_a_proj_with_mqa.weight`, mla.kvLoraRank + mla.ropeDim, hidden),
      kvANorm: await src.vector(`${a}kv_a_layernorm.weight`, mla.kvLoraRank),
      kvB: await src.matrix(
        `${a}kv_b_proj.weight`,
        heads * (mla.nopeDim + mla.vHeadDim),
        mla.kvLoraRank,
      ),
      o: await src.matrix(`${a}o_proj.weight`, hidden, heads * mla.vHeadDim),
      mlpNorm: await src.vector(`${p}post_attention_layernorm.weight`, hidden),
      ...(l < moe.denseLayers ? { dense: await mlp(src, `${p}mlp.`, hidden, config.ffn) } : {
        experts: {
          router: await src.matrix(`${p}mlp.gate.weight`, moe.experts, hidden),
          correction: await src.vector(`${p}mlp.gate.e_score_correction_bias`, moe.experts),
          ...await expertMatrices(src, `${p}mlp.experts.`, hidden, moe.width, moe.experts),
          ...(moe.sharedWidth > 0
            ? { shared: await mlp(src, `${p}mlp.shared_experts.`, hidden, moe.sharedWidth) }
            : {}),
        },
      }),
    });
  }
  return layers;
}

async function expertMatrices(
  src: TensorSource,
  prefix: string,
  hidden: number,
  width: number,
  experts: number,
): Promise<{ gateUp: Matrix[]; down: Matrix[] }> {
  const gateUp: Matrix[] = [], down: Matrix[] = [];
  for (let e = 0; e < experts; e++) {
    const m = await mlp(src, `${prefix}${e}.`, hidden, width);
    gateUp.push(m.gateUp);
    down.push(m.down);
  }
  return { gateUp, down };
}

/**
 * MLA as DeepSeek-V3 runs it, against transformers' own layer: the fixture
 * (tests/fixtures/mla_deepseek, made by examples/llm/hf_mla.py with transformers 5.17 in float64)
 * holds a random DeepseekV3Attention layer (LoRA queries, the latent K/V with its RMSNorm,
 * interleaved RoPE with YaRN's softmax scale), three sequences' hidden states, transformers'
 * outputs at a decode step and a three-token verification step, and its latent cache. Here a
 * runner's side of MLA computes the latent rows (normed latent, then roped shared key: K rows of 80
 * dims whose first 64 are V, `vFromK`) and absorbed queries (each head's no-RoPE query through its
 * key up-projection, then its roped dims), decodes with the library, and takes each head's latent
 * output through its value up-projection and the output projection: the latent rows must equal
 * transformers' cache, and the outputs transformers' outputs, through a decoder and through a
 * `KVCache` of K pages only.
 */

import assert from "node:assert/strict";
import { type DecodeInput, type KVDtype, toF16Bits } from "../mod.ts";
import { createKVCache, executePagedPlanOnCpu, planForCache } from "../runner.ts";
import { openSafetensors } from "../examples/llm/safetensors.ts";
import { backendTest } from "./backends.ts";
import { relativeL2Error } from "./helpers.ts";

const FIXTURE = new URL("./fixtures/mla_deepseek/", import.meta.url).pathname;

interface MlaConfig {
  hiddenSize: number;
  numHeads: number;
  qLoraRank: number;
  kvLoraRank: number;
  ropeDim: number;
  nopeDim: number;
  vHeadDim: number;
  rmsNormEps: number;
  scaling: number;
  prompts: number[];
  verify: number;
}

const cfg: MlaConfig = JSON.parse(await Deno.readTextFile(`${FIXTURE}config.json`));
const file = await openSafetensors(`${FIXTURE}tensors.safetensors`);
const t: Record<string, Float32Array> = {};
for (const name of file.names) t[name] = (await file.read(name)).data as Float32Array;
file.close();

const { hiddenSize: HID, numHeads: H, kvLoraRank: LAT, ropeDim: ROPE, nopeDim: NOPE } = cfg;
const QD = NOPE + ROPE; // a query head's dims in the layer
const D = LAT + ROPE; // a latent K row: the normed latent, then the roped shared key
const VD = cfg.vHeadDim;

/** `W x` for a `[out][in]` weight. */
function linear(w: Float32Array, x: Float32Array, outDim: number): Float32Array {
  const inDim = x.length;
  const y = new Float32Array(outDim);
  for (let o = 0; o < outDim; o++) {
    let s = 0;
    for (let i = 0; i < inDim; i++) s += w[o * inDim + i] * x[i];
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float32Array, weight: Float32Array): Float32Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + cfg.rmsNormEps);
  return x.map((v, i) => v * r * weight[i]);
}

/** DeepSeek's interleaved RoPE: pairs (x0, x1), (x2, x3), ... rotated, out as evens then odds. */
function rope(x: Float32Array, seq: number, pos: number): Float32Array {
  const half = ROPE / 2;
  const cos = t[`s${seq}.cos`].subarray(pos * ROPE, pos * ROPE + half);
  const sin = t[`s${seq}.sin`].subarray(pos * ROPE, pos * ROPE + half);
  const out = new Float32Array(ROPE);
  for (let i = 0; i < half; i++) {
    const [a, b] = [x[2 * i], x[2 * i + 1]];
    out[i] = a * cos[i] - b * sin[i];
    out[half + i] = b * cos[i] + a * sin[i];
  }
  return out;
}

function hidden(seq: number, pos: number): Float32Array {
  return t[`s${seq}.hidden`].subarray(pos * HID, (pos + 1) * HID);
}

/** The latent K row of a token: `[normed latent (V) | roped shared key]`. */
function latentRow(seq: number, pos: number): Float32Array {
  const kv = linear(t["kv_a_proj_with_mqa.weight"], hidden(seq, pos), D);
  const row = new Float32Array(D);
  row.set(rmsNorm(kv.subarray(0, LAT), t["kv_a_layernorm.weight"]));
  row.set(rope(kv.subarray(LAT), seq, pos), LAT);
  return row;
}

/** A token's query rows, one per head: `[no-RoPE query through the head's key up-projection | roped dims]`. */
function absorbedQuery(seq: number, pos: number): Float32Array {
  const qa = rmsNorm(
    linear(t["q_a_proj.weight"], hidden(seq, pos), cfg.qLoraRank),
    t["q_a_layernorm.weight"],
  );
  const q = linear(t["q_b_proj.weight"], qa, H * QD);
  const kvb = t["kv_b_proj.weight"]; // [head][nope + v][latent]
  const rows = new Float32Array(H * D);
  for (let h = 0; h < H; h++) {
    for (let j = 0; j < LAT; j++) {
      let s = 0;
      for (let i = 0; i < NOPE; i++) s += q[h * QD + i] * kvb[(h * (NOPE + VD) + i) * LAT + j];
      rows[h * D + j] = s;
    }
    rows.set(rope(q.subarray(h * QD + NOPE, (h + 1) * QD), seq, pos), h * D + LAT);
  }
  return rows;
}

/** A position's layer output from its heads' latent outputs (`[head][latent]`). */
function project(latent: Float32Array): Float32Array {
  const kvb = t["kv_b_proj.weight"];
  const heads = new Float32Array(H * VD);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < VD; i++) {
      let s = 0;
      for (let j = 0; j < LAT; j++) {
        s += kvb[(h * (NOPE + VD) + NOPE + i) * LAT + j] * latent[h * LAT + j];
      }
      heads[h * VD + i] = s;
    }
  }
  return linear(t["o_proj.weight"], heads, HID);
}

const SEQS = cfg.prompts.length;
const rows = cfg.prompts.map((p, s) =>
  Array.from({ length: p + 1 + cfg.verify }, (_, pos) => latentRow(s, pos))
);

/**
 * One batch of both steps: sequence s's decode step (its prompt and one token, one query) and
 * its verification step (all its tokens, the last `verify` queried) as sequences s and s + 3.
 */
function batch(kvDtype: KVDtype): DecodeInput {
  const seqLens = [...cfg.prompts.map((p) => p + 1), ...cfg.prompts.map((p) => p + 1 + cfg.verify)];
  const qLens = [...cfg.prompts.map(() => 1), ...cfg.prompts.map(() => cfg.verify)];
  const k: number[] = [];
  const q: number[] = [];
  seqLens.forEach((len, i) => {
    const s = i % SEQS;
    for (let pos = 0; pos < len; pos++) k.push(...rows[s][pos]);
    for (let pos = len - qLens[i]; pos < len; pos++) q.push(...absorbedQuery(s, pos));
  });
  const k32 = Float32Array.from(k);
  return {
    q: Float32Array.from(q),
    k: kvDtype === "f16" ? toF16Bits(k32) : k32,
    seqLens,
    qLens,
    numHeads: H,
    numKVHeads: 1,
    headDim: D,
    headDimV: LAT,
    vFromK: true,
    kvDtype,
    scale: cfg.scaling,
  };
}

/** The layer outputs of a batch's latent outputs against transformers' (relative L2 per step). */
function errors(out: Float32Array): { decode: number; verify: number } {
  const got = { decode: [] as number[], verify: [] as number[] };
  const want = { decode: [] as number[], verify: [] as number[] };
  let row = 0;
  for (const step of ["decode", "verify"] as const) {
    for (let s = 0; s < SEQS; s++) {
      const n = step === "decode" ? 1 : cfg.verify;
      for (let p = 0; p < n; p++, row++) {
        got[step].push(...project(out.subarray(row * H * LAT, (row + 1) * H * LAT)));
      }
      want[step].push(...t[`s${s}.${step}`]);
    }
  }
  return {
    decode: relativeL2Error(got.decode, want.decode),
    verify: relativeL2Error(got.verify, want.verify),
  };
}

Deno.test("DeepSeek-V3's MLA: the latent rows a runner computes are transformers' latent cache", () => {
  for (let s = 0; s < SEQS; s++) {
    const ours = rows[s].flatMap((r) => Array.from(r));
    const theirs: number[] = [];
    const nope = t[`s${s}.kv_nope`];
    const rot = t[`s${s}.k_rot`];
    for (let pos = 0; pos < rows[s].length; pos++) {
      theirs.push(
        ...nope.subarray(pos * LAT, (pos + 1) * LAT),
        ...rot.subarray(pos * ROPE, (pos + 1) * ROPE),
      );
    }
    const e = relativeL2Error(ours, theirs);
    assert.ok(e < 1e-6, `sequence ${s}: latent rows ${e}`);
  }
});

backendTest(
  "DeepSeek-V3's MLA through the library (V read from K's rows) gives transformers' layer outputs",
  async (decoder, backend) => {
    // f32 on every backend; the f16 cache a runner keeps (the matrix kernel's dtype) on GPUs.
    for (const kvDtype of backend === "cpu" ? ["f32"] as const : ["f32", "f16"] as const) {
      const e = errors((await decoder.decode(batch(kvDtype))).out);
      const tolerance = kvDtype === "f32" ? 1e-5 : 2e-3;
      assert.ok(e.decode < tolerance && e.verify < tolerance, `${kvDtype}: ${JSON.stringify(e)}`);
      console.log(`${backend} ${kvDtype}: relative L2 against transformers ${JSON.stringify(e)}`);
    }
  },
  { exhaustive: true },
);

Deno.test("DeepSeek-V3's MLA from a KVCache of latent rows (K pages only) gives transformers' outputs", () => {
  const cache = createKVCache({
    numLayers: 1,
    numKVHeads: 1,
    headDim: D,
    headDimV: LAT,
    vFromK: true,
    pageSize: 4,
    numPages: 64,
  });
  assert.equal(cache.memory().bytesPerPage, 4 * D * 4); // K's rows alone
  const seqs = cfg.prompts.map(() => cache.addSequence());
  const append = (s: number, from: number, to: number) =>
    cache.append(seqs[s], {
      k: [Float32Array.from(rows[s].slice(from, to).flatMap((r) => Array.from(r)))],
    });
  const run = (qLen: number, positions: (s: number) => number[]) => {
    const plan = planForCache(cache, { seqs, numHeads: H, qLen, scale: cfg.scaling }, { grid: 5 });
    const q = cfg.prompts.flatMap((_, s) =>
      positions(s).flatMap((pos) => Array.from(absorbedQuery(s, pos)))
    );
    return executePagedPlanOnCpu(plan, { q: Float32Array.from(q), ...cache.layerData(0) }).out;
  };
  // The decode step, then the verification step's three tokens appended, as a runner steps.
  cfg.prompts.forEach((p, s) => append(s, 0, p + 1));
  const decodeOut = run(1, (s) => [cfg.prompts[s]]);
  cfg.prompts.forEach((p, s) => append(s, p + 1, p + 1 + cfg.verify));
  const verifyOut = run(cfg.verify, (s) => [1, 2, 3].map((i) => cfg.prompts[s] + i));
  for (
    const [step, out, n] of [["decode", decodeOut, 1], ["verify", verifyOut, cfg.verify]] as const
  ) {
    const got: number[] = [];
    const want: number[] = [];
    for (let s = 0; s < SEQS; s++) {
      for (let p = 0; p < n; p++) {
        const row = s * n + p;
        got.push(...project(out.subarray(row * H * LAT, (row + 1) * H * LAT)));
      }
      want.push(...t[`s${s}.${step}`]);
    }
    const e = relativeL2Error(got, want);
    assert.ok(e < 1e-5, `${step}: ${e}`);
  }
});

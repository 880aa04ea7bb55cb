/**
 * A 1M-token context on the GPU: one sequence, 32 query heads over 8 KV heads of dim 128, f16 KV
 * (2 GiB of K and 2 GiB of V), decoded with every strategy and checked on sampled KV heads against
 * a float64 reference computed straight from the f16 bits. K and V beyond one binding are split
 * into KV windows; `--max-binding-bytes` forces smaller windows.
 *
 *     deno run bench/huge_context.ts [--backend=webgpu|dawn|cpu]
 *       [--tokens=1048576] [--max-binding-bytes=N] [--sample-kv-heads=2] [--seed=1]
 *
 * The last line is `huge_context: PASS ...` or `huge_context: FAIL ...`; the exit status follows.
 *
 * @module
 */

import "../dawn.ts"; // registers Dawn for --backend=dawn
import { parseArgs } from "node:util";
import { type BackendName, createDecoder, decodeKV, STRATEGIES } from "../mod.ts";
import { mulberry32 } from "./random.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    backend: { type: "string", default: "webgpu" },
    tokens: { type: "string", default: String(1 << 20) },
    "max-binding-bytes": { type: "string" },
    "sample-kv-heads": { type: "string", default: "2" },
    seed: { type: "string", default: "1" },
  },
});

const tokens = Number(values.tokens);
const numHeads = 32, numKVHeads = 8, headDim = 128;
const group = numHeads / numKVHeads;
const rng = mulberry32(Number(values.seed));

/** Random f16 bit patterns of values in about (-1, 1): exponents 0x00..0x0e, random sign. */
function randomF16(n: number): Uint16Array {
  const a = new Uint16Array(n);
  let x = Math.floor(rng() * 2 ** 31) >>> 0;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    a[i] = (x & 0x8000) | (Math.min(0x0e, (x >>> 16) & 0x0f) << 10) | (x & 0x03ff);
  }
  return a;
}

console.log(
  `huge_context: ${tokens} tokens, ${numHeads}/${numKVHeads} heads, d ${headDim}, f16 ` +
    `(${((2 * tokens * numKVHeads * headDim * 2) / 2 ** 30).toFixed(2)} GiB of KV)`,
);
let t = performance.now();
const k = randomF16(tokens * numKVHeads * headDim);
const v = randomF16(tokens * numKVHeads * headDim);
const q = Float32Array.from({ length: numHeads * headDim }, () => (2 * rng() - 1) * 2);
console.log(`  data generated in ${((performance.now() - t) / 1000).toFixed(1)} s`);

const maxBindingBytes = values["max-binding-bytes"] === undefined
  ? undefined
  : Number(values["max-binding-bytes"]);
const decoder = await createDecoder({
  backend: values.backend as BackendName,
  ...(maxBindingBytes === undefined ? {} : { maxBindingBytes }),
});
console.log(
  `  ${decoder.backend}: ${decoder.profile.name}, grid ${decoder.profile.grid}, ` +
    `max binding ${decoder.profile.maxBindingBytes ?? "unlimited"} bytes`,
);

// Reference for sampled KV heads, straight from the f16 bits (float64).
const table = decodeKV(Uint16Array.from({ length: 65536 }, (_, i) => i), "f16");
const sampled = Array.from(
  { length: Number(values["sample-kv-heads"]) },
  (_, i) => Math.floor((i * numKVHeads) / Number(values["sample-kv-heads"])),
);
const scale = 1 / Math.sqrt(headDim);
t = performance.now();
const reference = new Map<number, { out: Float64Array; lse: number }>();
for (const kvh of sampled) {
  for (let hh = 0; hh < group; hh++) {
    const h = kvh * group + hh;
    const scores = new Float64Array(tokens);
    let max = -Infinity;
    for (let tok = 0; tok < tokens; tok++) {
      const base = (tok * numKVHeads + kvh) * headDim;
      let s = 0;
      for (let d = 0; d < headDim; d++) s += q[h * headDim + d] * table[k[base + d]];
      scores[tok] = s * scale;
      if (scores[tok] > max) max = scores[tok];
    }
    const acc = new Float64Array(headDim);
    let sum = 0;
    for (let tok = 0; tok < tokens; tok++) {
      const w = Math.exp(scores[tok] - max);
      sum += w;
      const base = (tok * numKVHeads + kvh) * headDim;
      for (let d = 0; d < headDim; d++) acc[d] += w * table[v[base + d]];
    }
    for (let d = 0; d < headDim; d++) acc[d] /= sum;
    reference.set(h, { out: acc, lse: max + Math.log(sum) });
  }
}
console.log(
  `  reference for KV heads ${sampled.join(", ")} in ${
    ((performance.now() - t) / 1000).toFixed(1)
  } s`,
);

let pass = true;
const lines: string[] = [];
for (const strategy of STRATEGIES) {
  const input = {
    q,
    k,
    v,
    kvDtype: "f16" as const,
    seqLens: [tokens],
    numHeads,
    numKVHeads,
    headDim,
    strategy,
  };
  const plan = decoder.plan(input, { strategy });
  t = performance.now();
  const { out, lse } = await decoder.decode(input);
  const ms = performance.now() - t;
  let worstOut = 0;
  let worstLse = 0;
  for (const [h, ref] of reference) {
    let diff = 0;
    let norm = 0;
    for (let d = 0; d < headDim; d++) {
      diff += (out[h * headDim + d] - ref.out[d]) ** 2;
      norm += ref.out[d] ** 2;
    }
    const rel = Math.sqrt(diff / norm);
    worstOut = Math.max(worstOut, Number.isNaN(rel) ? Infinity : rel);
    const le = Math.abs(lse[h] - ref.lse);
    worstLse = Math.max(worstLse, Number.isNaN(le) ? Infinity : le);
  }
  const ok = worstOut < 2e-5 && worstLse < 2e-4;
  pass &&= ok;
  const line =
    `  ${strategy.padEnd(6)} ${ok ? "ok  " : "FAIL"} ${plan.schedule.windows.length} KV ` +
    `windows, ${plan.schedule.workgroups} workgroups, out rel err ${worstOut.toExponential(2)}, ` +
    `lse err ${worstLse.toExponential(2)}, ${ms.toFixed(0)} ms with upload`;
  console.log(line);
  lines.push(line);
}
await decoder.dispose();
console.log(
  `huge_context: ${
    pass ? "PASS" : "FAIL"
  } ${tokens} tokens x ${numKVHeads} KV heads x ${headDim} ` +
    `f16 on ${decoder.backend}, ${reference.size} sampled heads within 2e-5 (out) / 2e-4 (lse)`,
);
Deno.exit(pass ? 0 : 1);

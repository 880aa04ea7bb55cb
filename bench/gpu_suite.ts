/**
 * Correctness at large sizes on real adapters: every backend that opens (webgpu, dawn) runs the
 * three strategies on contexts up to 128k tokens, with fresh random inputs, poisoned outputs and
 * a float64 reference. Prints a table and writes a markdown summary.
 *
 * Usage: deno run -A bench/gpu_suite.ts [--out=FILE] [--max-context=131072]
 */

import "../dawn.ts"; // registers Dawn for --backend=dawn
import {
  type BackendName,
  createDecoder,
  type DecodeInput,
  encodeKV,
  type KVDtype,
  referenceAttention,
  type Strategy,
} from "../mod.ts";

interface Case {
  name: string;
  seqLens: number[];
  numHeads: number;
  numKVHeads: number;
  headDim: number;
  qLen?: number;
  kvDtype: KVDtype;
  /** 8-bit dtypes: random scales per (token, KV head) instead of one per tensor. */
  perTokenScales?: boolean;
}

const args = new Map(Deno.args.map((a) => a.replace(/^--/, "").split("=") as [string, string]));
const maxContext = Number(args.get("max-context") ?? 131072);
const outFile = args.get("out");

const CASES: Case[] = [
  {
    name: "b1 h32 1k",
    seqLens: [1024],
    numHeads: 32,
    numKVHeads: 32,
    headDim: 128,
    kvDtype: "f16",
  },
  {
    name: "b1 gqa32/8 32k",
    seqLens: [32768],
    numHeads: 32,
    numKVHeads: 8,
    headDim: 128,
    kvDtype: "f16",
  },
  {
    name: "b1 gqa32/8 128k",
    seqLens: [131072],
    numHeads: 32,
    numKVHeads: 8,
    headDim: 128,
    kvDtype: "f16",
  },
  {
    name: "b1 mqa 128k d64 bf16",
    seqLens: [131072],
    numHeads: 16,
    numKVHeads: 1,
    headDim: 64,
    kvDtype: "bf16",
  },
  {
    name: "ragged 1/5000/100k",
    seqLens: [1, 5000, 100000, 77],
    numHeads: 8,
    numKVHeads: 2,
    headDim: 128,
    kvDtype: "f16",
  },
  {
    name: "b16 4k f32",
    seqLens: Array(16).fill(4096),
    numHeads: 16,
    numKVHeads: 4,
    headDim: 128,
    kvDtype: "f32",
  },
  {
    name: "qLen16 gqa 16k",
    seqLens: [16384, 300],
    numHeads: 8,
    numKVHeads: 2,
    headDim: 128,
    qLen: 16,
    kvDtype: "f16",
  },
  { name: "d256 8k", seqLens: [8192, 3], numHeads: 8, numKVHeads: 8, headDim: 256, kvDtype: "f16" },
  { name: "d8 64k", seqLens: [65536], numHeads: 4, numKVHeads: 4, headDim: 8, kvDtype: "f32" },
  {
    name: "d80 odd 9999",
    seqLens: [9999, 65, 63],
    numHeads: 12,
    numKVHeads: 4,
    headDim: 80,
    qLen: 3,
    kvDtype: "bf16",
  },
  // 8-bit KV: per-tensor scales (int8), per-(token, KV head) scales (fp8e4m3), 8-byte loads (d40).
  {
    name: "gqa32/8 128k int8",
    seqLens: [131072],
    numHeads: 32,
    numKVHeads: 8,
    headDim: 128,
    kvDtype: "int8",
  },
  {
    name: "ragged e4m3 per-token",
    seqLens: [1, 5000, 70000, 77],
    numHeads: 8,
    numKVHeads: 2,
    headDim: 128,
    kvDtype: "fp8e4m3",
    perTokenScales: true,
  },
  {
    name: "d40 e5m2 qLen2",
    seqLens: [9000, 33],
    numHeads: 6,
    numKVHeads: 3,
    headDim: 40,
    qLen: 2,
    kvDtype: "fp8e5m2",
  },
];

let seed = 12345;
function random(): number {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return seed / 2 ** 32 - 0.5;
}

function makeInput(c: Case): DecodeInput {
  const qLen = c.qLen ?? 1;
  const tokens = c.seqLens.reduce((a, b) => a + b, 0);
  const kv = tokens * c.numKVHeads * c.headDim;
  const fill = (n: number, amp: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = random() * amp;
    return a;
  };
  // 8-bit dtypes: codes of about 6 bits (scale 2^-5 for values in [-1, 1)).
  const eightBit = c.kvDtype === "int8" || c.kvDtype === "fp8e4m3" || c.kvDtype === "fp8e5m2";
  const scale = () =>
    c.perTokenScales
      ? Float32Array.from({ length: tokens * c.numKVHeads }, () => 2 ** -5 * (1 + random()))
      : 2 ** -5;
  const scales = eightBit ? { kScale: scale(), vScale: scale() } : {};
  return {
    q: fill(c.seqLens.length * qLen * c.numHeads * c.headDim, 4),
    k: encodeKV(fill(kv, 2), c.kvDtype, eightBit ? { scale: scales.kScale } : undefined),
    v: encodeKV(fill(kv, 2), c.kvDtype, eightBit ? { scale: scales.vScale } : undefined),
    ...scales,
    seqLens: c.seqLens,
    numHeads: c.numHeads,
    numKVHeads: c.numKVHeads,
    headDim: c.headDim,
    qLen: c.qLen,
    kvDtype: c.kvDtype,
  };
}

interface Row {
  backend: string;
  adapter: string;
  grid: number;
  name: string;
  strategy: Strategy;
  relL2: number;
  lseErr: number;
  unwritten: number;
  ms: number;
  ok: boolean;
}

const rows: Row[] = [];
const adapters = new Map<string, string>();
for (const backend of ["webgpu", "dawn"] as BackendName[]) {
  let decoder;
  try {
    decoder = await createDecoder({ backend, poison: true });
  } catch (e) {
    console.log(`${backend}: not available (${(e as Error).message})`);
    continue;
  }
  adapters.set(
    backend,
    `${decoder.profile.name} (grid ${decoder.profile.grid}, ${decoder.profile.source})`,
  );
  console.log(`${backend}: ${adapters.get(backend)}`);
  for (const c of CASES) {
    if (Math.max(...c.seqLens) > maxContext) continue;
    const input = makeInput(c);
    const ref = referenceAttention(input);
    for (const strategy of ["lean", "split", "single"] as Strategy[]) {
      const t0 = performance.now();
      const { out, lse } = await decoder.decode({ ...input, strategy });
      const ms = performance.now() - t0;
      let num = 0;
      let den = 0;
      let lseErr = 0;
      let unwritten = 0;
      for (let i = 0; i < out.length; i++) {
        if (!Number.isFinite(out[i])) unwritten++;
        num += (out[i] - ref.out[i]) ** 2;
        den += ref.out[i] ** 2;
      }
      for (let i = 0; i < lse.length; i++) {
        if (!Number.isFinite(lse[i])) unwritten++;
        lseErr = Math.max(lseErr, Math.abs(lse[i] - ref.lse[i]));
      }
      const relL2 = Math.sqrt(num / den);
      const ok = unwritten === 0 && relL2 < 2e-5 && lseErr < 2e-4;
      const row = {
        backend,
        adapter: decoder.profile.name,
        grid: decoder.profile.grid,
        name: c.name,
        strategy,
        relL2,
        lseErr,
        unwritten,
        ms,
        ok,
      };
      rows.push(row);
      console.log(
        `${ok ? "ok  " : "FAIL"} ${backend.padEnd(6)} ${c.name.padEnd(22)} ${strategy.padEnd(6)} ` +
          `relL2 ${relL2.toExponential(2)} lse ${lseErr.toExponential(2)} unwritten ${unwritten} ` +
          `${ms.toFixed(1)} ms (wall, incl. upload)`,
      );
    }
  }
  await decoder.dispose();
}

const passed = rows.filter((r) => r.ok).length;
const failed = rows.length - passed;
const lines = [
  `# GPU correctness suite`,
  ``,
  `Command: \`deno run -A bench/gpu_suite.ts\` (${new Date().toISOString().slice(0, 10)})`,
  ``,
  ...[...adapters].map(([b, a]) => `- ${b}: ${a}`),
  ``,
  `| backend | case | strategy | rel L2 | LSE err | unwritten | ok |`,
  `| --- | --- | --- | --- | --- | --- | --- |`,
  ...rows.map((r) =>
    `| ${r.backend} | ${r.name} | ${r.strategy} | ${r.relL2.toExponential(2)} | ${
      r.lseErr.toExponential(2)
    } | ${r.unwritten} | ${r.ok ? "yes" : "NO"} |`
  ),
  ``,
  `${passed} passed, ${failed} failed`,
];
if (outFile) await Deno.writeTextFile(outFile, lines.join("\n") + "\n");
console.log(`${passed} passed, ${failed} failed`);
if (failed > 0 || rows.length === 0) Deno.exit(1);

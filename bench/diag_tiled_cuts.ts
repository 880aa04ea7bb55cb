// Temporary diagnostic (session 24): the library's tiled kernel with parts cut (LEAN_TILED_CUT).
import { createDecoder } from "../mod.ts";
import { makeInput } from "../tests/helpers.ts";
const spec = { seqLens: Array(8).fill(32768), numHeads: 128, numKVHeads: 1, headDim: 576, headDimV: 512, kvDtype: "f16" as const, seed: 3 };
const input = makeInput(spec);
const cut = Deno.env.get("LEAN_TILED_CUT") ?? "";
const decoder = await createDecoder({ backend: "webgpu" });
const t = await decoder.timeKernels({ ...input, strategy: "lean" }, { runs: 25, warmupMs: 400, streamMs: 2 });
console.log(`cut "${cut}": ${t.medianMs.toFixed(4)} / ${t.stream!.medianMs.toFixed(4)} ms`);
await decoder.dispose();

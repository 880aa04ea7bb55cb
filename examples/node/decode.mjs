// @lean/attention under Node with Dawn (npm `webgpu`).
//
//   deno task bundle                      # builds dist/lean_attention.js and ./dist, the Dawn entry
//   (cd examples/node && npm install)     # installs webgpu (Dawn)
//   node examples/node/decode.mjs         # --cpu: the CPU backend; --json: out and lse too
//
// Prints what ran and the error against the float64 reference, then one JSON line for scripts.
// In your own project, import from the package instead of the bundles:
//   npx jsr add @lean/attention && npm install webgpu
//   import "@lean/attention/dawn";        // registers Dawn for backend: "dawn"
//   import { createDecoder } from "@lean/attention";

// The Dawn entry's bundle lies here, not in ../../dist: its import("webgpu") resolves from its own
// folder, and npm installed webgpu into this one's node_modules.
import "./dist/lean_attention_dawn.js"; // registers Dawn for backend: "dawn"
import { createDecoder, encodeKV, referenceAttention } from "../../dist/lean_attention.js";
import { demoInput } from "../demo_input.js";

const useCpu = process.argv.includes("--cpu");
const printArrays = process.argv.includes("--json");

// A small ragged GQA batch: 3 sequences, 8 query heads sharing 2 KV heads, head dim 64, f16 KV.
const input = demoInput(encodeKV);
const tokens = input.seqLens.reduce((a, b) => a + b, 0);

let decoder;
let note = "";
try {
  decoder = await createDecoder({ backend: useCpu ? "cpu" : "dawn" });
} catch (error) {
  note = `WebGPU through Dawn is not available (${error.message}); using the CPU backend`;
  decoder = await createDecoder({ backend: "cpu" });
}
try {
  const t0 = performance.now();
  const { out, lse } = await decoder.decode(input);
  const ms = performance.now() - t0;
  const want = referenceAttention(input);
  let maxError = 0;
  for (let i = 0; i < out.length; i++) {
    maxError = Math.max(maxError, Math.abs(out[i] - want.out[i]));
  }
  let maxLseError = 0;
  for (let i = 0; i < lse.length; i++) {
    maxLseError = Math.max(maxLseError, Math.abs(lse[i] - want.lse[i]));
  }
  if (note) console.log(note);
  console.log(`node ${process.versions.node}, backend ${decoder.backend}: ${decoder.profile.name}`);
  console.log(
    `decoded ${input.seqLens.length} sequences (${tokens} tokens) in ${ms.toFixed(1)} ms`,
  );
  console.log(
    `max |out - reference| = ${maxError.toExponential(2)}, max |lse - reference| = ` +
      `${maxLseError.toExponential(2)}`,
  );
  console.log(JSON.stringify({
    node: process.versions.node,
    backend: decoder.backend,
    adapter: decoder.profile.name,
    note,
    outLength: out.length,
    maxError,
    maxLseError,
    ...(printArrays ? { out: Array.from(out), lse: Array.from(lse) } : {}),
  }));
} finally {
  // Destroys the device: Dawn keeps a thread busy until then.
  await decoder.dispose();
}

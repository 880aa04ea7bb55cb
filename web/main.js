// Runs one decode batch with @lean/attention in the browser: WebGPU when the browser gives an
// adapter, else the CPU backend, and compares the result with the float64 reference. The result
// is shown on the page and left in `globalThis.leanResult` for tests.
//
// Serve the repository root (after `deno task bundle`) and open /web/index.html, e.g.
//   deno task bundle && deno run --allow-net --allow-read jsr:@std/http/file-server .
//   (it needs to listen on a port and read the files it serves; or use any static server)

import { createDecoder, encodeKV, referenceAttention } from "../dist/lean_attention.js";
import { demoInput } from "../examples/demo_input.js";

const log = document.getElementById("log");
const lines = [];
const show = (line) => {
  lines.push(line);
  log.textContent = lines.join("\n");
};

/** The browser's WebGPU adapter (`{ info }`), or why there is none (`{ reason }`). */
async function probeWebGPU() {
  if (!globalThis.isSecureContext) {
    return { reason: "the page is not a secure context (use https or localhost)" };
  }
  if (!navigator.gpu) {
    return { reason: "navigator.gpu is undefined (WebGPU disabled or unsupported)" };
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) {
      return { reason: "navigator.gpu.requestAdapter() returned null (no usable adapter)" };
    }
    const { vendor, architecture, device, description } = adapter.info;
    const fallback = adapter.info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
    const name = [vendor, architecture, device, description].filter(Boolean).join(" ");
    return { info: `${name || "unnamed adapter"}${fallback ? " (fallback/software)" : ""}` };
  } catch (error) {
    return { reason: `navigator.gpu.requestAdapter() threw: ${error.message}` };
  }
}

async function run() {
  const params = new URLSearchParams(location.search);
  const forceCpu = params.get("backend") === "cpu";
  const input = demoInput(encodeKV);
  const probe = forceCpu ? { reason: "?backend=cpu" } : await probeWebGPU();
  let reason = probe.reason;
  let decoder;
  if (!reason) {
    try {
      decoder = await createDecoder({ backend: "webgpu" });
    } catch (error) {
      reason = `createDecoder({ backend: "webgpu" }) failed: ${error.message}`;
    }
  }
  decoder ??= await createDecoder({ backend: "cpu" });
  try {
    show(`backend: ${decoder.backend} (${decoder.profile.name}, grid ${decoder.profile.grid})`);
    if (probe.info) show(`WebGPU adapter: ${probe.info}`);
    if (reason) show(`WebGPU not used: ${reason}`);
    const t0 = performance.now();
    const { out, lse } = await decoder.decode(input);
    const ms = performance.now() - t0;
    const want = referenceAttention(input);
    let maxError = 0;
    let maxLseError = 0;
    for (let i = 0; i < out.length; i++) {
      maxError = Math.max(maxError, Math.abs(out[i] - want.out[i]));
    }
    for (let i = 0; i < lse.length; i++) {
      maxLseError = Math.max(maxLseError, Math.abs(lse[i] - want.lse[i]));
    }
    show(`decoded ${input.seqLens.length} sequences in ${ms.toFixed(1)} ms`);
    show(`max |out - reference| = ${maxError.toExponential(2)}`);
    show(`max |lse - reference| = ${maxLseError.toExponential(2)}`);
    globalThis.leanResult = {
      backend: decoder.backend,
      adapter: decoder.profile.name,
      adapterInfo: probe.info ?? null,
      reason: reason ?? null,
      outLength: out.length,
      out: Array.from(out),
      lse: Array.from(lse),
      maxError,
      maxLseError,
    };
  } finally {
    await decoder.dispose();
  }
}

run().catch((error) => {
  show(`error: ${error.stack ?? error}`);
  globalThis.leanResult = { error: String(error.stack ?? error) };
});

/**
 * The benchmark (bench/gpu_bench.ts, same flags) through Dawn with the matrix kernel's WGSL
 * rewritten by `--rewrite=NAME` (session 54): `layer-scales` reads a paged cache's per-layer
 * scale pair from the params block instead of the scale table (timing only: the values are
 * wrong, so do not pass `--check`).
 *
 * Usage: deno run -A --unstable-webgpu bench/diag_rewritten_bench.ts --rewrite=layer-scales
 *   --backend=dawn [gpu_bench flags]
 */

import { loadDawn } from "../dawn.ts";
import { matrixKernelRewriter } from "./diag_lib.ts";
import { layerScalesFromParams } from "./matrix_rewrites.ts";

const REWRITES: Record<string, (code: string) => string> = {
  "layer-scales": layerScalesFromParams,
};
const name = Deno.args.find((a) => a.startsWith("--rewrite="))?.split("=")[1] ?? "";
if (!(name in REWRITES)) {
  throw new RangeError(`--rewrite: expected one of ${Object.keys(REWRITES)}, got "${name}"`);
}
if (Deno.args.includes("--check")) throw new RangeError("--check: the rewritten values are wrong");
(await matrixKernelRewriter(await loadDawn()))(REWRITES[name]);
await import("./gpu_bench.ts");

/**
 * The source folders are the pipeline's stages, and dependencies run one way:
 * core ← kernels ← plan ← cpu, gpu ← runner ← decoder ← cli. Checked on the import statements
 * of every module under src/ (doc examples are not imports).
 */

import assert from "node:assert/strict";

const SRC = new URL("../src/", import.meta.url);

/** Stage of a module path relative to src/: the higher stage may import the lower. */
function stage(path: string): { name: string; rank: number } {
  // The decoder's types (decoder_types.ts) are the decoder's stage.
  const folder = path.includes("/")
    ? path.slice(0, path.indexOf("/"))
    : path === "decoder_types.ts"
    ? "decoder.ts"
    : path;
  const ranks: Record<string, number> = {
    core: 0,
    kernels: 1,
    plan: 2,
    cpu: 3,
    gpu: 3,
    runner: 4,
    "decoder.ts": 5,
    cli: 6,
  };
  assert.ok(folder in ranks, `src/${path} is in a known stage folder`);
  return { name: folder, rank: ranks[folder] };
}

async function* modules(dir: URL, prefix = ""): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) yield* modules(new URL(`${e.name}/`, dir), `${prefix}${e.name}/`);
    else if (e.name.endsWith(".ts")) yield `${prefix}${e.name}`;
  }
}

Deno.test("src/ imports run one way through the pipeline's stages", async () => {
  let checked = 0;
  for await (const path of modules(SRC)) {
    const from = stage(path);
    const text = await Deno.readTextFile(new URL(path, SRC));
    const specifiers = [...text.matchAll(/^(?:import|export)\b[^;]*?from\s+"(\.[^"]+)";/gms)]
      .map((m) => m[1]);
    for (const spec of specifiers) {
      const target = new URL(spec, new URL(path, SRC)).href;
      assert.ok(target.startsWith(SRC.href), `src/${path} imports ${spec} outside src/`);
      const to = stage(target.slice(SRC.href.length));
      assert.ok(
        to.rank < from.rank || to.name === from.name,
        `src/${path} (${from.name}) must not import ${spec} (${to.name})`,
      );
      checked++;
    }
  }
  assert.ok(checked > 100, `${checked} imports checked`);
});

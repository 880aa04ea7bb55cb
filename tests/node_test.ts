/**
 * The package under Node 20+ with Dawn (npm `webgpu`): builds the ESM bundle, installs
 * `examples/node`'s dependencies when missing, runs `examples/node/decode.mjs` on Dawn and on
 * the CPU backend, and checks its output against Deno's float64 reference. Ignored, with the
 * reason printed, where `node` is missing; in CI it fails instead.
 */

import assert from "node:assert/strict";
import { assertMatchesReference, buildBundle, ROOT, run } from "./bundle.ts";
import { ignoreWithout, nodeMajor } from "./requirements.ts";

const EXAMPLE_DIR = `${ROOT}examples/node`;

async function ensureNode(): Promise<string> {
  const version = await run("node", ["--version"], {
    missing: "the Node test needs Node 20 or later on PATH (apt-get install nodejs, or nvm)",
  });
  const major = Number(/^v(\d+)\./.exec(version.stdout.trim())?.[1]);
  assert.ok(major >= 20, `node must be version 20 or later: got ${version.stdout.trim()}`);
  return version.stdout.trim();
}

async function ensureDawn(): Promise<void> {
  try {
    await Deno.stat(`${EXAMPLE_DIR}/node_modules/webgpu/package.json`);
    return;
  } catch {
    // Not installed yet.
  }
  const install = await run("npm", ["ci", "--no-audit", "--no-fund"], {
    cwd: EXAMPLE_DIR,
    missing: "the Node test needs npm to install webgpu (Dawn) into examples/node",
  });
  assert.equal(install.code, 0, `npm ci in examples/node failed:\n${install.stderr}`);
}

function lastJsonLine(stdout: string): Record<string, unknown> {
  const line = stdout.trim().split("\n").at(-1) ?? "";
  assert.ok(line.startsWith("{"), `the example ends with a JSON line: got ${line.slice(0, 200)}`);
  return JSON.parse(line);
}

const NAME =
  "examples/node/decode.mjs runs under Node on Dawn and on the CPU and matches the reference";

Deno.test({
  name: NAME,
  ignore: ignoreWithout(
    await nodeMajor() >= 20,
    NAME,
    "no Node 20 or later on PATH (apt-get install nodejs from a current source, or nvm)",
  ),
  // Dawn keeps native handles; the example runs in its own process anyway.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const version = await ensureNode();
    await buildBundle();
    await ensureDawn();

    await t.step("CPU backend", async () => {
      const r = await run("node", ["examples/node/decode.mjs", "--cpu", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const result = lastJsonLine(r.stdout);
      assert.equal(result.backend, "cpu");
      assert.equal(`v${result.node}`, version);
      assertMatchesReference(result as { out: number[]; lse: number[] }, "node cpu");
    });

    await t.step("Dawn (npm webgpu)", async () => {
      const r = await run("node", ["examples/node/decode.mjs", "--json"]);
      assert.equal(r.code, 0, r.stderr);
      const result = lastJsonLine(r.stdout);
      if (result.backend !== "dawn") {
        // No adapter on this machine (no GPU, no lavapipe): the example says so and falls back.
        assert.match(String(result.note), /WebGPU through Dawn is not available/);
        console.log(`Dawn gave no adapter here: ${result.note}`);
      } else {
        assert.ok(String(result.adapter).length > 0);
      }
      assertMatchesReference(result as { out: number[]; lse: number[] }, `node ${result.backend}`);
      assert.match(r.stdout, /max \|out - reference\| = \d\.\d+e-\d+/);
    });
  },
});

/**
 * Test helpers for the Node and browser tests: build the ESM bundle (`deno task bundle`), run a
 * command and check a result from outside Deno against the float64 reference on the same input.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeKV, referenceAttention } from "../mod.ts";
// @ts-types="../examples/demo_input.d.ts"
import { demoInput } from "../examples/demo_input.js";

/** The repository root. */
export const ROOT: string = new URL("..", import.meta.url).pathname;

/** Output of a finished command. */
export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command to completion. A missing program fails with `missing` (what to install), never
 * silently.
 */
export async function run(
  program: string,
  args: string[],
  options: { cwd?: string; missing?: string; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(program, {
      args,
      cwd: options.cwd ?? ROOT,
      env: options.env,
      stdin: "null",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`${program} is not installed: ${options.missing ?? "install it"}`);
    }
    throw error;
  }
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** Builds `dist/lean_attention.js` with `deno task bundle` and returns its path. */
export async function buildBundle(): Promise<string> {
  const result = await run(Deno.execPath(), ["task", "--quiet", "bundle"], {
    env: { NO_COLOR: "1" },
  });
  assert.equal(result.code, 0, `deno task bundle failed:\n${result.stderr}`);
  const path = `${ROOT}dist/lean_attention.js`;
  const bundle = await Deno.readTextFile(path);
  assert.ok(bundle.includes("createDecoder"), "the bundle exports createDecoder");
  assert.ok(!/from "node:|require\(/.test(bundle), "the bundle has no Node-only imports");
  return path;
}

/** A decode result produced outside Deno (Node, a browser page). */
export interface ForeignResult {
  readonly out: number[];
  readonly lse: number[];
}

/**
 * Checks a result for `examples/demo_input.js`'s batch against Deno's float64 reference: the
 * foreign runtime's own error report is not trusted.
 */
export function assertMatchesReference(result: ForeignResult, what: string): void {
  const want = referenceAttention(demoInput(encodeKV));
  assert.equal(result.out.length, want.out.length, `${what}: out length`);
  assert.equal(result.lse.length, want.lse.length, `${what}: lse length`);
  let maxOut = 0;
  for (let i = 0; i < want.out.length; i++) {
    const d = Math.abs(result.out[i] - want.out[i]);
    if (!(d <= maxOut)) maxOut = d;
  }
  let maxLse = 0;
  for (let i = 0; i < want.lse.length; i++) {
    const d = Math.abs(result.lse[i] - want.lse[i]);
    if (!(d <= maxLse)) maxLse = d;
  }
  assert.ok(maxOut < 1e-5, `${what}: max |out - reference| = ${maxOut}`);
  assert.ok(maxLse < 1e-4, `${what}: max |lse - reference| = ${maxLse}`);
}

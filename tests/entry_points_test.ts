/**
 * The package's entry points: the main entry's module graph holds no npm package (Dawn comes only
 * from `@lean/attention/dawn`), `backend: "dawn"` without that entry or without `--allow-ffi`
 * says what is missing, and `VERSION` (also `cli.ts --version` and every `--json`) is
 * `deno.json`'s version.
 */

import assert from "node:assert/strict";
import { VERSION } from "../mod.ts";
import { captureIO, runCli } from "../cli.ts";

const ROOT = new URL("..", import.meta.url).pathname;

async function deno(
  args: string[],
  stdin?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

interface GraphModule {
  specifier: string;
  kind?: string;
  size?: number;
}

async function moduleGraph(entry: string): Promise<GraphModule[]> {
  const r = await deno(["info", "--json", entry]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { modules: GraphModule[] }).modules;
}

Deno.test("the main and CLI entries' module graphs hold no npm package and stay small", async () => {
  for (const entry of ["mod.ts", "plan.ts", "runner.ts", "cli.ts"]) {
    const modules = await moduleGraph(entry);
    const npm = modules.filter((m) => m.kind === "npm" || m.specifier.startsWith("npm:"));
    assert.deepEqual(npm.map((m) => m.specifier), [], `${entry} imports no npm package`);
    assert.ok(modules.every((m) => m.specifier.startsWith("file://")), `${entry}: local only`);
    const bytes = modules.reduce((a, m) => a + (m.size ?? 0), 0);
    assert.ok(bytes > 50_000 && bytes < 1_000_000, `${entry}: ${bytes} bytes of modules`);
  }
  // The Dawn entry is where npm webgpu is: the check above can fail.
  const dawn = await moduleGraph("dawn.ts");
  assert.ok(dawn.some((m) => /^npm:\/?webgpu@/.test(m.specifier)), "dawn.ts imports npm webgpu");
});

const DAWN_CALL = `
import { createDecoder } from "./mod.ts";
try {
  await createDecoder({ backend: "dawn" });
  console.log("opened");
} catch (error) {
  console.log(error.constructor.name + ": " + error.message);
}
`;

Deno.test('backend: "dawn" without the Dawn entry says how to get it', async () => {
  const r = await deno(["run", "--allow-read", "-"], DAWN_CALL);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout.trim(),
    'Error: the dawn backend is opt-in: add `import "@lean/attention/dawn";` to the program ' +
      'before createDecoder({ backend: "dawn" }) (it loads Dawn from npm "webgpu": in Deno run ' +
      'with --allow-ffi, in Node npm install webgpu), or use backend: "webgpu" for the ' +
      "runtime's own WebGPU",
  );
});

Deno.test("Dawn in Deno without --allow-ffi says that permission is missing", async () => {
  const r = await deno(["run", "--allow-read", "-"], `import "./dawn.ts";\n${DAWN_CALL}`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout.trim(),
    /^Error: Dawn needs the ffi permission: npm "webgpu" is a native addon, which Deno loads through FFI; run deno with --allow-ffi \(/,
  );

  // The CLI loads the entry for --backend=dawn, and says which permission is missing.
  const cli = await deno(["run", "--allow-read", "cli.ts", "demo", "--backend=dawn"]);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /^error: Dawn needs the ffi permission: .*run deno with --allow-ffi/);
  const noRead = await deno(["run", "cli.ts", "demo", "--backend=dawn"]);
  assert.equal(noRead.code, 1);
  assert.match(
    noRead.stderr,
    /^error: could not load the Dawn entry file:\/\/.*\/dawn\.ts \(run deno with --allow-read\)/,
  );
});

Deno.test("VERSION is deno.json's version, printed by --version and in every --json", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  assert.match(config.version, /^\d+\.\d+\.\d+/);
  assert.equal(VERSION, config.version);

  let io = captureIO();
  assert.equal(await runCli(["--version"], io), 0);
  assert.equal(io.stdout, `@lean/attention ${config.version}\n`);

  const shape = ["--heads=2", "--kv-heads=1", "--head-dim=8"];
  const commands = [
    ["bench", "--backend=cpu", "--contexts=64", "--runs=1", ...shape],
    ["demo", "--backend=cpu", "--runs=1", "--seq-lens=70,9"],
    ["info"],
  ];
  for (const argv of commands) {
    io = captureIO();
    assert.equal(await runCli([...argv, "--json"], io), 0, `${argv[0]}: ${io.stderr}`);
    assert.equal(JSON.parse(io.stdout).version, config.version, argv[0]);
  }
});

Deno.test("the package publishes every entry it exports", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  assert.deepEqual(config.exports, {
    ".": "./mod.ts",
    "./plan": "./plan.ts",
    "./runner": "./runner.ts",
    "./dawn": "./dawn.ts",
    "./cli": "./cli.ts",
  });
  for (const path of Object.values(config.exports) as string[]) {
    assert.ok(config.publish.include.includes(path.slice(2)), `${path} is published`);
  }
});

Deno.test("deno publish --dry-run is clean: no warnings, every entry in the package", async () => {
  const r = await deno(["publish", "--dry-run", "--allow-dirty"]);
  const output = r.stdout + r.stderr;
  assert.equal(r.code, 0, output);
  assert.ok(!/warning|error/i.test(output), output);
  assert.match(output, /Success Dry run complete/);
  for (
    const file of ["mod.ts", "plan.ts", "runner.ts", "dawn.ts", "cli.ts", "README.md", "LICENSE"]
  ) {
    assert.ok(output.includes(`file://${ROOT}${file} `), `${file} is published`);
  }
  assert.ok(!output.includes(`file://${ROOT}tests/`), "tests are not published");
});

Deno.test("the publish workflow publishes to JSR with provenance on a release or a version tag", async () => {
  const yml = await Deno.readTextFile(`${ROOT}.github/workflows/publish.yml`);
  assert.match(
    yml,
    /^on:\n {2}release:\n {4}types: \[published\]\n {2}push:\n {4}tags: \["v\*"\]$/m,
  );
  assert.match(yml, /^permissions:\n {2}contents: read\n {2}id-token: write$/m);
  assert.match(yml, /run: .*npx --yes jsr@\S+ publish --provenance$/m);
  assert.match(yml, /deno publish --dry-run$/m, "checked before publishing");
  assert.ok(!/secrets\./.test(yml), "OIDC, no token secret");
});

Deno.test("deno doc --lint is clean for every entry", async () => {
  const entries = ["mod.ts", "plan.ts", "runner.ts", "dawn.ts", "cli.ts"];
  // All together, and each on its own (every type an entry's signatures use is exported there).
  for (const args of [entries, ...entries.map((e) => [e])]) {
    const r = await deno(["doc", "--lint", ...args]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(!/error|warning/i.test(r.stdout + r.stderr), r.stdout + r.stderr);
  }
});

Deno.test("table internals live in the plan entry, the runner API in the runner entry", async () => {
  const main: Record<string, unknown> = await import("../mod.ts");
  const plan: Record<string, unknown> = await import("../plan.ts");
  const runner: Record<string, unknown> = await import("../runner.ts");
  for (const name of ["PIECE", "REDUCE", "PIECE_STRIDE", "unitRuns", "validateFlag", "schedule"]) {
    assert.ok(!(name in main), `${name} is not in the main entry`);
    assert.ok(name in plan, `${name} is in the plan entry`);
  }
  for (const name of ["createKVCache", "KVCache", "createAttentionEncoder", "planForCache"]) {
    assert.ok(!(name in main), `${name} is not in the main entry`);
    assert.ok(name in runner, `${name} is in the runner entry`);
  }
  for (
    const name of ["createDecoder", "mergeStates", "referenceAttention", "encodeKV", "VERSION"]
  ) {
    assert.ok(name in main, `${name} is in the main entry`);
  }
});

Deno.test("cli.ts plan writes no file unless told where: it runs without write permission", async () => {
  const r = await deno(["run", "cli.ts", "plan", "--seq-lens=500,60", "--grid=8"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^lean: 2 seq x 8 kv heads/);
  assert.ok(!r.stdout.includes("wrote"), r.stdout);
  const refused = await deno(["run", "cli.ts", "plan", "--grid=8", "--out=x.svg"]);
  assert.equal(refused.code, 1, "--out needs --allow-write");
  assert.match(refused.stderr, /^error: .*write access to "x\.svg"/);
});

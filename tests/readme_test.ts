/**
 * The README cannot go stale: every TypeScript example runs, and what it prints must equal what
 * the README shows (the `// ...` comment beside each `console.log`, or the `text` block right
 * after the example); every `$ deno task cli ...` line of a `console` block prints the lines shown
 * under it; the CLI commands and tasks of the `sh` blocks exist and their flags parse; and
 * `docs/plan.svg` is what `deno task docs:plan` draws.
 */

import assert from "node:assert/strict";
import {
  BENCH_FLAGS,
  captureIO,
  DEMO_FLAGS,
  INFO_FLAGS,
  parseFlags,
  PLAN_FLAGS,
  runCli,
} from "../cli.ts";

const ROOT = new URL("..", import.meta.url);
const README = await Deno.readTextFile(new URL("README.md", ROOT));
const CONFIG = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));

/** A fenced code block of the README. */
interface Block {
  /** The info string: language and flags, e.g. `ts ignore`. */
  info: string;
  /** The code, with the fence's indentation removed. */
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
}

function fencedBlocks(markdown: string): Block[] {
  const lines = markdown.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S.*)?$/.exec(lines[i]);
    if (!open) continue;
    const indent = open[1].length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]); j++) {
      body.push(lines[j].slice(indent));
    }
    blocks.push({ info: (open[2] ?? "").trim(), code: body.join("\n"), line: i + 1 });
    i = j;
  }
  return blocks;
}

const BLOCKS = fencedBlocks(README);

/** Whether `b` directly follows `a` in the README (nothing but blank lines between). */
function follows(a: Block, b: Block): boolean {
  // 0-based: the opening fence is line a.line - 1, the closing one a.line + (code lines).
  const between = README.split("\n").slice(a.line + a.code.split("\n").length + 1, b.line - 1);
  return between.every((l) => l.trim() === "");
}

/** What an example says it prints: the `text` block after it, or the comments on its logs. */
function expectedOutput(block: Block, next: Block | undefined): string[] {
  if (next?.info === "text" && follows(block, next)) return next.code.split("\n");
  return block.code.split("\n").flatMap((line) => {
    if (!line.includes("console.log(")) return [];
    const comment = /\/\/ (.*)$/.exec(line);
    assert.ok(comment, `README line ${block.line}: a console.log without the output it prints`);
    return [comment[1]];
  });
}

/** Runs an example as a module of its own (the package's specifiers mapped to this checkout). */
async function runExample(block: Block): Promise<string[]> {
  const entries: Record<string, string> = {
    "@lean/attention": "mod.ts",
    "@lean/attention/plan": "plan.ts",
    "@lean/attention/runner": "runner.ts",
    "@lean/attention/cli": "cli.ts",
    "@lean/attention/dawn": "dawn.ts",
  };
  const code = block.code.replace(
    /from "(@lean\/attention(?:\/\w+)?)"/g,
    (_, name: string) => {
      assert.ok(name in entries, `README line ${block.line}: unknown entry ${name}`);
      return `from "${new URL(entries[name], ROOT).href}"`;
    },
  );
  const dir = await Deno.makeTempDir();
  const file = `${dir}/readme_line_${block.line}.ts`;
  await Deno.writeTextFile(file, code);
  const printed: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => {
    const line = args.map((a) => typeof a === "string" ? a : Deno.inspect(a)).join(" ");
    printed.push(...line.split("\n"));
  };
  try {
    await import(new URL(`file://${file}`).href);
  } finally {
    console.log = log;
    await Deno.remove(dir, { recursive: true });
  }
  return printed;
}

const examples = BLOCKS.map((block, i) => ({ block, next: BLOCKS[i + 1] }))
  .filter(({ block }) => block.info === "ts");

Deno.test("the README has the examples this test checks", () => {
  assert.ok(examples.length >= 5, `TypeScript examples found: ${examples.length}`);
  const ignored = BLOCKS.filter((b) => /^(ts|js)\b.*\bignore\b/.test(b.info));
  // Only the examples that need a GPU device or Node are not run here.
  assert.ok(ignored.length <= 3, `ignored examples: ${ignored.map((b) => b.line).join(", ")}`);
  assert.ok(
    BLOCKS.every((b) => ["ts", "ts ignore", "js ignore", "sh", "text", "console"].includes(b.info)),
    `block kinds: ${[...new Set(BLOCKS.map((b) => b.info))].join(", ")}`,
  );
});

for (const { block, next } of examples) {
  const first = block.code.split("\n").find((l) => l.trim() && !l.startsWith("import")) ?? "";
  Deno.test({
    name: `README example at line ${block.line} prints what the README shows (${first.trim()})`,
    // The first example opens the best backend, which may hold a GPU adapter.
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      const want = expectedOutput(block, next);
      assert.ok(want.length > 0, `README line ${block.line}: the example shows what it prints`);
      assert.deepEqual(await runExample(block), want, `README line ${block.line}`);
    },
  });
}

Deno.test("README console blocks: each `$ deno task cli` line prints the lines under it", async () => {
  let commands = 0;
  for (const block of BLOCKS.filter((b) => b.info === "console")) {
    const lines = block.code.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const command = /^\$ deno task cli (.*)$/.exec(lines[i]);
      if (!command) continue;
      const shown: string[] = [];
      for (let j = i + 1; j < lines.length && !lines[j].startsWith("$ "); j++) shown.push(lines[j]);
      const io = captureIO();
      await runCli(command[1].split(" "), io);
      const printed = (io.stdout + io.stderr).split("\n").slice(0, shown.length);
      assert.deepEqual(printed, shown, `README line ${block.line + 1 + i}: ${lines[i]}`);
      commands++;
    }
  }
  assert.ok(commands >= 2, `commands checked: ${commands}`);
});

Deno.test("README sh blocks: tasks exist, files exist, CLI flags parse, no -A", async () => {
  const specs: Record<string, Parameters<typeof parseFlags>[1]> = {
    demo: DEMO_FLAGS,
    bench: BENCH_FLAGS,
    plan: PLAN_FLAGS,
    info: INFO_FLAGS,
  };
  let cliCommands = 0;
  for (const block of BLOCKS.filter((b) => b.info === "sh")) {
    for (const raw of block.code.split("\n")) {
      const line = raw.replace(/\s+#.*$/, "").trim();
      const where = `README line ${block.line}: ${line}`;
      if (!/\bdeno (run|task|test|bench)\b/.test(line)) continue;
      assert.ok(!/ -A\b/.test(line), `${where}: name the permissions, not -A`);
      assert.ok(!line.includes("--unstable-webgpu"), `${where}: Deno 2.9.6 needs no flag`);
      const task = /\bdeno(?:@[\d.]+)? task (\S+)/.exec(line);
      if (task) assert.ok(task[1] in CONFIG.tasks, `${where}: no task ${task[1]}`);
      const script = /\s((?:examples|bench)\/\S+\.ts)\b/.exec(line);
      if (script) await Deno.stat(new URL(script[1], ROOT));
      const cli = /jsr:@lean\/attention\/cli(?: (\w+))?((?: --\S+)*)$/.exec(line);
      if (cli) {
        const flags = cli[2].trim() === "" ? [] : cli[2].trim().split(" ");
        parseFlags(flags, specs[cli[1] ?? "demo"]);
        cliCommands++;
      }
    }
  }
  assert.ok(cliCommands >= 4, `CLI commands checked: ${cliCommands}`);
});

Deno.test("docs/plan.svg is what `deno task docs:plan` draws", async () => {
  const task: string = CONFIG.tasks["docs:plan"];
  const args = task.split(" cli.ts ")[1].split(" ");
  assert.ok(args.includes("--out=docs/plan.svg") && args.includes("--strategy=all"), task);
  assert.ok(task.startsWith("deno run --allow-write=docs/plan.svg cli.ts "), task);
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/plan.svg`;
    const io = captureIO();
    const argv = args.map((a) => a === "--out=docs/plan.svg" ? `--out=${out}` : a);
    assert.equal(await runCli(argv, io), 0, io.stderr);
    const drawn = await Deno.readTextFile(out);
    const committed = await Deno.readTextFile(new URL("docs/plan.svg", ROOT));
    assert.ok(drawn === committed, "docs/plan.svg is stale: run deno task docs:plan");
    // The picture holds the three strategies the README's caption describes.
    assert.equal(committed.split('class="panel"').length - 1, 3);
    for (const title of ["lean: 16 workgroups", "split: 14 workgroups", "single: 8 workgroups"]) {
      assert.ok(committed.includes(title), title);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const caption = /!\[([^\]]*)\]\(docs\/plan\.svg\)/.exec(README)?.[1] ?? "";
  assert.match(caption, /16, 14 and 8 workgroups, longest runs 9, 24 and 47 tiles/);
});

Deno.test("the README's TypeScript examples type-check", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["check", "--doc-only", "README.md"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text);
});

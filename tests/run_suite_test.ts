/**
 * The suite runner behind `deno task test` (tests/run_suite.ts): which files it takes for test
 * modules, and how it reads each process's summary line.
 */

import assert from "node:assert/strict";
import {
  CRASH_RERUNS,
  isTestModule,
  parseSummary,
  runCountingCrashes,
  testModules,
} from "./run_suite.ts";

Deno.test("run_suite: test modules by deno test's naming rule, excluded folders left out", () => {
  for (const name of ["a_test.ts", "a.test.ts", "test.ts", "a_test.mjs", "b.test.jsx"]) {
    assert.equal(isTestModule(name), true, name);
  }
  for (const name of ["helpers.ts", "contest.ts", "a_test.md", "test_a.ts", "a_tests.ts"]) {
    assert.equal(isTestModule(name), false, name);
  }
  const root = Deno.makeTempDirSync();
  try {
    for (const dir of ["tests/sub", "node_modules/x", ".git", "dist"]) {
      Deno.mkdirSync(`${root}/${dir}`, { recursive: true });
    }
    for (
      const file of [
        "tests/b_test.ts",
        "tests/sub/a_test.ts",
        "tests/helpers.ts",
        "node_modules/x/c_test.ts",
        ".git/d_test.ts",
        "dist/e_test.ts",
        "f_test.ts",
      ]
    ) Deno.writeTextFileSync(`${root}/${file}`, "");
    assert.deepEqual(testModules(root), ["f_test.ts", "tests/b_test.ts", "tests/sub/a_test.ts"]);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("run_suite: the last summary line's counts, with or without colours", () => {
  const output = [
    "running 2 tests from ./tests/a_test.ts",
    "a ... ok (1ms)",
    "ok | 2 passed | 0 failed (5ms)",
    "",
    "FAILED | 40 passed | 3 failed | 7 ignored (1m2s)",
  ].join("\n");
  assert.deepEqual(parseSummary(output), { ok: false, passed: 40, failed: 3, ignored: 7 });
  assert.deepEqual(
    parseSummary("\x1b[0m\x1b[32mok\x1b[0m | 321 passed | 0 failed \x1b[0m\x1b[38;5;245m(37s)"),
    { ok: true, passed: 321, failed: 0, ignored: 0 },
  );
  assert.equal(parseSummary("error: Module not found"), undefined);
  assert.equal(parseSummary("ok | no summary here"), undefined);
});

Deno.test("run_suite: a crash at exit after 0 failures runs again, at most CRASH_RERUNS times", async () => {
  const passed = "ok | 2 passed | 0 failed (1s)";
  const outcome = async (codes: number[], output = passed) => {
    const runs = codes.map((code) => ({ code, output }));
    const logs: string[] = [];
    const result = await runCountingCrashes(
      "a_test.ts",
      () => Promise.resolve(runs.shift()!),
      (t) => {
        logs.push(t);
      },
    );
    return { code: result.run.code, logs: logs.length, left: runs.length, ok: result.summary?.ok };
  };
  // Two crashes, then a clean run: that run counts.
  assert.deepEqual(await outcome([134, 139, 0, 0]), { code: 0, logs: 2, left: 1, ok: true });
  // Crashes every time: the last allowed run's crash counts.
  const crashes = Array(CRASH_RERUNS + 2).fill(134);
  assert.deepEqual(await outcome(crashes), { code: 134, logs: CRASH_RERUNS, left: 1, ok: true });
  // A failed test, or another exit status, is never run again.
  const failed = "FAILED | 1 passed | 1 failed (1s)";
  assert.deepEqual(await outcome([134, 0], failed), { code: 134, logs: 0, left: 1, ok: false });
  assert.deepEqual(await outcome([1, 0]), { code: 1, logs: 0, left: 1, ok: true });
});

/**
 * Tests that need a program beside Deno (Node, Chromium): where it is missing they are ignored
 * with the reason printed, since they cannot run; in CI (`CI=true`), which installs both, a
 * missing program fails the test instead, so a broken install never hides as ignored.
 *
 * @module
 */

import { envVar } from "./kernel_set.ts";

/** The major version of `node` on PATH, or 0 when it does not run. */
export async function nodeMajor(): Promise<number> {
  try {
    const { success, stdout } = await new Deno.Command("node", {
      args: ["--version"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const version = new TextDecoder().decode(stdout).trim();
    return success ? Number(/^v(\d+)\./.exec(version)?.[1] ?? 0) : 0;
  } catch {
    return 0;
  }
}

/** Whether a file exists. */
export async function hasFile(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** True under CI (`CI=true`), where every test's requirements are installed. */
export const IN_CI: boolean = envVar("CI") === "true";

/**
 * Whether to ignore a test whose requirement is `available`: prints the reason when it does.
 * Never ignores in CI (the test then fails, naming what is missing).
 */
export function ignoreWithout(available: boolean, test: string, missing: string): boolean {
  if (available || IN_CI) return false;
  console.log(`ignoring "${test}": ${missing}`);
  return true;
}

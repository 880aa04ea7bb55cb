/**
 * Loads the `@lean/attention/dawn` entry for the CLI, only when a command needs Dawn
 * (`--backend=dawn`, `info --dawn`). Deno downloads every module a program's graph names before it
 * runs, dynamic imports with a literal specifier included; naming the entry here would download
 * npm `webgpu` (about 130 MB) on every run of the CLI. The specifier is therefore computed and
 * imported through a function the module graph cannot see.
 *
 * @module
 */

import { dawnRegistered } from "../gpu/gpu_runtime.ts";

/** `import()` hidden from Deno's module graph (and from `deno publish`'s analysis). */
const importAtRuntime = new Function("specifier", "return import(specifier)") as (
  specifier: string,
) => Promise<unknown>;

/**
 * Imports `dawn.ts` (which registers Dawn) unless it is registered already. Throws an `Error`
 * naming the permission when the runtime refuses to read the entry.
 */
export async function loadDawnEntry(): Promise<void> {
  if (dawnRegistered()) return;
  const url = new URL("../../dawn.ts", import.meta.url).href;
  try {
    await importAtRuntime(url);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const local = url.startsWith("file:");
    throw new Error(
      `could not load the Dawn entry ${url}` +
        (local && /read access/i.test(message) ? " (run deno with --allow-read)" : "") +
        `: ${message}`,
    );
  }
}

/**
 * The end-to-end demo moved to the CLI (`cli.ts demo`, `deno task demo`); this wrapper keeps
 * `deno run -A --unstable-webgpu bench/demo.ts [flags]` working.
 *
 * @module
 */

import { runCli } from "../cli.ts";

if (import.meta.main) Deno.exit(await runCli(["demo", ...Deno.args]));

/**
 * The package version, kept equal to `deno.json`'s `version` by a test (the published package
 * cannot read its own `deno.json` at run time).
 *
 * @module
 */

/**
 * The version of `@lean/attention`.
 *
 * @example
 * ```ts
 * import { VERSION } from "@lean/attention";
 * console.log(/^\d+\.\d+\.\d+/.test(VERSION)); // true
 * ```
 */
export const VERSION = "0.1.0";

/**
 * Command-line flag parsing for the CLI: `--name=value`, `--name value` and boolean `--name`,
 * checked against a table of flag specs. A bad flag throws a {@linkcode UsageError} that names
 * the flag and the value; the CLI prints it with the command's usage and exits with code 2.
 *
 * @module
 */

/**
 * A usage mistake on the command line (unknown flag, bad value): exit code 2.
 *
 * @example
 * ```ts
 * import { UsageError } from "@lean/attention/cli";
 * const error = new UsageError('Flag --runs must be an integer from 1 to 1000: got "0"');
 * console.log(error.exitCode, error.name); // 2 UsageError
 * ```
 */
export class UsageError extends Error {
  /** The exit code the CLI returns for usage errors. */
  readonly exitCode: number = 2;

  /** Creates the error with a sentence-case message naming the flag and the value. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * How one flag is spelled and what values it takes.
 *
 * @example
 * ```ts
 * import { parseFlags, type FlagSpecs } from "@lean/attention/cli";
 * const specs: FlagSpecs = {
 *   backend: { kind: "choice", choices: ["cpu", "webgpu"], help: "backend" },
 *   "seq-lens": { kind: "integers", min: 1, max: 1 << 20, maxCount: 64, help: "lengths" },
 * };
 * console.log(parseFlags(["--seq-lens=5,9"], specs).flags["seq-lens"]); // [ 5, 9 ]
 * ```
 */
export type FlagSpec =
  | { readonly kind: "boolean"; readonly help: string }
  | { readonly kind: "string"; readonly help: string; readonly placeholder: string }
  | { readonly kind: "choice"; readonly help: string; readonly choices: readonly string[] }
  | {
    readonly kind: "integer";
    readonly help: string;
    readonly min: number;
    readonly max: number;
  }
  | {
    readonly kind: "integers";
    readonly help: string;
    readonly min: number;
    readonly max: number;
    /** Most list entries accepted. */
    readonly maxCount: number;
  };

/**
 * Flag specs of one command, by flag name without the dashes (`"seq-lens"`).
 *
 * @example
 * ```ts
 * import { parseFlags, type FlagSpecs } from "@lean/attention/cli";
 * const specs: FlagSpecs = {
 *   backend: { kind: "choice", choices: ["cpu", "webgpu"], help: "backend" },
 *   "seq-lens": { kind: "integers", min: 1, max: 1 << 20, maxCount: 64, help: "lengths" },
 * };
 * console.log(parseFlags(["--seq-lens=5,9"], specs).flags["seq-lens"]); // [ 5, 9 ]
 * ```
 */
export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/**
 * `--q-len`, shared by `demo` and `bench`: query tokens per sequence.
 *
 * @example
 * ```ts
 * import { parseFlags, Q_LEN_FLAG } from "@lean/attention/cli";
 * console.log(parseFlags(["--q-len=4"], { "q-len": Q_LEN_FLAG }).flags["q-len"]); // 4
 * ```
 */
export const Q_LEN_FLAG: {
  readonly kind: "integer";
  readonly min: 1;
  readonly max: 16;
  readonly help: string;
} = {
  kind: "integer",
  min: 1,
  max: 16,
  help: "query tokens per sequence, as in speculative verification (default 1)",
};

/**
 * `--matrix-math`, shared by `demo` and `bench`: `kernel: { matrixMath: true }`.
 *
 * @example
 * ```ts
 * import { MATRIX_MATH_FLAG, parseFlags } from "@lean/attention/cli";
 * console.log(parseFlags(["--matrix-math"], { "matrix-math": MATRIX_MATH_FLAG }).flags["matrix-math"]); // true
 * ```
 */
export const MATRIX_MATH_FLAG: { readonly kind: "boolean"; readonly help: string } = {
  kind: "boolean",
  help: "the f16 matrix-unit kernel where the device has it (Dawn on NVIDIA: --backend=dawn), " +
    "for 16+ query rows per KV head over f16 or 8-bit KV; f16-grade results " +
    "(kernel: { matrixMath: true })",
};

/**
 * The parsed value type of a flag spec.
 *
 * @example
 * ```ts
 * import type { FlagValue } from "@lean/attention/cli";
 * const runs: FlagValue<{ kind: "integer"; help: ""; min: 1; max: 9 }> = 3; // a number
 * ```
 */
export type FlagValue<S extends FlagSpec> = S extends { kind: "boolean" } ? boolean
  : S extends { kind: "integer" } ? number
  : S extends { kind: "integers" } ? number[]
  : string;

/**
 * Parsed flags: only the flags that were given are present.
 *
 * @example
 * ```ts
 * import { parseFlags } from "@lean/attention/cli";
 * const specs = { json: { kind: "boolean", help: "JSON" } } as const;
 * const flags = parseFlags([], specs).flags; // ParsedFlags<typeof specs>
 * console.log(flags.json ?? false); // false
 * ```
 */
export type ParsedFlags<T extends FlagSpecs> = { -readonly [K in keyof T]?: FlagValue<T[K]> };

/**
 * The result of {@linkcode parseFlags}.
 *
 * @example
 * ```ts
 * import { parseFlags } from "@lean/attention/cli";
 * const { help } = parseFlags(["-h"], {});
 * console.log(help); // true
 * ```
 */
export interface ParsedArgs<T extends FlagSpecs> {
  /** The flags given, parsed and checked. */
  readonly flags: ParsedFlags<T>;
  /** Whether `-h` or `--help` was given. */
  readonly help: boolean;
}

function parseInteger(name: string, text: string, min: number, max: number): number {
  const n = /^[+-]?\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(
      `Flag --${name} must be an integer from ${min} to ${max}: got ${JSON.stringify(text)}`,
    );
  }
  return n;
}

function parseValue(name: string, spec: FlagSpec, text: string): string | number | number[] {
  switch (spec.kind) {
    case "string":
      if (text === "") throw new UsageError(`Flag --${name} needs a non-empty value: got ""`);
      return text;
    case "choice":
      if (!spec.choices.includes(text)) {
        throw new UsageError(
          `Flag --${name} must be one of ${spec.choices.join(", ")}: got ${JSON.stringify(text)}`,
        );
      }
      return text;
    case "integer":
      return parseInteger(name, text, spec.min, spec.max);
    case "integers": {
      const parts = text.split(",");
      if (text === "" || parts.length > spec.maxCount) {
        throw new UsageError(
          `Flag --${name} must be a comma-separated list of 1 to ${spec.maxCount} integers` +
            `: got ${JSON.stringify(text)}`,
        );
      }
      return parts.map((part) => parseInteger(name, part, spec.min, spec.max));
    }
    default:
      throw new UsageError(`Flag --${name} takes no value: got ${JSON.stringify(text)}`);
  }
}

/**
 * Parses `argv` against `specs`. Throws {@linkcode UsageError} for an unknown flag, a positional
 * argument, a missing value, a value given to a boolean flag, a repeated flag or a value out of
 * range.
 *
 * @example
 * ```ts
 * import { parseFlags } from "@lean/attention/cli";
 * const specs = {
 *   runs: { kind: "integer", help: "timed runs", min: 1, max: 1000 },
 *   json: { kind: "boolean", help: "print JSON" },
 * } as const;
 * const { flags } = parseFlags(["--runs=3", "--json"], specs);
 * console.log(flags.runs, flags.json); // 3 true
 * ```
 */
export function parseFlags<T extends FlagSpecs>(
  argv: readonly string[],
  specs: T,
): ParsedArgs<T> {
  if (!Array.isArray(argv)) throw new TypeError(`argv must be an array: got ${typeof argv}`);
  const flags: Record<string, unknown> = {};
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (typeof arg !== "string") {
      throw new TypeError(`argv[${i}] must be a string: got ${typeof arg}`);
    }
    if (arg === "-h" || arg === "--help") {
      help = true;
      continue;
    }
    const match = /^--([a-z][a-z0-9-]*)(?:=([\s\S]*))?$/.exec(arg);
    if (!match) {
      throw new UsageError(
        arg.startsWith("-")
          ? `Unknown flag ${JSON.stringify(arg)}`
          : `Unexpected argument ${JSON.stringify(arg)}: flags are written --name=value`,
      );
    }
    const [, name, inline] = match;
    const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
    if (!spec) throw new UsageError(`Unknown flag --${name}`);
    if (Object.hasOwn(flags, name)) throw new UsageError(`Flag --${name} is given twice`);
    if (spec.kind === "boolean") {
      if (inline !== undefined) {
        throw new UsageError(`Flag --${name} takes no value: got ${JSON.stringify(inline)}`);
      }
      flags[name] = true;
      continue;
    }
    let text = inline;
    if (text === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) {
        throw new UsageError(`Flag --${name} needs a value`);
      }
      text = next;
      i++;
    }
    flags[name] = parseValue(name, spec, text);
  }
  return { flags: flags as ParsedFlags<T>, help };
}

function valueHint(spec: FlagSpec): string {
  switch (spec.kind) {
    case "boolean":
      return "";
    case "string":
      return `=${spec.placeholder}`;
    case "choice":
      return `=${spec.choices.join("|")}`;
    case "integer":
      return "=N";
    case "integers":
      return "=N,N,...";
  }
}

/**
 * Formats a command's usage text: the synopsis line, a summary and one line per flag.
 *
 * @example
 * ```ts
 * import { formatUsage } from "@lean/attention/cli";
 * const text = formatUsage("lean-attention demo", "Runs the demo.", {
 *   runs: { kind: "integer", help: "timed runs (default 5)", min: 1, max: 1000 },
 * });
 * console.log(text.split("\n")[0]); // usage: lean-attention demo [flags]
 * ```
 */
export function formatUsage(command: string, summary: string, specs: FlagSpecs): string {
  const rows = Object.entries(specs).map((
    [name, spec],
  ) => [`--${name}${valueHint(spec)}`, spec.help]);
  rows.push(["-h, --help", "show this help"]);
  const width = Math.min(34, Math.max(...rows.map(([left]) => left.length)));
  const lines = rows.map(([left, help]) =>
    left.length > width
      ? `  ${left}\n  ${" ".repeat(width)}  ${help}`
      : `  ${left.padEnd(width)}  ${help}`
  );
  return [`usage: ${command} [flags]`, "", summary, "", "flags:", ...lines].join("\n");
}

/**
 * Where the CLI writes: standard output for results, standard error for progress and errors.
 * Commands take a {@linkcode CliIO} so tests can capture what they print.
 *
 * @module
 */

/**
 * Output streams of a CLI run.
 *
 * @example
 * ```ts
 * import type { CliIO } from "@lean/attention/cli";
 * const quiet: CliIO = { out() {}, err() {}, errIsTerminal: false };
 * ```
 */
export interface CliIO {
  /** Writes text to standard output (no newline added). */
  out(text: string): void;
  /** Writes text to standard error (no newline added). */
  err(text: string): void;
  /** Whether standard error is a terminal (progress bars redraw in place only then). */
  readonly errIsTerminal: boolean;
}

/**
 * The process's own streams (Deno or Node).
 *
 * @example
 * ```ts
 * import { processIO } from "@lean/attention/cli";
 * const io = processIO();
 * io.out("hello\n");
 * ```
 */
export function processIO(): CliIO {
  const encoder = new TextEncoder();
  const deno = (globalThis as {
    Deno?: {
      stdout: { writeSync(p: Uint8Array): number };
      stderr: { writeSync(p: Uint8Array): number; isTerminal(): boolean };
    };
  }).Deno;
  if (deno) {
    const writeAll = (stream: { writeSync(p: Uint8Array): number }, text: string) => {
      let bytes = encoder.encode(text);
      while (bytes.length > 0) bytes = bytes.subarray(stream.writeSync(bytes));
    };
    return {
      out: (text) => writeAll(deno.stdout, text),
      err: (text) => writeAll(deno.stderr, text),
      errIsTerminal: deno.stderr.isTerminal(),
    };
  }
  return {
    out: (text) => console.log(text.replace(/\n$/, "")),
    err: (text) => console.error(text.replace(/\n$/, "")),
    errIsTerminal: false,
  };
}

/**
 * An in-memory {@linkcode CliIO} for tests.
 *
 * @example
 * ```ts
 * import { captureIO, type CapturedIO } from "@lean/attention/cli";
 * const io: CapturedIO = captureIO();
 * io.out("x");
 * console.log(io.stdout); // x
 * ```
 */
export interface CapturedIO extends CliIO {
  /** Everything written to standard output. */
  readonly stdout: string;
  /** Everything written to standard error. */
  readonly stderr: string;
}

/**
 * A {@linkcode CliIO} that keeps what is written, for tests.
 *
 * @example
 * ```ts
 * import { captureIO } from "@lean/attention/cli";
 * const io = captureIO();
 * io.out("a\n");
 * io.err("b\n");
 * console.log(JSON.stringify([io.stdout, io.stderr])); // ["a\n","b\n"]
 * ```
 */
export function captureIO(options: { errIsTerminal?: boolean } = {}): CapturedIO {
  let stdout = "";
  let stderr = "";
  return {
    out: (text) => void (stdout += text),
    err: (text) => void (stderr += text),
    errIsTerminal: options.errIsTerminal ?? false,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
  };
}

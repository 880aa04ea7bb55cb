/**
 * A spinner for the CLI's waits (finding the adapter, calibrating, compiling kernels): on a
 * terminal it redraws one line in place, about ten times a second while the event loop is free,
 * and on every new message; elsewhere (logs, pipes, CI) it writes nothing, so captured output
 * stays clean.
 *
 * @module
 */

import {
  type BackendChoice,
  type BackendChoiceOptions,
  openBestDecoder,
} from "./backend_choice.ts";
import type { CliIO } from "./io.ts";
import type { KernelTuning } from "../gpu/kernel_tuning.ts";

/** Spinner frames: plain ASCII, so every terminal draws them. */
const FRAMES = ["|", "/", "-", "\\"];

/**
 * Options for {@linkcode Spinner}.
 *
 * @example
 * ```ts
 * import { captureIO, type SpinnerOptions } from "@lean/attention/cli";
 * const options: SpinnerOptions = { io: captureIO({ errIsTerminal: true }), intervalMs: 100 };
 * ```
 */
export interface SpinnerOptions {
  /** Where to draw (standard error); nothing is drawn unless `io.errIsTerminal`. */
  io: CliIO;
  /** Milliseconds between frames (default 100). */
  intervalMs?: number;
}

/**
 * A one-line spinner with a message.
 *
 * @example
 * ```ts
 * import { captureIO, Spinner } from "@lean/attention/cli";
 * const io = captureIO({ errIsTerminal: true });
 * const spinner = new Spinner({ io });
 * spinner.update("compiling kernels");
 * spinner.stop();
 * console.log(JSON.stringify(io.stderr)); // "\r| compiling kernels\r                   \r"
 * ```
 */
export class Spinner {
  #io: CliIO;
  #intervalMs: number;
  #message = "";
  #frame = 0;
  #drawn = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Creates a stopped spinner; the first {@linkcode Spinner.update} starts it. */
  constructor(options: SpinnerOptions) {
    const { io, intervalMs = 100 } = options;
    if (!Number.isInteger(intervalMs) || intervalMs < 10 || intervalMs > 10_000) {
      throw new RangeError(`intervalMs must be an integer from 10 to 10000: got ${intervalMs}`);
    }
    this.#io = io;
    this.#intervalMs = intervalMs;
  }

  /** Whether the spinner is drawing (only ever on a terminal). */
  get active(): boolean {
    return this.#timer !== undefined;
  }

  /** Shows `message` beside the spinner, starting it if needed (a no-op off a terminal). */
  update(message: string): void {
    if (!this.#io.errIsTerminal) return;
    this.#message = message;
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#draw(), this.#intervalMs);
    }
    this.#draw();
  }

  /** Stops the spinner and clears its line. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#drawn > 0) this.#io.err(`\r${" ".repeat(this.#drawn)}\r`);
    this.#drawn = 0;
  }

  #draw(): void {
    const line = `${FRAMES[this.#frame++ % FRAMES.length]} ${this.#message}`;
    this.#io.err(`\r${line.padEnd(this.#drawn)}`);
    this.#drawn = line.length;
  }
}

/**
 * Opens the decoder a command asked for with a spinner running (on a terminal) that names each
 * first-call stage; the spinner is returned still running, for the command's first decode.
 */
export async function openWithSpinner(
  io: CliIO,
  requested: BackendChoiceOptions["backend"] & string,
  grid: number | undefined,
  kernel?: KernelTuning,
): Promise<BackendChoice & { spinner: Spinner }> {
  const spinner = new Spinner({ io });
  try {
    spinner.update(`opening the ${requested} backend`);
    const opened = await openBestDecoder({
      backend: requested,
      grid,
      kernel,
      onProgress: (p) => spinner.update(p.message),
    });
    return { ...opened, spinner };
  } catch (error) {
    spinner.stop();
    throw error;
  }
}

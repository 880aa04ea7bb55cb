/**
 * A text progress bar for long CLI jobs (the benchmark sweep). On a terminal it redraws one line
 * in place; elsewhere (logs, CI) it writes one line per step so the log stays readable.
 *
 * @module
 */

import type { CliIO } from "./io.ts";

/**
 * Options for {@linkcode ProgressBar}.
 *
 * @example
 * ```ts
 * import { processIO, ProgressBar, type ProgressBarOptions } from "@lean/attention/cli";
 * const options: ProgressBarOptions = { total: 10, io: processIO(), width: 20 };
 * const bar = new ProgressBar(options);
 * ```
 */
export interface ProgressBarOptions {
  /** Number of steps. */
  total: number;
  /** Where to draw (standard error). */
  io: CliIO;
  /** Characters of the bar itself (default 30). */
  width?: number;
}

/**
 * Renders one frame: `[#########.........]  9/20  45%  label`.
 *
 * @example
 * ```ts
 * import { renderProgress } from "@lean/attention/cli";
 * console.log(renderProgress(1, 4, 8, "lean 4k")); // [##......] 1/4  25%  lean 4k
 * ```
 */
export function renderProgress(done: number, total: number, width: number, label = ""): string {
  if (!Number.isInteger(total) || total < 1) {
    throw new RangeError(`total must be a positive integer: got ${total}`);
  }
  if (!Number.isInteger(done) || done < 0 || done > total) {
    throw new RangeError(`done must be an integer from 0 to ${total}: got ${done}`);
  }
  const filled = Math.round((done / total) * width);
  const count = `${String(done).padStart(String(total).length)}/${total}`;
  const percent = `${Math.round((100 * done) / total)}%`.padStart(4);
  const bar = `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${count} ${percent}`;
  return label ? `${bar}  ${label}` : bar;
}

/**
 * A progress bar over a fixed number of steps.
 *
 * @example
 * ```ts
 * import { captureIO, ProgressBar } from "@lean/attention/cli";
 * const io = captureIO();
 * const bar = new ProgressBar({ total: 2, io, width: 4 });
 * bar.tick("first");
 * bar.tick("second");
 * bar.done();
 * console.log(io.stderr.trim().split("\n").length); // 2
 * ```
 */
export class ProgressBar {
  #total: number;
  #io: CliIO;
  #width: number;
  #done = 0;
  #drawn = 0;

  /** Creates a bar at 0 steps; nothing is drawn until the first {@linkcode ProgressBar.tick}. */
  constructor(options: ProgressBarOptions) {
    const { total, io, width = 30 } = options;
    if (typeof total !== "number") {
      throw new TypeError(`total must be a number: got ${typeof total}`);
    }
    if (!Number.isInteger(total) || total < 1) {
      throw new RangeError(`total must be a positive integer: got ${total}`);
    }
    if (!Number.isInteger(width) || width < 1 || width > 200) {
      throw new RangeError(`width must be an integer from 1 to 200: got ${width}`);
    }
    this.#total = total;
    this.#io = io;
    this.#width = width;
  }

  /** Steps completed so far. */
  get completed(): number {
    return this.#done;
  }

  /** Marks one more step done and draws the bar with `label` (what was just done or is next). */
  tick(label = ""): void {
    if (this.#done === this.#total) {
      throw new RangeError(`tick must not be called more than total (${this.#total}) times`);
    }
    this.#done++;
    const frame = renderProgress(this.#done, this.#total, this.#width, label);
    if (this.#io.errIsTerminal) {
      this.#io.err(`\r${frame.padEnd(this.#drawn)}`);
      this.#drawn = frame.length;
    } else {
      this.#io.err(`${frame}\n`);
    }
  }

  /** Ends the bar: on a terminal, moves past its line. */
  done(): void {
    if (this.#io.errIsTerminal && this.#drawn > 0) this.#io.err("\n");
    this.#drawn = 0;
  }
}

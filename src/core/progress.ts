/**
 * What a decoder reports while it gets ready: finding the adapter, opening the device,
 * calibrating the lean grid and compiling kernels can take seconds (minutes on a software
 * adapter with a cold shader cache), and without word of it a first call looks hung.
 *
 * @module
 */

/**
 * The stages a GPU decoder goes through before and during its first calls.
 *
 * @example
 * ```ts
 * import type { ProgressStage } from "@lean/attention";
 * const stage: ProgressStage = "compile";
 * ```
 */
export type ProgressStage = "adapter" | "device" | "calibrate" | "compile" | "ready";

/**
 * One progress report of a decoder (see `DecoderOptions.onProgress`):
 *
 * - `adapter`: requesting a WebGPU adapter;
 * - `device`: opening a device on the adapter found (`message` names it);
 * - `calibrate`: measuring the lean grid, one report per rows-per-block class (`done` of
 *   `total`); hardware adapters only, once per adapter and process; an 8-bit K/V class on its
 *   first call (one report, without `done` and `total`);
 * - `compile`: compiling a kernel specialisation (`kernel` is its spec key, `done` the number
 *   compiled before it); on creation, in `warmup()`, or in the first call of a new shape;
 * - `ready`: the backend is open (`message` gives the device and the grid).
 *
 * @example
 * ```ts
 * import { createDecoder, type DecoderProgress } from "@lean/attention";
 * const seen: DecoderProgress[] = [];
 * const decoder = await createDecoder({ backend: "cpu", onProgress: (p) => seen.push(p) });
 * console.log(seen.map((p) => `${p.stage}: ${p.message}`).join("\n"));
 * // ready: cpu backend ready (grid 16)
 * await decoder.dispose();
 * ```
 */
export interface DecoderProgress {
  /** The stage reached. */
  readonly stage: ProgressStage;
  /** One line for people, e.g. `"compiling kernel 2: decode:d128:f16:..."`. */
  readonly message: string;
  /** Steps of this stage done before this one (calibration classes, kernels compiled). */
  readonly done?: number;
  /** Steps of this stage in all, when known (calibration). */
  readonly total?: number;
  /** The kernel's spec key (`compile`). */
  readonly kernel?: string;
}

/** A receiver of {@linkcode DecoderProgress} reports. */
export type ProgressListener = (progress: DecoderProgress) => void;

/**
 * Calls a listener without letting it break the decoder: an exception thrown by the caller's
 * callback is reported on the console, not thrown into a compile or a decode.
 */
export function notify(listener: ProgressListener | undefined, progress: DecoderProgress): void {
  if (!listener) return;
  try {
    listener(progress);
  } catch (error) {
    console.error("onProgress threw:", error);
  }
}

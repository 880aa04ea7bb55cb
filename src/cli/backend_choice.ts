/**
 * The CLI's choice of backend. `"auto"` means the fastest thing here: a hardware GPU through the
 * runtime's WebGPU, else a hardware GPU through Dawn (npm `webgpu`, loaded only when the runtime
 * has no `navigator.gpu`), else the CPU. `"dawn"` loads the `@lean/attention/dawn` entry first. Software adapters (lavapipe, SwiftShader) lose
 * to the CPU backend on decode, so `"auto"` skips them; name the backend to use one anyway.
 *
 * @module
 */

import type { BackendName } from "../plan/backend.ts";
import { createDecoder } from "../decoder.ts";
import type { Decoder } from "../decoder_types.ts";
import type { ProgressListener } from "../core/progress.ts";
import type { KernelTuning } from "../gpu/kernel_tuning.ts";
import { type AdapterReport, probeAdapters } from "./adapters.ts";
import { loadDawnEntry } from "./dawn_entry.ts";

/**
 * Options for {@linkcode openBestDecoder}.
 *
 * @example
 * ```ts
 * import type { BackendChoiceOptions } from "@lean/attention/cli";
 * const options: BackendChoiceOptions = { backend: "auto", grid: 132 };
 * ```
 */
export interface BackendChoiceOptions {
  /** The backend asked for (default `"auto"`). */
  backend?: "auto" | BackendName;
  /** Overrides the device's lean grid. */
  grid?: number;
  /** Hears the decoder's progress (adapter, calibration, compiles), e.g. for a spinner. */
  onProgress?: ProgressListener;
  /** Kernel options of the decoder (`createDecoder({ kernel })`). */
  kernel?: KernelTuning;
}

/**
 * A backend and why it was chosen.
 *
 * @example
 * ```ts
 * import { autoChoice } from "@lean/attention/cli";
 * const { backend } = autoChoice([]);
 * console.log(backend); // cpu
 * ```
 */
export interface AutoChoice {
  /** The backend `"auto"` picks. */
  readonly backend: BackendName;
  /** Why, e.g. `"no hardware GPU adapter (webgpu: llvmpipe is software)"`. */
  readonly reason: string;
}

/**
 * What `"auto"` picks from probed adapters: the first hardware adapter (runtime WebGPU before
 * Dawn), else the CPU.
 *
 * @example
 * ```ts
 * import { autoChoice } from "@lean/attention/cli";
 * const choice = autoChoice([{ backend: "webgpu", available: false, reason: "no adapter" }]);
 * console.log(choice.backend, choice.reason); // cpu no hardware GPU adapter (webgpu: no adapter)
 * ```
 */
export function autoChoice(reports: readonly AdapterReport[]): AutoChoice {
  const notes: string[] = [];
  for (const r of reports) {
    if (!r.available) notes.push(`${r.backend}: ${r.reason}`);
    else if (r.summary?.software) notes.push(`${r.backend}: ${r.summary.description} is software`);
    else {
      const via = r.backend === "dawn" ? " via Dawn" : "";
      return { backend: r.backend, reason: `hardware adapter ${r.summary?.description}${via}` };
    }
  }
  return { backend: "cpu", reason: `no hardware GPU adapter (${notes.join("; ")})` };
}

/**
 * The decoder opened and a line saying why that backend.
 *
 * @example
 * ```ts
 * import { openBestDecoder } from "@lean/attention/cli";
 * const choice = await openBestDecoder({ backend: "cpu" });
 * await choice.decoder.dispose();
 * ```
 */
export interface BackendChoice {
  /** The open decoder; the caller disposes it. */
  readonly decoder: Decoder;
  /** Why this backend: `"requested"`, or `"auto: "` and {@linkcode AutoChoice.reason}. */
  readonly reason: string;
}

/**
 * Opens a decoder on the requested backend, or on the best one here for `"auto"`.
 *
 * @example
 * ```ts
 * import { openBestDecoder } from "@lean/attention/cli";
 * const { decoder, reason } = await openBestDecoder({ backend: "cpu" });
 * console.log(decoder.backend, reason); // cpu requested
 * await decoder.dispose();
 * ```
 */
export async function openBestDecoder(options: BackendChoiceOptions = {}): Promise<BackendChoice> {
  const backend = options.backend ?? "auto";
  const { grid, onProgress, kernel } = options;
  if (backend !== "auto") {
    if (backend === "dawn") await loadDawnEntry();
    return {
      decoder: await createDecoder({ backend, grid, onProgress, kernel }),
      reason: "requested",
    };
  }
  onProgress?.({ stage: "adapter", message: "looking for a hardware GPU adapter" });
  const reports = await probeAdapters({ dawn: globalThis.navigator?.gpu === undefined });
  const choice = autoChoice(reports);
  try {
    return {
      decoder: await createDecoder({ backend: choice.backend, grid, onProgress, kernel }),
      reason: `auto: ${choice.reason}`,
    };
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return {
      decoder: await createDecoder({ backend: "cpu", grid, onProgress, kernel }),
      reason: `auto: ${choice.backend} failed (${why}), using the CPU`,
    };
  }
}

/**
 * A warning to print beside timings measured where they say nothing about GPUs: on the CPU
 * backend, or on a software adapter (lavapipe, SwiftShader). `undefined` on a hardware GPU.
 *
 * @example
 * ```ts
 * import { timingNote } from "@lean/attention/cli";
 * console.log(timingNote({ backend: "webgpu", profile: { name: "NVIDIA H100", software: false } }));
 * // undefined
 * console.log(timingNote({ backend: "webgpu", profile: { name: "llvmpipe", software: true } }));
 * // timings from a software adapter (llvmpipe) say nothing about GPU speed: its "GPU" is the CPU
 * ```
 */
export function timingNote(
  decoder: { backend: BackendName; profile: { name: string; software?: boolean } },
): string | undefined {
  if (decoder.backend === "cpu") {
    return "timings from the CPU backend (TypeScript, one thread, executing the GPU plan to " +
      "check it) say nothing about GPU speed";
  }
  if (decoder.profile.software) {
    return `timings from a software adapter (${decoder.profile.name}) say nothing about GPU ` +
      `speed: its "GPU" is the CPU`;
  }
  return undefined;
}

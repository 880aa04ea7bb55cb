/**
 * The device profile: how many decode workgroups the adapter runs at once, which is the lean
 * grid. Found by a short calibration on first use (a kernel of fixed per-workgroup duration is
 * dispatched at growing grid sizes; the grid stops being free where a second wave begins), and
 * cached per adapter. Without `timestamp-query`, a table of known adapters is the fallback.
 *
 * @module
 */

import type { DeviceProfile } from "../plan/backend.ts";
import { timeWarm } from "./gpu_timing.ts";

/** Multiprocessor counts of known adapters, and decode workgroups each runs at once. */
const KNOWN_ADAPTERS: ReadonlyArray<{ pattern: RegExp; units: number }> = [
  { pattern: /H100 PCIe/i, units: 114 },
  { pattern: /H100|H200|GH200/i, units: 132 },
  { pattern: /A100/i, units: 108 },
  { pattern: /L40S?\b/i, units: 142 },
  { pattern: /A10G?\b/i, units: 80 },
  { pattern: /RTX 4090/i, units: 128 },
];
/** Decode workgroups resident per multiprocessor assumed by the table. */
const WORKGROUPS_PER_UNIT = 8;

const cache = new Map<string, DeviceProfile>();

/** The table's answer for an adapter, or a conservative default. */
export function tableProfile(description: string, software: boolean): DeviceProfile {
  if (software) {
    const threads = (globalThis.navigator as { hardwareConcurrency?: number })?.hardwareConcurrency;
    return { name: description, grid: Math.max(1, threads ?? 4), source: "table" };
  }
  const known = KNOWN_ADAPTERS.find((k) => k.pattern.test(description));
  return {
    name: description,
    grid: known ? known.units * WORKGROUPS_PER_UNIT : 1024,
    source: "table",
  };
}

/** Grid sizes probed by the calibration: about 6% apart. */
function probeSizes(): number[] {
  const sizes: number[] = [];
  for (let n = 1; n <= 32768; n = Math.max(n + 1, Math.round(n * 1.06))) sizes.push(n);
  return sizes;
}

/** Records one probe: `n` workgroups of equal, fixed work, in the given pass. */
export type ProbeDispatch = (pass: GPUComputePassEncoder, n: number) => void;

/** Options of {@linkcode calibrateGrid} and {@linkcode deviceProfile}. */
export interface CalibrationOptions {
  /** Largest grid probed (default 8192; 64 for software adapters). */
  readonly maxSize?: number;
  /** Milliseconds of large probes before the sweep, in its submission (default 0). */
  readonly warmupMs?: number;
  /** A size counts as one wave within this many times one workgroup's time (default 1.5). */
  readonly tolerance?: number;
  /**
   * Sweeps of every size in the submission, each size taking its least time over them (default
   * 1): a clock that rises during one sweep (a short warm-up after a long compile) makes its
   * early sizes look slow, and with them one workgroup's time and every size's allowance.
   */
  readonly sweeps?: number;
  /**
   * Also look for a wave's step (8-bit classes, see `src/gpu/kv_class_grids.ts`): the size before
   * the largest rise in time from one probed size to the next, among the sizes up to the first
   * beyond this one (their f16 class's grid, which bounds theirs); the grid is the larger of that
   * and the `tolerance` rule's (which never passes a wave: a second one takes at least twice one
   * workgroup's time), at most this one. Default: the `tolerance` rule alone.
   */
  readonly stepWithin?: number;
  /** Hears each probed size's time (milliseconds, the least over the sweeps): diagnostics. */
  readonly onTimes?: (sizes: readonly number[], timesMs: readonly number[]) => void;
}

/**
 * Measures how many workgroups of the probe the device runs at once: the probe is dispatched at
 * growing sizes up to `maxSize` in one submission, timed with `timestamp-query`; the grid is the
 * largest size finishing within `tolerance` times one workgroup's time. Returns `undefined`
 * without that feature.
 */
export async function calibrateGrid(
  device: GPUDevice,
  probe: ProbeDispatch,
  options: CalibrationOptions = {},
): Promise<number | undefined> {
  if (!device.features.has("timestamp-query")) return undefined;
  const maxSize = options.maxSize ?? 8192;
  const tolerance = options.tolerance ?? 1.5;
  const sizes = probeSizes().filter((n) => n <= maxSize);
  // A GPU that idled runs at a low clock at first: warm it with large probes in the same
  // submission, or the clock rises during the sweep and the larger sizes look cheap. The first
  // timed dispatch (one workgroup) only fills caches; it is not used.
  const warmSize = Math.min(maxSize, 2048);
  const sweeps = Math.max(1, Math.floor(options.sweeps ?? 1));
  const { samplesMs: all } = await timeWarm(
    device,
    (pass, i) => probe(pass, i === 0 ? 1 : sizes[(i - 1) % sizes.length]),
    {
      runs: 1 + sweeps * sizes.length,
      warmupMs: options.warmupMs ?? 0,
      warmRecord: (pass) => probe(pass, warmSize),
    },
  );
  const times = sizes.map((_, i) =>
    Math.min(...Array.from({ length: sweeps }, (_, s) => all[1 + s * sizes.length + i]))
  );
  options.onTimes?.(sizes, times);
  return gridFromSweep(sizes, times, tolerance, options.stepWithin);
}

/**
 * The grid of a calibration sweep (each probed size's time): the largest size finishing within
 * `tolerance` times one workgroup's time (the least of the first four sizes'), or with
 * `stepWithin` (see {@linkcode CalibrationOptions.stepWithin}) the larger of that and the size
 * before the sweep's largest step up to it, at most `stepWithin`. Undefined without a positive
 * time.
 *
 * @example
 * ```ts
 * import { gridFromSweep } from "./device_profile.ts";
 * const sizes = [124, 131, 139, 264, 280, 375, 398, 502, 532];
 * const times = [1.0, 1.0, 1.2, 1.25, 1.4, 1.41, 1.58, 1.6, 2.1];
 * console.log(gridFromSweep(sizes, times, 1.5), gridFromSweep(sizes, times, 1.5, 502)); // 375 502
 * ```
 */
export function gridFromSweep(
  sizes: readonly number[],
  times: readonly number[],
  tolerance: number,
  stepWithin?: number,
): number | undefined {
  const base = Math.min(...times.slice(0, 4));
  if (!(base > 0)) return undefined;
  // The largest size still finishing in about one workgroup's time.
  let grid = 1;
  for (let i = 0; i < sizes.length; i++) {
    if (times[i] <= base * tolerance) grid = sizes[i];
    else if (times[i] > base * 3) break;
  }
  if (stepWithin === undefined) return grid;
  // A step below the tolerance rule's size is workgroups sharing a multiprocessor, not a wave
  // (1-row E5M2 at 2 tokens per step: its largest step up to 502 was at 139, session 38).
  return Math.min(stepWithin, Math.max(grid, sizeBeforeStep(sizes, times, stepWithin)));
}

/**
 * The size before the largest rise in time between neighbouring probed sizes, among the sizes up
 * to the first beyond `within`. A probe's time rises at every multiple of the multiprocessors
 * (workgroups sharing one), and most where a further workgroup no longer fits beside those
 * resident (a new wave): the 1- and 4-row d128 kernels on the H200 rose by at most 1.13-1.31x at
 * the steps before their residency and 1.26-1.72x at it (1-row E4M3 two workgroups per
 * multiprocessor, E5M2 and int8 four), where the `tolerance` rule's 1.5x stopped E5M2 and int8 at
 * three (session 38).
 *
 * @example
 * ```ts
 * import { sizeBeforeStep } from "./device_profile.ts";
 * const sizes = [124, 131, 139, 264, 280, 502, 532, 564];
 * const times = [1.0, 1.0, 1.2, 1.25, 1.4, 1.6, 2.1, 2.3];
 * console.log(sizeBeforeStep(sizes, times, 502)); // 502
 * ```
 */
export function sizeBeforeStep(
  sizes: readonly number[],
  times: readonly number[],
  within: number,
): number {
  let best = sizes[0];
  let rise = 0;
  for (let i = 1; i < sizes.length; i++) {
    const r = times[i] / times[i - 1];
    if (r > rise) {
      rise = r;
      best = sizes[i - 1];
    }
    if (sizes[i] > within) break;
  }
  return best;
}

/**
 * Returns the device profile for an adapter: calibrated once per adapter and probe kernel (see
 * {@linkcode calibrateGrid} for the options), else from the table.
 */
export async function deviceProfile(
  device: GPUDevice,
  description: string,
  software: boolean,
  probe: ProbeDispatch,
  probeKey: string,
  options: CalibrationOptions = {},
): Promise<DeviceProfile> {
  const key = `${description}|${probeKey}`;
  const cached = cache.get(key);
  if (cached) return cached;
  let profile = tableProfile(description, software);
  const grid = await calibrateGrid(device, probe, {
    ...options,
    maxSize: software ? 64 : options.maxSize,
  }).catch(() => undefined);
  if (grid !== undefined) profile = { name: description, grid, source: "calibrated" };
  cache.set(key, profile);
  return profile;
}

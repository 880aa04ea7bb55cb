/**
 * Timing compute passes with `timestamp-query`: one submission, one readback, a timestamp pair
 * around every pass. Used by the grid calibration, kernel timing and the benchmarks.
 *
 * A GPU left idle runs at a low clock and raises it only after some time under load (an H200's
 * SM clock idles at 345 MHz and runs at 1980 MHz under load; a 128k-token decode took 1.84 ms per
 * pass for its first ~250 ms of back-to-back passes, then 0.53 ms). {@linkcode timeWarm} therefore
 * keeps the GPU busy with the same work for a set time before the timed passes, in the same
 * submission, so that no idle gap lets the clock fall between warming and timing.
 *
 * @module
 */

import { BufferUsage, MAP_READ } from "./gpu_runtime.ts";

/**
 * Records `count` compute passes (each filled by `record`) with a timestamp pair around each,
 * submits them at once and returns each pass's GPU time in milliseconds. The device must have
 * the `timestamp-query` feature.
 */
export async function timePasses(
  device: GPUDevice,
  count: number,
  record: (pass: GPUComputePassEncoder, index: number) => void,
): Promise<number[]> {
  if (!device.features.has("timestamp-query")) {
    throw new Error(`kernel timing needs the "timestamp-query" feature, which this device lacks`);
  }
  const querySet = device.createQuerySet({ type: "timestamp", count: 2 * count });
  const resolve = device.createBuffer({
    size: 16 * count,
    usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: 16 * count,
    usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST,
  });
  try {
    const enc = device.createCommandEncoder();
    for (let i = 0; i < count; i++) {
      const pass = enc.beginComputePass({
        timestampWrites: {
          querySet,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        },
      });
      record(pass, i);
      pass.end();
    }
    enc.resolveQuerySet(querySet, 0, 2 * count, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * count);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(MAP_READ);
    const ts = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    return Array.from({ length: count }, (_, i) => Number(ts[2 * i + 1] - ts[2 * i]) / 1e6);
  } finally {
    querySet.destroy();
    resolve.destroy();
    read.destroy();
  }
}

/** Options of {@linkcode timeWarm}. */
export interface WarmTimingOptions {
  /** Timed passes (one recording each). */
  readonly runs: number;
  /**
   * GPU time of back-to-back recordings before the timed passes, in the same submission
   * (milliseconds; 0 times a cold GPU).
   */
  readonly warmupMs: number;
  /** Untimed single passes right before the timed ones (default 0). */
  readonly warmup?: number;
  /** What to record while warming (default: the timed work itself). */
  readonly warmRecord?: (pass: GPUComputePassEncoder, index: number) => void;
}

/** What {@linkcode timeWarm} measured. */
export interface WarmTiming {
  /** GPU milliseconds of each timed pass. */
  readonly samplesMs: number[];
  /** GPU milliseconds spent warming in the timed submission. */
  readonly warmMs: number;
  /** Recordings made while warming in the timed submission. */
  readonly warmRecordings: number;
  /** Milliseconds per recording over the last warm pass: close to the median once warm. */
  readonly lastWarmMs: number;
}

/** Passes the warm-up is cut into (each timestamped, each several recordings). */
const WARM_PASSES = 24;

/** Submissions `timeWarm` makes at most to reach its warm-up time. */
export const WARM_ATTEMPTS = 6;

/**
 * Times `runs` passes of `record` on a warm GPU: first a short probe (its time bounds the cost of
 * one recording), then, in one submission, recordings back to back for at least `warmupMs` of
 * GPU time (grouped into a few timestamped passes) followed by the timed passes. If the warm-up
 * turned out shorter than asked (the clock rose faster than the probe predicted), the
 * submission is repeated with the measured rate and a growing margin (a software adapter's
 * rate can keep rising from one submission to the next: three tries at 10% fell short about
 * once in a hundred runs on lavapipe), up to {@linkcode WARM_ATTEMPTS} times. `record(pass, i)` records timed pass `i`
 * (untimed `warmup` passes first); warm recordings are counted separately and may share a pass.
 */
export async function timeWarm(
  device: GPUDevice,
  record: (pass: GPUComputePassEncoder, index: number) => void,
  options: WarmTimingOptions,
): Promise<WarmTiming> {
  const { runs, warmupMs } = options;
  const warmup = options.warmup ?? 0;
  if (!(warmupMs > 0)) {
    const ms = await timePasses(device, warmup + runs, record);
    return { samplesMs: ms.slice(warmup), warmMs: 0, warmRecordings: 0, lastWarmMs: NaN };
  }
  const warmRecord = options.warmRecord ?? record;
  // The probe's time per recording is an upper bound: later recordings run at a higher clock.
  const probe = await timePasses(device, 2, warmRecord);
  let perRecording = Math.max(1e-4, Math.min(...probe));
  let result: WarmTiming | undefined;
  for (let attempt = 0; attempt < WARM_ATTEMPTS; attempt++) {
    const margin = 1.1 * 1.5 ** attempt;
    const recordings = Math.ceil((margin * warmupMs) / perRecording);
    const passes = Math.min(WARM_PASSES, recordings);
    const perPass = Math.ceil(recordings / passes);
    let index = 0;
    const ms = await timePasses(device, passes + warmup + runs, (pass, i) => {
      if (i >= passes) return record(pass, i - passes);
      for (let k = 0; k < perPass; k++) warmRecord(pass, index++);
    });
    const warmMs = ms.slice(0, passes).reduce((a, b) => a + b, 0);
    result = {
      samplesMs: ms.slice(passes + warmup),
      warmMs,
      warmRecordings: passes * perPass,
      lastWarmMs: ms[passes - 1] / perPass,
    };
    if (warmMs >= warmupMs) break;
    perRecording = Math.max(1e-4, warmMs / (passes * perPass));
  }
  return result!;
}

/** The median of some numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

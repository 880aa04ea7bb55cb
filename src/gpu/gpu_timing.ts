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
import { MAX_STREAM_RUNS } from "../plan/backend.ts";

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
  /**
   * Also time recordings back to back (milliseconds; default 0: not): after the timed passes,
   * `runs` more passes, each of as many recordings as fill about this much GPU time at the warm
   * rate (1 to {@linkcode MAX_STREAM_RUNS}), each pass's time divided by its recordings.
   */
  readonly streamMs?: number;
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
  /** With `streamMs`: milliseconds per recording of each back-to-back pass. */
  readonly streamSamplesMs?: number[];
  /** With `streamMs`: recordings in each back-to-back pass. */
  readonly runsPerStreamPass?: number;
}

/** Passes the warm-up is cut into (each timestamped, each several recordings). */
export const WARM_PASSES = 24;

/** Submissions `timeWarm` makes at most to reach its warm-up time. */
export const WARM_ATTEMPTS = 6;

/**
 * GPU milliseconds a recording is taken to cost at least when sizing a warm-up. No GPU runs a
 * pass much faster (the H200 ran an empty pass of two dispatches in 3.6-4.1 us back to back), but
 * a timestamp can read less: browsers round timestamps to 100 us, so a short probe reads 0, and
 * a floor of 0.1 ns asked for 4.4 million recordings in 400 ms.
 */
const MIN_RECORDING_MS = 0.002;

/**
 * Recordings one warm-up submission holds at most: a warm-up of so many recordings that falls
 * short of its time is kept as it is rather than submitted again larger. Each recording is encoded
 * on the host (tens of microseconds in Deno): the H200 warmed a 940-token decode (8.8 us a run)
 * for 400 ms with about 75,000, in 2-6 s of wall time.
 */
export const MAX_WARM_RECORDINGS = 250_000;

/**
 * Times `runs` passes of `record` on a warm GPU: first a short probe (its time bounds the cost of
 * one recording), then, in one submission, recordings back to back for at least `warmupMs` of
 * GPU time (grouped into a few timestamped passes) followed by the timed passes. If the warm-up
 * turned out shorter than asked (the clock rose faster than the probe predicted), the
 * submission is repeated with the measured rate and a growing margin (a software adapter's
 * rate can keep rising from one submission to the next: three tries at 10% fell short about
 * once in a hundred runs on lavapipe), up to {@linkcode WARM_ATTEMPTS} times, each of at most
 * {@linkcode MAX_WARM_RECORDINGS} recordings. `record(pass, i)` records timed pass `i`
 * (untimed `warmup` passes first); warm recordings are counted separately and may share a pass.
 * With `streamMs`, back-to-back passes follow the timed ones in the same submission (see
 * {@linkcode WarmTimingOptions.streamMs}): a pass timed alone also pays for the GPU starting its
 * first dispatch and draining its last, which back-to-back work (a model's layers, or the CUDA
 * graphs other libraries are timed with) overlaps or hides. Those passes are sized from the warm
 * rate: a submission whose passes held fewer recordings than that rate fills is repeated.
 */
export async function timeWarm(
  device: GPUDevice,
  record: (pass: GPUComputePassEncoder, index: number) => void,
  options: WarmTimingOptions,
): Promise<WarmTiming> {
  const { runs, warmupMs } = options;
  const warmup = options.warmup ?? 0;
  const streamMs = options.streamMs ?? 0;
  const warmRecord = options.warmRecord ?? record;
  // The probe's time per recording is an upper bound: later recordings run at a higher clock.
  const probe = warmupMs > 0 || streamMs > 0 ? await timePasses(device, 2, warmRecord) : [];
  let perRecording = Math.max(MIN_RECORDING_MS, Math.min(...probe));
  // Back-to-back passes start sized from the cold probe, which only bounds a warm recording's
  // time from above: once a submission has measured the warm rate, a pass that holds fewer
  // recordings than that rate fills is sized again and the submission repeated (a cold probe of
  // an H200 ran 2-4x slow, leaving a 0.55 ms decode one recording per pass where a warm rate
  // fits four, so each pass's fixed cost weighed four times as much).
  let perStream = streamMs > 0 ? streamRecordings(streamMs, perRecording) : 0;
  const streamPasses = perStream > 0 ? runs : 0;
  const timed = warmup + runs;
  let result: WarmTiming | undefined;
  for (let attempt = 0; attempt < WARM_ATTEMPTS; attempt++) {
    const margin = 1.1 * 1.5 ** attempt;
    const wanted = warmupMs > 0 ? Math.ceil((margin * warmupMs) / perRecording) : 0;
    const recordings = Math.min(MAX_WARM_RECORDINGS, wanted);
    const passes = Math.min(WARM_PASSES, recordings);
    const perPass = passes > 0 ? Math.ceil(recordings / passes) : 0;
    const stream = perStream;
    let index = 0;
    // Stream recordings continue the timed passes' indices, so rotated K/V copies keep turning.
    let streamIndex = timed;
    const ms = await timePasses(device, passes + timed + streamPasses, (pass, i) => {
      if (i < passes) {
        for (let k = 0; k < perPass; k++) warmRecord(pass, index++);
      } else if (i < passes + timed) {
        record(pass, i - passes);
      } else {
        for (let k = 0; k < stream; k++) record(pass, streamIndex++);
      }
    });
    const warmMs = ms.slice(0, passes).reduce((a, b) => a + b, 0);
    const lastWarmMs = passes > 0 ? ms[passes - 1] / perPass : NaN;
    result = {
      samplesMs: ms.slice(passes + warmup, passes + timed),
      warmMs,
      warmRecordings: passes * perPass,
      lastWarmMs,
      ...(stream > 0
        ? {
          streamSamplesMs: ms.slice(passes + timed).map((x) => x / stream),
          runsPerStreamPass: stream,
        }
        : {}),
    };
    if (passes > 0) perRecording = Math.max(MIN_RECORDING_MS, warmMs / (passes * perPass));
    // Sized again from the warm rate (the last warm pass's; without a warm-up, the timed
    // passes' fastest), it never shrinks: a repeat is only ever for passes that were too short.
    const warmRate = passes > 0 ? lastWarmMs : Math.min(...result.samplesMs);
    if (stream > 0) perStream = Math.max(stream, streamRecordings(streamMs, warmRate));
    if ((warmMs >= warmupMs || recordings < wanted) && perStream === stream) break;
  }
  return result!;
}

/**
 * Recordings a back-to-back pass holds to fill about `streamMs` at `perRecordingMs` each (1 to
 * {@linkcode MAX_STREAM_RUNS}).
 *
 * @example
 * ```ts
 * import { streamRecordings } from "./gpu_timing.ts";
 * console.log(streamRecordings(2, 0.55), streamRecordings(2, 3), streamRecordings(2, 1e-4));
 * // 4 1 256
 * ```
 */
export function streamRecordings(streamMs: number, perRecordingMs: number): number {
  if (!(perRecordingMs > 0)) return 1;
  return Math.max(1, Math.min(MAX_STREAM_RUNS, Math.ceil(streamMs / perRecordingMs)));
}

/** The median of some numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

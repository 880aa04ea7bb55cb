/**
 * Timing compute passes with `timestamp-query`: one submission, one readback, a timestamp pair
 * around every pass. Used by the grid calibration, kernel timing and the benchmarks.
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

/** The median of some numbers. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

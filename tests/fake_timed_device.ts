/**
 * A fake GPU device for timing tests: just what `timePasses` uses, with a clock. Every compute
 * pass costs `passMs`, and each dispatch in it `dispatchMs(workgroups, clockMs)`, the clock being
 * the GPU milliseconds spent so far when the pass ends its recording (a GPU that speeds up under
 * load can be modelled by a cost falling with the clock).
 *
 * @module
 */

/** Options of {@linkcode fakeTimedDevice}. */
export interface FakeTimedDeviceOptions {
  /** Milliseconds every pass costs once (default 1). */
  readonly passMs?: number;
  /** Milliseconds one dispatch of `workgroups` costs at GPU time `clockMs` (default 2). */
  readonly dispatchMs?: (workgroups: number, clockMs: number) => number;
  /**
   * Milliseconds the timestamps are rounded down to (default 0: exact), as browsers round them
   * to 0.1 ms.
   */
  readonly resolutionMs?: number;
}

/**
 * A device whose timestamp queries report the modelled times.
 *
 * @example
 * ```ts
 * import { fakeTimedDevice } from "./fake_timed_device.ts";
 * import { timePasses } from "../src/gpu/gpu_timing.ts";
 * const device = fakeTimedDevice({ dispatchMs: (n) => n });
 * console.log(await timePasses(device, 2, (pass, i) => pass.dispatchWorkgroups(i + 3))); // [4, 5]
 * ```
 */
export function fakeTimedDevice(options: FakeTimedDeviceOptions = {}): GPUDevice {
  const passMs = options.passMs ?? 1;
  const dispatchMs = options.dispatchMs ?? (() => 2);
  const resolutionNs = BigInt(Math.round((options.resolutionMs ?? 0) * 1e6));
  const stamp = (ns: bigint) => resolutionNs > 0n ? ns - ns % resolutionNs : ns;
  let clockNs = 0n;
  const buffer = (size: number) => {
    const bytes = new ArrayBuffer(size);
    return {
      bytes,
      mapAsync: () => Promise.resolve(),
      getMappedRange: () => bytes,
      unmap: () => {},
      destroy: () => {},
    };
  };
  const device = {
    features: new Set(["timestamp-query"]),
    createQuerySet: ({ count }: { count: number }) => ({
      stamps: new BigUint64Array(count),
      destroy: () => {},
    }),
    createBuffer: ({ size }: { size: number }) => buffer(size),
    createCommandEncoder: () => ({
      beginComputePass: (
        { timestampWrites: w }: {
          timestampWrites: {
            querySet: { stamps: BigUint64Array };
            beginningOfPassWriteIndex: number;
            endOfPassWriteIndex: number;
          };
        },
      ) => {
        const dispatches: number[] = [];
        return {
          dispatchWorkgroups: (n: number) => {
            dispatches.push(n);
          },
          end: () => {
            w.querySet.stamps[w.beginningOfPassWriteIndex] = stamp(clockNs);
            const clockMs = Number(clockNs) / 1e6;
            const ms = dispatches.reduce((sum, n) => sum + dispatchMs(n, clockMs), passMs);
            clockNs += BigInt(Math.round(ms * 1e6));
            w.querySet.stamps[w.endOfPassWriteIndex] = stamp(clockNs);
          },
        };
      },
      resolveQuerySet: (
        q: { stamps: BigUint64Array },
        first: number,
        count: number,
        dst: { bytes: ArrayBuffer },
        offset: number,
      ) =>
        new BigUint64Array(dst.bytes, offset, count).set(q.stamps.subarray(first, first + count)),
      copyBufferToBuffer: (
        src: { bytes: ArrayBuffer },
        srcOffset: number,
        dst: { bytes: ArrayBuffer },
        dstOffset: number,
        size: number,
      ) =>
        new Uint8Array(dst.bytes, dstOffset, size).set(new Uint8Array(src.bytes, srcOffset, size)),
      finish: () => ({}),
    }),
    queue: { submit: () => {} },
  };
  return device as unknown as GPUDevice;
}

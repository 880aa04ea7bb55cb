/**
 * Upload regions for work recorded into command buffers that the runner submits, not the library.
 * `queue.writeBuffer` lands before the next submit, so data that one command buffer reads must
 * not be overwritten by a later upload before that command buffer has run: two plans encoded into
 * one command buffer would otherwise read the second one's tables. Each upload takes a region of
 * its own, and a region is reused only once the GPU has run every command buffer recorded with it.
 *
 * The library cannot see submits, so each command buffer that reads a region also runs a tiny
 * marker dispatch (one thread adds 1 to the region's counter). A probe (a copy of the counters
 * and a map, submitted by the library, hence queued after the runner's submits) tells which
 * regions' recorded markers have all run; those regions are free again. Regions live in arenas
 * (one buffer each, regions bound with dynamic offsets); when all are busy a new arena twice as
 * large is made, so the ring grows to the number of uploads in flight and then stays put.
 *
 * @module
 */

import { BufferUsage, MAP_READ } from "../gpu/gpu_runtime.ts";
import type { Arena, Region, Retired, RingRegion } from "./ring_region.ts";
import { createMarker } from "./upload_marker.ts";

export type { RingRegion } from "./ring_region.ts";

/**
 * Regions of the first arena. A probe costs about 0.3 ms of host time in Deno (a submit and a
 * map), and one is made each time half the regions are busy: 32 regions keep that to one per 16
 * uploads for a runner that waits for every step.
 */
const FIRST_CAPACITY = 32;

/**
 * A growable ring of upload regions on one device, reclaimed by GPU-side markers.
 *
 * @example
 * ```ts ignore
 * import { UploadRing } from "./upload_ring.ts";
 * const ring = new UploadRing(device, { label: "tables", usage: GPUBufferUsage.UNIFORM });
 * const region = ring.acquire(1024, "layout a");
 * device.queue.writeBuffer(region.buffer, region.offset, data);
 * const pass = encoder.beginComputePass();
 * ring.mark(region, pass, encoder); // before the dispatches that read the region
 * ```
 */
export class UploadRing {
  #device: GPUDevice;
  #label: string;
  #usage: number;
  #align: number;
  #markStride: number;
  #arenas: Arena[] = [];
  #nextArena = 0;
  #key: string | undefined;
  #stride = 0;
  #pipeline: GPUComputePipeline | undefined;
  #markLayout: GPUBindGroupLayout | undefined;
  #readback: GPUBuffer | undefined;
  #probing = false;
  #retired: Retired[] = [];
  #created = 0;
  #live = new Set<GPUBuffer>();
  #destroyed = false;

  /**
   * `usage` is the regions' buffer usage (`COPY_DST` is added); regions start at multiples of
   * `align` (default: the device's uniform and storage offset alignments, at least 256).
   */
  constructor(device: GPUDevice, options: { label: string; usage: number; align?: number }) {
    this.#device = device;
    this.#label = options.label;
    this.#usage = options.usage | BufferUsage.COPY_DST;
    const limits = device.limits;
    this.#markStride = Math.max(4, limits.minStorageBufferOffsetAlignment ?? 256);
    // Counters at storage-binding offsets; regions at uniform and storage ones.
    this.#align = options.align ?? Math.max(
      256,
      limits.minUniformBufferOffsetAlignment ?? 256,
      limits.minStorageBufferOffsetAlignment ?? 256,
    );
  }

  /** Bytes regions are aligned to. */
  get align(): number {
    return this.#align;
  }

  /** GPU buffers created so far (arenas, counters, probe readback). */
  get buffersCreated(): number {
    return this.#created;
  }

  /** GPU buffers alive now. */
  get buffersLive(): number {
    return this.#live.size;
  }

  /** Marker pipelines compiled (0 or 1). */
  get pipelinesCreated(): number {
    return this.#pipeline ? 1 : 0;
  }

  /** Regions in all arenas, and those busy now. */
  get regions(): { total: number; busy: number } {
    let total = 0;
    let busy = 0;
    for (const a of this.#arenas) {
      total += a.regions.length;
      busy += a.regions.length - a.free.length;
    }
    return { total, busy };
  }

  #createBuffer(size: number, usage: number, label: string): GPUBuffer {
    const buffer = this.#device.createBuffer({ size, usage, label: `lean-attention ${label}` });
    this.#created++;
    this.#live.add(buffer);
    return buffer;
  }

  /**
   * Creates a buffer counted with the ring's (for scratch that recorded work reads): give it
   * back with {@linkcode UploadRing.retire}, or it goes with {@linkcode UploadRing.destroy}.
   */
  createBuffer(size: number, usage: number, label: string): GPUBuffer {
    return this.#createBuffer(size, usage, label);
  }

  #destroyBuffer(buffer: GPUBuffer): void {
    this.#live.delete(buffer);
    buffer.destroy();
  }

  /**
   * A free region of at least `stride` bytes for a layout `key` (what the caller binds a region
   * as: regions of an older key or a smaller stride are never handed out again, and their arenas
   * go once done with). The region is busy until the GPU has run every command buffer that
   * recorded it; write it with `queue.writeBuffer` at `offset`.
   */
  acquire(stride: number, key: string): RingRegion {
    if (this.#destroyed) throw new Error("the upload ring is destroyed");
    const aligned = Math.ceil(stride / this.#align) * this.#align;
    if (key !== this.#key || aligned > this.#stride) {
      for (const a of this.#arenas) a.retired = true;
      this.#stride = key === this.#key ? Math.max(aligned, this.#stride) : aligned;
      this.#key = key;
      this.#sweep();
    }
    let total = 0;
    let free = 0;
    let region: Region | undefined;
    for (const a of this.#arenas) {
      if (a.retired) continue;
      total += a.regions.length;
      free += a.free.length;
      region ??= a.free.pop();
    }
    // Learn which busy regions are done before running short: early enough that the answer
    // comes before the ring is exhausted (which would grow it), late enough to be rare.
    if (free <= total / 2) this.#probe();
    if (!region) {
      const arena = this.#addArena(Math.max(FIRST_CAPACITY, total));
      region = arena.free.pop()!;
    }
    region.busy = true;
    region.generation++;
    region.target = undefined;
    return region;
  }

  #addArena(wanted: number): Arena {
    const device = this.#device;
    const stride = this.#stride;
    const max = device.limits.maxBufferSize;
    if (stride > max) {
      throw new RangeError(
        `${this.#label} need ${stride} bytes per upload, more than the device's maxBufferSize (${max})`,
      );
    }
    const capacity = Math.max(1, Math.min(wanted, Math.floor(max / stride)));
    const id = this.#nextArena++;
    const buffer = this.#createBuffer(capacity * stride, this.#usage, `${this.#label} ${id}`);
    const marks = this.#createBuffer(
      capacity * this.#markStride,
      BufferUsage.STORAGE | BufferUsage.COPY_SRC,
      `${this.#label} markers ${id}`,
    );
    this.#markerPipeline();
    const arena: Arena = {
      id,
      buffer,
      marks,
      stride,
      key: this.#key!,
      regions: [],
      free: [],
      retired: false,
    };
    for (let i = 0; i < capacity; i++) {
      const region: Region = {
        buffer,
        offset: i * stride,
        id: `${id}.${i}`,
        arena,
        index: i,
        markGroup: device.createBindGroup({
          layout: this.#markLayout!,
          entries: [{
            binding: 0,
            resource: { buffer: marks, offset: i * this.#markStride, size: 4 },
          }],
        }),
        generation: 0,
        busy: false,
        expected: 0,
        target: undefined,
      };
      arena.regions.push(region);
    }
    // Lowest offsets first.
    for (let i = capacity - 1; i >= 0; i--) arena.free.push(arena.regions[i]);
    this.#arenas.push(arena);
    return arena;
  }

  #markerPipeline(): GPUComputePipeline {
    if (!this.#pipeline) {
      ({ pipeline: this.#pipeline, layout: this.#markLayout } = createMarker(this.#device));
    }
    return this.#pipeline;
  }

  /**
   * Records the region's marker into `pass`, unless the last marker went into the same `target`
   * (the command encoder or compute pass the caller records into: one marker per command buffer
   * suffices). Call it before the dispatches that read the region; it leaves the pass's pipeline
   * and bind group 0 set to its own, so set yours after it.
   */
  mark(ringRegion: RingRegion, pass: GPUComputePassEncoder, target: object): void {
    const region = ringRegion as Region;
    if (region.target?.deref() === target) return;
    region.target = new WeakRef(target);
    region.expected++;
    pass.setPipeline(this.#markerPipeline());
    pass.setBindGroup(0, region.markGroup);
    pass.dispatchWorkgroups(1);
  }

  /**
   * Frees a region handed out as `generation` at once, without waiting for markers: for work
   * that will never be submitted (a command buffer dropped unsubmitted). Freeing a region that a
   * submitted command buffer still reads would let a later upload overwrite what it reads.
   */
  release(ringRegion: RingRegion, generation: number): void {
    const region = ringRegion as Region;
    if (!region.busy || region.generation !== generation) return;
    region.busy = false;
    region.target = undefined;
    if (!region.arena.retired) region.arena.free.push(region);
    this.#sweep();
  }

  /** Whether a region handed out as `generation` is still busy with it. */
  holds(region: RingRegion, generation: number): boolean {
    return region.busy && region.generation === generation;
  }

  /**
   * Destroys `buffer` (from {@linkcode UploadRing.createBuffer}) once every region busy now is
   * done with: recorded work may still use it (scratch replaced by a larger one).
   */
  retire(buffer: GPUBuffer): void {
    const waits: Retired["waits"] = [];
    for (const a of this.#arenas) {
      for (const r of a.regions) {
        if (r.busy) waits.push({ region: r, generation: r.generation });
      }
    }
    this.#retired.push({ buffer, waits });
    this.#sweep();
  }

  /** Starts a probe of the busy regions' counters unless one is under way. */
  #probe(): void {
    if (this.#probing || this.#destroyed) return;
    const pending: { region: Region; generation: number; expected: number }[] = [];
    for (const a of this.#arenas) {
      for (const r of a.regions) {
        if (r.busy) pending.push({ region: r, generation: r.generation, expected: r.expected });
      }
    }
    if (pending.length === 0) return;
    const bytes = 4 * pending.length;
    if (!this.#readback || this.#readback.size < bytes) {
      if (this.#readback) this.#destroyBuffer(this.#readback);
      this.#readback = this.#createBuffer(
        Math.max(256, 2 ** Math.ceil(Math.log2(bytes))),
        BufferUsage.MAP_READ | BufferUsage.COPY_DST,
        `${this.#label} probe`,
      );
    }
    const readback = this.#readback;
    const enc = this.#device.createCommandEncoder();
    pending.forEach(({ region }, j) =>
      enc.copyBufferToBuffer(
        region.arena.marks,
        region.index * this.#markStride,
        readback,
        4 * j,
        4,
      )
    );
    this.#device.queue.submit([enc.finish()]);
    this.#probing = true;
    readback.mapAsync(MAP_READ, 0, bytes).then(() => {
      const marks = new Uint32Array(readback.getMappedRange(0, bytes).slice(0));
      readback.unmap();
      pending.forEach(({ region, generation, expected }, j) => {
        // Done: every marker recorded (up to the probe) has run, and none was recorded since.
        if (
          region.busy && region.generation === generation && region.expected === expected &&
          marks[j] === expected
        ) {
          region.busy = false;
          if (!region.arena.retired) region.arena.free.push(region);
        }
      });
    }, () => {
      // Destroyed ring or lost device: nothing to reclaim.
    }).finally(() => {
      this.#probing = false;
      this.#sweep();
    });
  }

  /** Destroys retired arenas and buffers that nothing recorded can read any more. */
  #sweep(): void {
    if (this.#destroyed) return;
    this.#arenas = this.#arenas.filter((a) => {
      if (!a.retired || a.regions.some((r) => r.busy)) return true;
      this.#destroyBuffer(a.buffer);
      this.#destroyBuffer(a.marks);
      return false;
    });
    this.#retired = this.#retired.filter((r) => {
      if (r.waits.some((w) => w.region.busy && w.region.generation === w.generation)) return true;
      this.#destroyBuffer(r.buffer);
      return false;
    });
  }

  /** Destroys every buffer (command buffers recorded with the ring must have run). */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const b of this.#live) b.destroy();
    this.#live.clear();
    this.#arenas = [];
    this.#retired = [];
    this.#readback = undefined;
  }
}

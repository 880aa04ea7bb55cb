/**
 * The upload ring's regions and arenas (see `upload_ring.ts`): what a region is to its users,
 * and the ring's own bookkeeping of arenas, regions and retired buffers.
 *
 * @module
 */

/** One buffer of regions, and the counters of their markers. */
export interface Arena {
  /** Distinguishes arenas in bind group cache tags. */
  readonly id: number;
  readonly buffer: GPUBuffer;
  readonly marks: GPUBuffer;
  readonly stride: number;
  /** The layout key the regions were cut for (see `acquire`). */
  readonly key: string;
  readonly regions: Region[];
  readonly free: Region[];
  retired: boolean;
}

/**
 * One region of an arena, busy from `acquire` until the GPU has run every command buffer that
 * recorded it (see {@linkcode UploadRing.mark}).
 */
export interface RingRegion {
  /** The buffer holding the region. */
  readonly buffer: GPUBuffer;
  /** Byte offset of the region in `buffer` (a multiple of the ring's alignment). */
  readonly offset: number;
  /** Names the region (arena and index). */
  readonly id: string;
  /** Changes each time the region is handed out. */
  readonly generation: number;
  /** Whether the region is handed out and not yet known to be done with. */
  readonly busy: boolean;
}

/** A region with the ring's bookkeeping. */
export interface Region extends RingRegion {
  arena: Arena;
  index: number;
  /** The marker's bind group: the region's counter. */
  markGroup: GPUBindGroup;
  generation: number;
  busy: boolean;
  /** Marker dispatches recorded for the region, ever (its counter's value once all have run). */
  expected: number;
  /** The target (command encoder or pass) the last marker went into. */
  target: WeakRef<object> | undefined;
}

/** A buffer to destroy once every region busy when it was retired is done with. */
export interface Retired {
  buffer: GPUBuffer;
  waits: { region: Region; generation: number }[];
}

/**
 * The upload ring's marker kernel: one thread adds 1 to a region's counter, so the ring can tell
 * when the GPU has run every command buffer that recorded the region (see `upload_ring.ts`).
 *
 * @module
 */

/** `GPUShaderStage.COMPUTE`, spelled out for runtimes without the WebGPU globals. */
const COMPUTE_STAGE = 0x4;

const MARKER_WGSL =
  `// lean-attention upload marker: counts the runs of command buffers reading a region
@group(0) @binding(0) var<storage, read_write> mark: array<u32, 1>;

@compute @workgroup_size(1)
fn main() {
  mark[0] = mark[0] + 1u;
}
`;

/** Compiles the marker kernel and its bind group layout (one storage counter at binding 0). */
export function createMarker(
  device: GPUDevice,
): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout } {
  const layout = device.createBindGroupLayout({
    label: "lean-attention marker",
    entries: [{
      binding: 0,
      visibility: COMPUTE_STAGE,
      buffer: { type: "storage" },
    }],
  });
  const pipeline = device.createComputePipeline({
    label: "lean-attention marker",
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: {
      module: device.createShaderModule({ code: MARKER_WGSL, label: "lean-attention marker" }),
      entryPoint: "main",
    },
  });
  return { pipeline, layout };
}

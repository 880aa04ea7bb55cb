/**
 * The kernels' 8-bit unpacking (`unpack_word` of each format in the dtype table) on a GPU: every
 * code at every byte position of a `u32`, beside random neighbours, decodes to the host's
 * `decodeKV` value over the format's `unpackScale` (which the kernels fold into their scales)
 * bit for bit (NaN codes to NaN). The decode tests reach each code once, at one
 * position; the unpacking shifts and masks each byte position differently.
 */

import assert from "node:assert/strict";
import { decodeKV, type KVDtype } from "../mod.ts";
import { KV_DTYPE_INFO } from "../src/core/dtypes.ts";
import { randomInt, seededRng } from "./helpers.ts";
import { deviceTest, dispatchSrcDst, gpuBuffer, type GpuUnderTest, readF32 } from "./gpu_device.ts";

const FORMATS: readonly KVDtype[] = ["int8", "fp8e4m3", "fp8e5m2"];

/** 256 codes x 4 positions, one code per word at its position, the other three bytes random. */
function words(seed: number): { codes: Uint8Array; positions: Uint32Array } {
  const rng = seededRng(seed);
  const codes = new Uint8Array(4 * 256 * 4);
  for (let i = 0; i < codes.length; i++) codes[i] = randomInt(rng, 0, 255);
  for (let pos = 0; pos < 4; pos++) {
    for (let c = 0; c < 256; c++) codes[4 * (pos * 256 + c) + pos] = c;
  }
  return { codes, positions: new Uint32Array(codes.buffer) };
}

async function unpackOnGpu(gpu: GpuUnderTest, format: KVDtype, packed: Uint32Array) {
  const { device } = gpu;
  const src = gpuBuffer(device, new Float32Array(packed.buffer));
  const dst = gpuBuffer(device, new Float32Array(4 * packed.length).fill(Number.NaN));
  dispatchSrcDst(
    device,
    `${KV_DTYPE_INFO[format].wgslUnpack}
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x < arrayLength(&src)) {
    dst[id.x] = unpack_word(src[id.x]);
  }
}`,
    src,
    dst,
    Math.ceil(packed.length / 64),
  );
  const out = await readF32(device, dst, 4 * packed.length);
  src.destroy();
  dst.destroy();
  return out;
}

await deviceTest(
  "8-bit unpacking: every code at every byte position decodes as the host does",
  async (g) => {
    for (const format of FORMATS) {
      const { codes, positions } = words(FORMATS.indexOf(format) + 1);
      const data = format === "int8" ? new Int8Array(codes.buffer) : codes;
      const unpackScale = KV_DTYPE_INFO[format].unpackScale ?? 1;
      const want = decodeKV(data, format).map((x) => x / unpackScale);
      const got = await unpackOnGpu(g, format, positions);
      for (let i = 0; i < want.length; i++) {
        const same = Number.isNaN(want[i]) ? Number.isNaN(got[i]) : Object.is(got[i], want[i]);
        assert.ok(
          same,
          `${format}: code 0x${codes[i].toString(16)} at byte ${i % 4} decoded to ${got[i]}, ` +
            `host ${want[i]}`,
        );
      }
    }
  },
  { dawnOnSoftware: true },
);

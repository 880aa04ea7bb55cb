/**
 * The KV dtype table (`src/core/dtypes.ts`): every entry is self-consistent, and the host sizes,
 * the kernels' loads and the append kernel's conversion all follow it.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { KV_DTYPE_INFO } from "../src/core/dtypes.ts";
import { elementsPerLoad, kvElementBytes } from "../src/kernels/kernel_layout.ts";
import { kvLoadWGSL } from "../src/kernels/kv_load.ts";
import { appendKernelWGSL } from "../src/kernels/append_kernel.ts";
import { decodeKV, encodeKV, KV_DTYPES } from "../mod.ts";
import { kvRowBytes } from "../plan.ts";
import { fcParams } from "./helpers.ts";

Deno.test("one table entry per KV dtype, each self-consistent", () => {
  assert.deepEqual(Object.keys(KV_DTYPE_INFO).sort(), [...KV_DTYPES].sort());
  for (const dtype of KV_DTYPES) {
    const d = KV_DTYPE_INFO[dtype];
    assert.equal(d.bytes * d.elementsPerLoad, 16, `${dtype}: 16-byte loads`);
    assert.equal(d.HostArray.BYTES_PER_ELEMENT, d.bytes, `${dtype}: host array`);
    assert.equal(d.packed, d.bytes < 4, `${dtype}: packed two per u32`);
    assert.equal(d.wgslWord, d.packed ? "u32" : "f32");
    assert.equal(d.wgslPack === "", !d.packed, `${dtype}: append conversion iff packed`);
    assert.equal(elementsPerLoad(dtype), d.elementsPerLoad);
    assert.equal(kvElementBytes(dtype), d.bytes);
    assert.equal(kvRowBytes({ numKVHeads: 3, headDim: 16, kvDtype: dtype }), 48 * d.bytes);
    const unpack = kvLoadWGSL(dtype);
    assert.match(unpack, new RegExp(`fn unpack_kv\\(w: vec4<${d.wgslWord}>\\)`));
    assert.ok(unpack.includes(`array<vec4<f32>, ${d.elementsPerLoad / 4}>`));
    const append = appendKernelWGSL(dtype);
    assert.ok(append.includes(`var<storage, read_write> dst_k: array<${d.wgslWord}>`));
    assert.equal(append.includes(d.bytes === 1 ? "fn byte_bits" : "fn half_bits"), d.packed);
    assert.equal(d.scaled, d.bytes === 1, `${dtype}: 8-bit dtypes carry scales`);
    assert.equal(d.wgslUnpack8 !== "", d.bytes === 1, `${dtype}: 8-byte loads iff 8-bit`);
    if (d.wgslUnpack8) assert.match(kvLoadWGSL(dtype, 24), /fn unpack_kv\(w: vec2<u32>\)/);
  }
});

Deno.test("encode then decode through the table is the dtype's rounding, and exact when representable", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...KV_DTYPES.filter((d) => !KV_DTYPE_INFO[d].scaled)),
      fc.array(fc.integer({ min: -2048, max: 2048 }), { minLength: 1, maxLength: 64 }),
      (dtype, ints) => {
        // Small integers are exact in every dtype here (bf16 keeps 8 significant bits).
        const values = Float32Array.from(ints, (x) => x / 8);
        const encoded = KV_DTYPE_INFO[dtype].encode(values);
        assert.ok(encoded instanceof KV_DTYPE_INFO[dtype].HostArray);
        const back = decodeKV(encodeKV(values, dtype), dtype);
        for (let i = 0; i < values.length; i++) {
          const exact = Math.abs(ints[i]) <= 256 || dtype !== "bf16";
          if (exact) assert.equal(back[i], values[i], `${dtype} ${values[i]}`);
          else assert.ok(Math.abs(back[i] - values[i]) <= Math.abs(values[i]) / 128);
        }
      },
    ),
    fcParams(200),
  );
});

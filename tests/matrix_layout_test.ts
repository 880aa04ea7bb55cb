/**
 * The matrix-unit decode kernel (src/kernels/matrix_kernel.ts, opt-in `kernel: { matrixMath:
 * true }`) on the CPU: the plan's blocks (`matrixUnitsFit`, `tileConfig`, `matrixRows`), the
 * device check and its probe, the kernel's choice, layout, key and WGSL, and the benchmark's
 * rewrites of it. tests/matrix_kernel_test.ts runs it on the GPU backends.
 */

import assert from "node:assert/strict";
import { createDecoder } from "../mod.ts";
import { gridFor, matrixUnitsFit, tileConfig } from "../plan.ts";
import { gridClassKey } from "../src/kernels/kernel_table.ts";
import { kernelSpec, matrixUnitsOn } from "../src/gpu/kernel_choice.ts";
import { kernelCaps, probeSubgroupMatrix } from "../src/gpu/gpu_runtime.ts";
import { MATRIX_THREADS, matrixLayout } from "../src/kernels/matrix_layout.ts";
import { matrixKernelWGSL } from "../src/kernels/matrix_kernel.ts";
import { specKey } from "../src/kernels/spec_key.ts";

const CAPS = {
  subgroups: true,
  subgroupMinSize: 32,
  shaderF16: true,
  subgroupMatrix: true,
  workgroupBytes: 49152,
};

Deno.test("matrix units: blocks of 16-64 rows over f16 K/V of head dims 16-128, 16 rows to 256", () => {
  const blocks = (rowsPerGroup: number, headDim = 128, matrixUnits = true, kvDtype = "f16") => {
    const t = tileConfig(
      { headDim, rowsPerGroup, kvDtype: kvDtype as "f16" },
      { matrixUnits },
    );
    return [t.rowsPerBlock, t.rowBlocks];
  };
  assert.deepEqual(blocks(16), [16, 1]);
  assert.deepEqual(blocks(24), [32, 1]);
  assert.deepEqual(blocks(64), [64, 1]);
  assert.deepEqual(blocks(128), [64, 2]);
  assert.deepEqual(blocks(16, 64), [16, 1]);
  // Above head dim 128, blocks of 16 rows (whatever the cap asks, up to it).
  assert.deepEqual(blocks(128, 256), [16, 8]);
  assert.deepEqual(blocks(24, 160), [16, 2]);
  assert.deepEqual(
    [64, 16].map((cap) =>
      tileConfig({ headDim: 256, rowsPerGroup: 32, kvDtype: "f16" }, {
        matrixUnits: true,
        matrixUnitRows: cap,
      }).rowsPerBlock
    ),
    [16, 16],
  );
  // Groups of 7-15 rows: one block of 16 (its other rows masked); fewer rows unless
  // `matrixUnitMinRows` asks.
  assert.deepEqual(blocks(8), [16, 1]);
  assert.deepEqual(blocks(7), [16, 1]);
  assert.deepEqual(blocks(12, 256), [16, 1]);
  assert.deepEqual(blocks(6), [6, 1]);
  assert.deepEqual(blocks(4), [4, 1]);
  assert.deepEqual(blocks(8, 128, true, "int8"), [16, 1]);
  assert.deepEqual(blocks(6, 128, true, "fp8e4m3"), [6, 1]);
  assert.deepEqual(blocks(16, 128, true, "int8"), [16, 1]);
  const min = (rowsPerGroup: number, matrixUnitMinRows: number, kvDtype = "f16") =>
    tileConfig({ headDim: 128, rowsPerGroup, kvDtype: kvDtype as "f16" }, {
      matrixUnits: true,
      matrixUnitMinRows,
    }).rowsPerBlock;
  assert.deepEqual([min(4, 4), min(3, 4), min(8, 16), min(1, 1), min(8, 8, "int8")], [
    16,
    3,
    8,
    16,
    16,
  ]);
  for (const bad of [0, 17, 2.5]) {
    assert.throws(() => min(8, bad), RangeError, `matrixUnitMinRows ${bad}`);
  }
  assert.throws(() => min(8, "8" as unknown as number), TypeError);
  // The option off, other head dims or dtypes: the decode kernel's blocks.
  assert.deepEqual(blocks(128, 128, false), [8, 16]);
  assert.deepEqual(blocks(128, 256, false), [4, 32]);
  assert.deepEqual(blocks(128, 128, true, "bf16"), [8, 16]);
  assert.deepEqual(blocks(16, 288), [4, 4]);
  assert.ok(matrixUnitsFit(16, 16, "f16") && matrixUnitsFit(96, 96, "f16"));
  assert.ok(matrixUnitsFit(160, 160, "f16") && matrixUnitsFit(256, 256, "fp8e4m3"));
  for (
    const [d, dv, dtype] of [
      [128, 64, "f16"],
      [136, 136, "f16"],
      [120, 120, "f16"],
      [144, 144, "f16"],
      [288, 288, "f16"],
      [256, 128, "f16"],
    ] as const
  ) {
    assert.ok(!matrixUnitsFit(d, dv, dtype), `${d}/${dv}`);
  }
  // 8-bit codes are staged as their values in f16; bf16 and f32 are not.
  for (const dtype of ["int8", "fp8e4m3", "fp8e5m2"] as const) {
    assert.ok(matrixUnitsFit(128, 128, dtype), dtype);
    assert.deepEqual(blocks(16, 128, true, dtype), [16, 1], dtype);
  }
  assert.ok(!matrixUnitsFit(128, 128, "bf16") && !matrixUnitsFit(128, 128, "f32"));
});

Deno.test("the matrix kernel over 8-bit K/V: 16 codes per load, staged as scaled f16 values", () => {
  const spec = (kvDtype: "f16" | "int8" | "fp8e4m3" | "fp8e5m2", kvScales?: "token" | "layer") =>
    kernelSpec(
      {
        problem: { headDim: 128, kvDtype },
        tiles: tileConfig({ headDim: 128, rowsPerGroup: 64, kvDtype }, { matrixUnits: true }),
      },
      CAPS,
      {},
      false,
      kvScales,
    );
  const f16 = matrixLayout(spec("f16"));
  const keys = new Set<string>();
  for (const [dtype, scales] of [["int8"], ["fp8e4m3", "token"], ["fp8e5m2", "layer"]] as const) {
    const s = spec(dtype, scales);
    assert.equal(s.matrix, true, dtype);
    assert.equal(s.kvScales, scales, dtype);
    const l = matrixLayout(s);
    // Half the chunks of f16's per row and tile, the same workgroup memory.
    assert.deepEqual([l.CHUNKS, l.CK, l.bytes], [f16.CHUNKS / 2, f16.CK / 2, f16.bytes], dtype);
    const wgsl = matrixKernelWGSL(s);
    keys.add(specKey("decode", s));
    assert.ok(wgsl.includes(`kv=${dtype} `), dtype);
    assert.ok(wgsl.includes("fn unpack_kv(w: vec4<u32>) -> array<vec4<f32>, 4>"), dtype);
    // 16 halves stored per chunk, each the code's value times its scale.
    assert.ok(wgsl.includes("kv_wg[at + 15u] = f16(u[3].w * m);"), dtype);
    const table = wgsl.includes("var<storage, read> kv_scales");
    assert.equal(table, scales !== undefined, `${dtype}: the scale table bound`);
    if (scales === "token") {
      assert.ok(wgsl.includes("sw0 = kv_scales[kv_row(kv_start, tok) * n_kv + kv_head];"));
      assert.ok(wgsl.includes("let m = sw0.x * 256.0;") && wgsl.includes("let m = sw0.y * 256.0;"));
    } else {
      const k = scales === "layer" ? "kv_scales[0].x" : "params.k_scale";
      assert.ok(wgsl.includes(`let k_mul = ${k};`), `${dtype}: ${k}`);
      assert.ok(wgsl.includes("let m = k_mul;") && wgsl.includes("let m = v_mul;"));
    }
  }
  assert.equal(keys.size, 3);
});

Deno.test("the matrix kernel's device check, choice, layout, key and WGSL", () => {
  assert.ok(matrixUnitsOn(CAPS));
  assert.ok(!matrixUnitsOn({ ...CAPS, subgroupMatrix: false }));
  assert.ok(!matrixUnitsOn({ ...CAPS, workgroupBytes: 16384 }), "23 KiB of workgroup memory");
  const plan = (rowsPerGroup: number, headDim = 128) => ({
    problem: { headDim, kvDtype: "f16" as const },
    tiles: tileConfig({ headDim, rowsPerGroup, kvDtype: "f16" }, { matrixUnits: true }),
  });
  assert.throws(
    () => kernelSpec(plan(64), { ...CAPS, subgroupMatrix: false }),
    (e: unknown) => e instanceof RangeError && /matrix kernel/.test(e.message),
  );
  const keys = new Set<string>();
  for (const [rows, g, t, ck] of [[16, 4, 64, 8], [32, 2, 32, 4], [64, 1, 32, 4]]) {
    const spec = kernelSpec(plan(rows), CAPS);
    assert.equal(spec.matrix, true);
    assert.equal(spec.workgroupSize, MATRIX_THREADS);
    const l = matrixLayout(spec);
    assert.deepEqual([l.G, l.T, l.CK], [g, t, ck]);
    assert.ok(l.bytes <= 49152, `${rows} rows: ${l.bytes} bytes`);
    keys.add(specKey("decode", spec));
    const wgsl = matrixKernelWGSL(spec, { enableDirective: true });
    assert.ok(wgsl.startsWith("enable f16;\nenable subgroups;"));
    assert.ok(wgsl.includes("diagnostic(off, chromium.subgroup_matrix_uniformity);"));
    assert.ok(wgsl.includes("@compute @workgroup_size(128)"));
    // Both products on the matrix units (every Gth block of each per subgroup): the scores
    // stored each tile, the sums of P V kept across tiles (flushed into the threads' f32 sums
    // only to rescale them or on a masked tile, and at the end); the masked tiles' select.
    // (A flush's passes through so_wg take each of a subgroup's dim blocks once.)
    assert.equal(wgsl.match(/subgroupMatrixStore/g)?.length, l.T / 16 / g + 2 * 8 / g);
    assert.ok(!wgsl.includes("subgroupMatrixLoad<subgroup_matrix_result"));
    assert.ok(wgsl.includes("workgroupUniformLoad(&resc_wg)"));
    // Every workgroup array a multiple of 16 bytes (the matrix loads and stores need 16-byte
    // alignment; a lone u32 among them broke every output on the H200), and their sum the
    // layout's, at every head dim.
    for (let d = 16; d <= 128; d += 16) {
      const spec = kernelSpec(plan(rows, d), CAPS);
      let bytes = 0;
      const code = matrixKernelWGSL(spec);
      for (const [, type, n] of code.matchAll(/var<workgroup> \w+: array<(f16|f32|u32), (\d+)>/g)) {
        const size = Number(n) * (type === "f16" ? 2 : 4);
        assert.equal(size % 16, 0, `${rows} rows, d${d}: an array of ${n} ${type}`);
        bytes += size;
      }
      assert.ok(
        !/var<workgroup> \w+: (?!array)/.test(code),
        `${rows} rows, d${d}: a lone variable`,
      );
      assert.equal(bytes, matrixLayout(spec).bytes);
    }
    assert.ok(wgsl.includes("select(vec2<f32>(0.0), p * v, p >= 0.0)"));
  }
  assert.equal(keys.size, 3);
  // Head dims above 128: 16 rows, 32-token tiles, each token block's scores in two parts of the
  // dims (each subgroup keeps its part's query matrices) that the softmax adds; 2 workgroups per
  // multiprocessor by workgroup memory (below about 27 KB).
  for (const d of [160, 192, 224, 256]) {
    const spec = kernelSpec(plan(16, d), CAPS);
    const l = matrixLayout(spec);
    assert.deepEqual([l.RB, l.G, l.KP, l.T, l.FW], [16, 4, 2, 32, 32], `d${d}`);
    assert.ok(l.bytes <= 27 * 1024, `d${d}: ${l.bytes} bytes`);
    const wgsl = matrixKernelWGSL(spec);
    assert.ok(wgsl.includes("let kp = g / 2u;"), `d${d}`);
    assert.ok(wgsl.includes(`var q${d / 32 - 1} = `) && !wgsl.includes(`var q${d / 32} = `));
    assert.ok(
      wgsl.includes("var s0 = so_wg[so + sr + i0 + 0u] + so_wg[so + 512u + sr + i0 + 0u];"),
    );
    assert.ok(
      wgsl.includes(
        "subgroupMatrixStore<row_major>(&so_wg, so + kp * 512u + 16u * (g % 2u), s, 32u)",
      ),
    );
    // One score store per subgroup, and each flush's stores of its dim blocks: at d256 a
    // subgroup's four blocks (g, g + 4, ...) each guarded in the two passes of 32 dims that may
    // hold it, in the loop's flush and the final one.
    if (d === 256) assert.equal(wgsl.match(/subgroupMatrixStore/g)?.length, 1 + 2 * 4 * 2);
    let bytes = 0;
    for (const [, type, n] of wgsl.matchAll(/var<workgroup> \w+: array<(f16|f32|u32), (\d+)>/g)) {
      const size = Number(n) * (type === "f16" ? 2 : 4);
      assert.equal(size % 16, 0, `d${d}: an array of ${n} ${type}`);
      bytes += size;
    }
    assert.equal(bytes, l.bytes, `d${d}`);
    keys.add(specKey("decode", spec));
  }
  assert.equal(keys.size, 7);
  assert.throws(
    () => matrixLayout({ ...kernelSpec(plan(16, 256), CAPS), rowsPerBlock: 32 }),
    RangeError,
  );
  assert.ok([...keys].every((k) => k.includes(":matrix")));
  // Each block size has a grid class of its own (session 48's took the decode kernel's 8-row
  // class, so its calibrated grids were dropped); a class not calibrated falls back to the
  // largest per-rows grid.
  assert.deepEqual(
    [gridClassKey(128, 16), gridClassKey(128, 64), gridClassKey(64, 32), gridClassKey(128, 8)],
    ["matrix r16 d128", "matrix r64 d128", "matrix r32 d64", "r8 d128"],
  );
  const profile = {
    name: "gpu",
    grid: 502,
    source: "calibrated" as const,
    gridByRows: { 1: 502, 8: 264 },
    gridByClass: { "r8 d128": 264, "matrix r16 d128": 131, "matrix r64 d128": 128 },
  };
  assert.deepEqual(
    [gridFor(profile, 16, 128), gridFor(profile, 64, 128), gridFor(profile, 32, 128)],
    [131, 128, 264],
  );
  const paged = kernelSpec(
    { ...plan(16), kv: { kind: "paged", layout: "HND" } } as never,
    CAPS,
    {},
    true,
  );
  // Paged: a tile's token addresses read from the page table once each (by its first 64
  // threads, into workgroup memory: the first tile's before the query rounds, each next one's
  // read before the scores and stored after them), and the staging loads reading them there.
  const pagedWGSL = matrixKernelWGSL(paged);
  assert.ok(pagedWGSL.includes("fn kv_page("));
  const count = (s: string) => pagedWGSL.split(s).length - 1;
  assert.equal(count("pg_page = kv_page(kv_start, pg_tok);"), 2);
  assert.equal(count("tok_wg[lid] = kv_addr_at(pg_page, pg_tok, kv_head);"), 2);
  const loop = pagedWGSL.slice(pagedWGSL.indexOf("for (var tile0"));
  const [read, scores, write] = [
    "pg_page = kv_page(kv_start, pg_tok);",
    "subgroupMatrixMultiplyAccumulate(",
    "tok_wg[lid] = kv_addr_at(",
  ].map((s) => loop.indexOf(s));
  assert.ok(
    0 <= read && read < scores && scores < write,
    "the next tile's pages read before the scores",
  );
  assert.ok(pagedWGSL.includes("let a = tok_wg[idx / 16u] + idx % 16u;"));
  assert.ok(!pagedWGSL.includes("kv_addr(kv_start"));
  let pagedBytes = 0;
  for (
    const [, type, n] of pagedWGSL.matchAll(/var<workgroup> \w+: array<(f16|f32|u32), (\d+)>/g)
  ) {
    pagedBytes += Number(n) * (type === "f16" ? 2 : 4);
  }
  assert.equal(pagedBytes, matrixLayout(paged).bytes);
  assert.equal(pagedBytes, matrixLayout(kernelSpec(plan(16), CAPS)).bytes + 64 * 4);
  assert.ok(!matrixKernelWGSL(kernelSpec(plan(16, 64), CAPS)).includes("enable subgroups;"));
  assert.throws(
    () => matrixLayout({ ...kernelSpec(plan(16), CAPS), workgroupSize: 256 }),
    RangeError,
  );
});

Deno.test("kernelCaps: subgroup matrices need the feature, f16 configs, f16 and 32-lane subgroups", () => {
  const features = new Set([
    "subgroups",
    "shader-f16",
    "chromium-experimental-subgroup-matrix",
  ]);
  const device = (f: Set<string>) =>
    ({ features: f, limits: { maxComputeWorkgroupStorageSize: 49152 } }) as unknown as GPUDevice;
  const config = { componentType: "f16", resultComponentType: "f32", M: 16, N: 16, K: 16 };
  const info = (over: Record<string, unknown> = {}) =>
    ({
      subgroupMinSize: 32,
      subgroupMaxSize: 32,
      subgroupMatrixConfigs: [config],
      ...over,
    }) as unknown as GPUAdapterInfo;
  assert.equal(kernelCaps(device(features), info()).subgroupMatrix, true);
  assert.equal(kernelCaps(device(features), info({ subgroupMinSize: 16 })).subgroupMatrix, false);
  assert.equal(kernelCaps(device(features), info({ subgroupMaxSize: 64 })).subgroupMatrix, false);
  assert.equal(
    kernelCaps(device(features), info({ subgroupMatrixConfigs: [{ ...config, M: 8 }] }))
      .subgroupMatrix,
    false,
  );
  for (const missing of features) {
    const fewer = new Set([...features].filter((f) => f !== missing));
    assert.equal(kernelCaps(device(fewer), info()).subgroupMatrix, false, missing);
  }
});

Deno.test("a device whose adapter info lists no matrix configurations is probed by a compile", async () => {
  const features = new Set(["subgroups", "shader-f16", "chromium-experimental-subgroup-matrix"]);
  let compiles = 0;
  const device = (ok: boolean) =>
    ({
      features,
      limits: { maxComputeWorkgroupStorageSize: 49152 },
      pushErrorScope() {},
      popErrorScope: () => Promise.resolve(null),
      createShaderModule: (d: { code: string }) => d,
      createComputePipelineAsync: (d: { compute: { module: { code: string } } }) => {
        compiles++;
        assert.ok(d.compute.module.code.includes("subgroup_matrix_left<f16, 16, 16>"));
        return ok ? Promise.resolve({}) : Promise.reject(new Error("refused"));
      },
    }) as unknown as GPUDevice;
  const info = { subgroupMinSize: 32, subgroupMaxSize: 32 } as unknown as GPUAdapterInfo;
  const probed = async (ok: boolean, i = info) =>
    (await probeSubgroupMatrix(device(ok), i, kernelCaps(device(ok), i))).subgroupMatrix;
  assert.equal(await probed(true), true);
  assert.equal(await probed(false), false);
  assert.equal(compiles, 2);
  // Listed configurations are taken as they stand; 16-lane subgroups are not probed.
  const eights = [{ componentType: "f16", resultComponentType: "f32", M: 8, N: 8, K: 8 }];
  assert.equal(await probed(true, { ...info, subgroupMatrixConfigs: eights } as never), false);
  assert.equal(await probed(true, { ...info, subgroupMatrixConfigs: [] } as never), true);
  assert.equal(await probed(true, { ...info, subgroupMinSize: 16 } as never), false);
  assert.equal(compiles, 3);
});

Deno.test("matrixRows caps the matrix kernel's blocks, and a bad value is a RangeError", async () => {
  const rows = (matrixUnitRows: number) =>
    tileConfig({ headDim: 128, rowsPerGroup: 128, kvDtype: "f16" }, {
      matrixUnits: true,
      matrixUnitRows,
    });
  assert.deepEqual([rows(32).rowsPerBlock, rows(32).rowBlocks], [32, 4]);
  assert.deepEqual([rows(16).rowsPerBlock, rows(16).rowBlocks], [16, 8]);
  for (const bad of [8, 48, 128]) {
    assert.throws(
      () => rows(bad),
      (e: unknown) =>
        e instanceof RangeError && e.message.includes(`matrixUnitRows`) &&
        e.message.includes(`${bad}`),
    );
  }
  await assert.rejects(
    createDecoder({ backend: "cpu", kernel: { matrixRows: 24 } }),
    (e: unknown) => e instanceof RangeError && e.message.includes("24"),
  );
  await assert.rejects(
    createDecoder({ backend: "cpu", kernel: { matrixMinRows: 17 } }),
    (e: unknown) =>
      e instanceof RangeError && e.message.includes("MinRows") && e.message.includes("17"),
  );
});

Deno.test("bench's rewrites of the matrix kernel (diag_matrix_time.ts) find what they rewrite", async () => {
  const { MATRIX_TIME_VARIANTS } = await import("../bench/matrix_rewrites.ts");
  for (const rowsPerBlock of [16, 64]) {
    const code = matrixKernelWGSL({
      headDim: 128,
      kvDtype: "f16",
      tileTokens: 64,
      rowsPerBlock,
      workgroupSize: MATRIX_THREADS,
      tiled: true,
      matrix: true,
    });
    const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;
    for (const [name, rewrite] of Object.entries(MATRIX_TIME_VARIANTS)) {
      if (rewrite === undefined) continue;
      const out = rewrite(code);
      assert.notEqual(out, code, name);
      const reads = count(out, /[kv]_cache\[/g);
      assert.equal(reads, name === "no-kv-reads" ? 0 : count(code, /[kv]_cache\[/g), name);
    }
    // k-early: the next tile's K loads come before the scores, its V loads stay after them.
    const early = MATRIX_TIME_VARIANTS["k-early"]!(code);
    const scores = early.indexOf("s = subgroupMatrixMultiplyAccumulate");
    const next = early.slice(early.indexOf("for (var tile0"));
    assert.ok(next.indexOf("kw0 = k_cache[a]") < next.indexOf("s = subgroupMatrix"));
    assert.ok(early.lastIndexOf("vw0 = v_cache[a]") > scores);
  }
});

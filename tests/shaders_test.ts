/**
 * Generated WGSL, checked without a GPU: specialisation constants, bindings, 16-byte loads, no
 * `shader-f16`, workgroup memory within WebGPU's limits, and cache keys that tell specs apart.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeKernelWGSL } from "../src/kernels/decode_kernel.ts";
import { decodeWorkgroupBytes } from "../src/kernels/decode_output.ts";
import { KV_DTYPE_INFO } from "../src/core/dtypes.ts";
import {
  earlyLoads,
  halfMath,
  halfValues,
  intDots,
  type KernelSpec,
  queryStaged,
  scaleTable,
} from "../src/kernels/kernel_spec.ts";
import { specKey } from "../src/kernels/spec_key.ts";
import { elementsPerLoad, kernelLayout } from "../src/kernels/kernel_layout.ts";
import { KERNEL_TABLE, kernelChoice, kernelChoiceKey } from "../src/kernels/kernel_table.ts";
import { kernelLayoutEntries } from "../src/kernels/abi.ts";
import { kvLoadWGSL } from "../src/kernels/kv_load.ts";
import { mergeKernelWGSL } from "../src/kernels/merge_kernel.ts";
import { KV_DTYPES } from "../mod.ts";
import { tileConfig } from "../plan.ts";
import { fcParams } from "./helpers.ts";
import { kernelSpec } from "../src/gpu/kernel_choice.ts";

/** Specs the planner can produce, with tile options the decoder accepts. */
const specArb: fc.Arbitrary<KernelSpec> = fc.record({
  headDim: fc.integer({ min: 1, max: 32 }).map((n) => 8 * n),
  kvDtype: fc.constantFrom(...KV_DTYPES),
  rowsPerGroup: fc.integer({ min: 1, max: 256 }),
  tileTokens: fc.constantFrom(16, 32, 64, 128, 256),
  workgroupSize: fc.constantFrom(16, 32, 64, 128, 256),
  maxLanes: fc.constantFrom(1, 2, 4, 8, 16, 32),
  subgroups: fc.boolean(),
  prefetch: fc.constantFrom<boolean | "split">(false, true, "split"),
  queryShared: fc.boolean(),
  halfMath: fc.boolean(),
  intDots: fc.boolean(),
  halfValues: fc.option(fc.boolean(), { nil: undefined }),
  earlyLoads: fc.boolean(),
  fmaDots: fc.boolean(),
  fastSteps: fc.boolean(),
  paged: fc.boolean(),
  unroll: fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }),
  hnd: fc.boolean(),
  qDtype: fc.constantFrom<"f32" | "f16" | undefined>(undefined, "f32", "f16"),
  outDtype: fc.constantFrom<"f32" | "f16" | undefined>(undefined, "f32", "f16"),
  scaleSource: fc.constantFrom("tensor" as const, "token" as const, "layer" as const),
  rowSets: fc.constantFrom(1, 2, 4),
  rowScatter: fc.boolean(),
  vPerToken: fc.boolean(),
  queryStaged: fc.boolean(),
}).map((r) => {
  const t = tileConfig(r, r);
  const chunks = r.headDim / elementsPerLoad(r.kvDtype, r.headDim);
  let lanes = 1;
  while (lanes * 2 <= Math.min(r.maxLanes, r.workgroupSize) && chunks % (lanes * 2) === 0) {
    lanes *= 2;
  }
  const spec: KernelSpec = {
    headDim: r.headDim,
    kvDtype: r.kvDtype,
    tileTokens: t.tileTokens,
    rowsPerBlock: t.rowsPerBlock,
    workgroupSize: t.workgroupSize,
    lanes,
    unroll: r.unroll,
    subgroups: r.subgroups,
    prefetch: r.prefetch,
    ...(r.queryShared ? { queryShared: true } : {}),
    ...(r.halfMath ? { halfMath: true } : {}),
    ...(r.intDots ? { intDots: true } : {}),
    ...(r.halfValues === undefined ? {} : { halfValues: r.halfValues }),
    ...(r.earlyLoads ? { earlyLoads: true } : {}),
    ...(r.fmaDots ? { fmaDots: true } : {}),
    ...(r.rowScatter ? { rowScatter: true } : {}),
    ...(r.vPerToken ? { vPerToken: true } : {}),
    ...(r.queryStaged ? { queryStaged: true } : {}),
    fastSteps: r.fastSteps,
    paged: r.paged,
    ...(r.hnd ? { kvLayout: "HND" as const } : {}),
    ...(r.qDtype ? { qDtype: r.qDtype } : {}),
    ...(r.outDtype ? { outDtype: r.outDtype } : {}),
    ...(KV_DTYPE_INFO[r.kvDtype].scaled ? { kvScales: r.scaleSource } : {}),
  };
  // The row sets the layout resolves to (fewer where they do not divide the rows), so that
  // equal kernels have equal specs.
  const rowSets = kernelLayout({ ...spec, rowSets: r.rowSets }).rowSets;
  return rowSets > 1 ? { ...spec, rowSets } : spec;
});

function constant(wgsl: string, name: string): number {
  const m = wgsl.match(new RegExp(`const ${name}: u32 = (\\d+)u;`));
  assert.ok(m, `constant ${name} is declared`);
  return Number(m[1]);
}

Deno.test("decode kernel bakes its spec into constants and the workgroup size", () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      const wgsl = decodeKernelWGSL(spec);
      assert.equal(constant(wgsl, "D"), spec.headDim);
      assert.equal(constant(wgsl, "T"), spec.tileTokens);
      assert.equal(constant(wgsl, "RP"), spec.rowsPerBlock);
      assert.equal(constant(wgsl, "SLOT"), spec.rowsPerBlock * (spec.headDim + 2));
      assert.ok(wgsl.includes(`@workgroup_size(${spec.workgroupSize})`));
      const l = kernelLayout(spec);
      assert.equal(constant(wgsl, "CHUNKS"), l.chunks);
      assert.equal(constant(wgsl, "LANES"), l.lanes);
      assert.equal(constant(wgsl, "GROUPS"), l.groups);
      assert.equal(constant(wgsl, "STEP"), l.groups * l.unroll);
      assert.equal(l.groups * l.lanes * l.rowSets, spec.workgroupSize, "every thread has a lane");
      assert.equal(l.rowsPerThread * l.rowSets, spec.rowsPerBlock, "row sets split the rows");
      assert.equal(l.chunksPerLane * l.lanes, l.chunks, "lanes split a row's chunks exactly");
      assert.ok(l.step <= Math.max(l.groups, spec.tileTokens), "a step is not longer than a tile");
      // Every lane loads each of its chunks once per token of the step (prefetch: the first
      // step's before the loop, the next step's in it).
      const loads = (wgsl.match(/k_cache\[/g) ?? []).length;
      assert.equal(loads, l.unroll * l.chunksPerLane * (spec.prefetch ? 2 : 1));
      assert.equal((wgsl.match(/v_cache\[/g) ?? []).length, loads);
      // Query rows in workgroup memory: no query registers, one read per vector and step.
      // Packed f16 dot products (f16 KV only) hold the rows as f16 and take precedence.
      const half = halfMath(spec);
      const shared = spec.queryShared === true && !half;
      // Staged rows: read once per workgroup into q_sh, then copied into the thread's registers.
      const staged = spec.queryStaged === true && !shared && !half;
      assert.equal(queryStaged(spec), staged);
      assert.equal(/var<workgroup> q_sh/.test(wgsl), shared || staged);
      assert.equal(/var qv = /.test(wgsl), !shared && !half && !intDots(spec));
      assert.equal(/qv\[\d+\] = q_sh\[/.test(wgsl), staged);
      assert.equal(/var qh = array<vec4<f16>/.test(wgsl), half && !intDots(spec));
      assert.equal(wgsl.startsWith("enable f16;"), half);
      // 8-bit keys under packed f16 are unpacked into halves; at per-tensor scales the weighted
      // sum of V is packed too, its f16 sums added into the f32 state after the last step.
      assert.equal(
        /let kh0_0 = unpack_kh\(k0_0\);/.test(wgsl),
        half && spec.kvDtype !== "f16" && !intDots(spec),
      );
      assert.equal(/var oh = array<vec4<f16>/.test(wgsl), halfValues(spec));
      // int8 keys by integer dot products: no unpacking of K, the rows as fixed-point bytes.
      assert.equal(/dot4I8Packed\(k0_0\[\d+\], qhi\[/.test(wgsl), intDots(spec));
      assert.equal(/unpack_kv\(k0_0\)/.test(wgsl), !half && !intDots(spec));
      // f16 V's sums are packed only where asked (its halves in order: no swizzle back).
      assert.equal(
        halfValues(spec),
        half && spec.kvScales !== "token" && !intDots(spec) &&
          (spec.kvDtype === "f16" ? spec.halfValues === true : spec.halfValues !== false),
      );
      if (halfValues(spec)) {
        const afterLoop = wgsl.slice(wgsl.lastIndexOf("s0 += STEP"));
        const swizzle = spec.kvDtype === "f16" ? "" : "\\.xzyw";
        assert.match(
          afterLoop,
          new RegExp(
            `\\n {4}\\}\\n {4}o\\[0\\] \\+= vec4<f32>\\(oh\\[0\\]\\)${swizzle}; oh\\[0\\] = Z4H;`,
          ),
        );
        assert.equal(/v_cache: array<KHalves>/.test(wgsl), spec.kvDtype === "f16");
      }
      // Early loads: the next step's words used before the softmax update, with whole prefetch
      // and words (not f16 halves); with per-token scales, the next step's scale pairs too.
      assert.equal(earlyLoads(spec), spec.earlyLoads === true && spec.prefetch === true);
      assert.equal(/ {6}early \^= /.test(wgsl), earlyLoads(spec));
      // f16 K chunks of packed f16 math are `KHalves`: one half of each part, packed.
      const halfKeys = /k_cache: array<KHalves>/.test(wgsl);
      assert.equal(
        / {6}early \^= pack2x16float\(vec2<f32>\(f32\(nk0_0\.lo\.x\), f32\(nk0_0\.hi\.x\)\)\)/
          .test(wgsl),
        earlyLoads(spec) && halfKeys,
      );
      assert.equal(
        / {6}early \^= bitcast<u32>\(nk0_0\.x\)/.test(wgsl),
        earlyLoads(spec) && !halfKeys,
      );
      assert.equal(
        /early \^= [^;]*bitcast<u32>\(nsc0\.x\)/.test(wgsl),
        earlyLoads(spec) && spec.kvScales === "token",
      );
      // Per-tensor 8-bit scales from the params, or (`"layer"`) the scale table's first entry.
      const scaled = KV_DTYPE_INFO[spec.kvDtype].scaled;
      const layerScales = scaled && spec.kvScales === "layer";
      assert.equal(/kv_scales\[0\]\.x/.test(wgsl), layerScales);
      assert.equal(
        /params\.k_scale/.test(wgsl),
        scaled && (spec.kvScales ?? "tensor") === "tensor",
      );
      assert.equal(/var<storage, read> kv_scales/.test(wgsl), scaleTable(spec));
      // ... and with pages, the page-table entries read ahead for the step after it.
      assert.equal(/early \^= [^;]* \^ npg[0A]/.test(wgsl), earlyLoads(spec) && spec.paged);
      if (shared) {
        const reads = (wgsl.match(/let qq = q_sh\[/g) ?? []).length;
        assert.equal(
          reads,
          l.rowsPerThread * l.chunks / l.lanes * elementsPerLoad(spec.kvDtype, spec.headDim) / 4,
        );
      }
      if (spec.prefetch === "split") {
        // The next K is requested after this step's dot products, the next V after its update.
        const body = wgsl.slice(wgsl.indexOf("for (var s0"));
        // K's first use: a vec4 dot product, a chain of multiply-adds, or packed f16 halves.
        const firstUse = body.search(
          /dot\(kf0_0|fma\(kf0_0|\bk0_0\.(lo|hi)|unpack_kh\(k0_0|dot4I8Packed\(k0_0/,
        );
        assert.ok(firstUse >= 0 && body.indexOf("nk0_0 = k_cache") > firstUse);
        assert.ok(body.indexOf("nv0_0 = v_cache") > body.indexOf("let vf0_0"));
      }
    }),
    fcParams(300),
  );
});

Deno.test("kernels need no shader-f16, use subgroups only when asked, bind at most 8 storage buffers", () => {
  fc.assert(
    fc.property(specArb, fc.boolean(), (spec, enableDirective) => {
      const l = kernelLayout(spec);
      const sources = [
        decodeKernelWGSL(spec, { enableDirective }),
        mergeKernelWGSL(spec, { enableDirective }),
      ];
      for (const source of sources) {
        const wgsl = source.replace(/\/\/.*$/gm, "");
        const decode = source.includes("decode kernel");
        if (!halfMath(spec) || !decode) {
          assert.doesNotMatch(wgsl, /\bf16\b/, "no f16 type (shader-f16 is not required)");
        }
        // The decode kernel adds its lanes' sums with shuffles; the merge kernel reduces its
        // slots' states with them wherever the spec has subgroups.
        const shuffles = /subgroupShuffleXor/.test(wgsl);
        assert.equal(shuffles, l.subgroups && (l.lanes > 1 || !decode));
        assert.equal(/\benable subgroups;/.test(wgsl), enableDirective && l.subgroups);
        const storage = wgsl.match(/var<storage/g)?.length ?? 0;
        // 8 (WebGPU's default limit), 9 for paged kernels with an 8-bit scale table.
        const most = l.paged && scaleTable(spec) ? 9 : 8;
        assert.ok(storage >= 3 && storage <= most, `${storage} storage bindings`);
        // Every kernel binds by the ABI's one numbering (src/kernels/abi.ts): the decode kernel
        // exactly the bindings of the one explicit layout, in order; the merge kernel a subset.
        const bindings = [...wgsl.matchAll(/@binding\((\d+)\)/g)].map((m) => Number(m[1]));
        const layout = kernelLayoutEntries({
          paged: l.paged,
          kvScales: scaleTable(spec),
        }).map((e) => e.binding);
        if (decode) {
          assert.deepStrictEqual(bindings, layout, "bindings are the layout's");
        } else {
          assert.deepStrictEqual(bindings, [...bindings].sort((a, b) => a - b));
          for (const b of bindings) assert.ok(layout.includes(b), `merge binding ${b}`);
        }
        assert.equal(/var<storage, read> pages/.test(wgsl), l.paged && decode);
        // Tint's parser refuses deep nesting (64 nested ifs failed on Dawn, session 28).
        let depth = 0, deepest = 0;
        for (const c of wgsl) {
          if (c === "{") deepest = Math.max(deepest, ++depth);
          if (c === "}") depth--;
        }
        assert.ok(deepest <= 24, `braces nested ${deepest} deep`);
        // ... and deeply nested calls (a 136-dim score's multiply-adds on one lane, session 29).
        let parens = 0, deepestParens = 0;
        for (const c of wgsl) {
          if (c === "(") deepestParens = Math.max(deepestParens, ++parens);
          if (c === ")") parens--;
        }
        assert.ok(deepestParens <= 32, `calls nested ${deepestParens} deep`);
      }
    }),
    fcParams(200),
  );
});

Deno.test("the decode and merge kernels declare each binding with the one layout's buffer type", () => {
  const declared: Record<string, string> = {
    "uniform": "uniform",
    "storage, read": "read-only-storage",
    "storage, read_write": "storage",
  };
  fc.assert(
    fc.property(specArb, (spec) => {
      // By binding number (the per-token scale table is binding 10, also without pages).
      const layout = kernelLayoutEntries({
        paged: spec.paged ?? false,
        kvScales: scaleTable(spec),
      });
      const numbers = layout.map((e) => e.binding);
      const entries: string[] = [];
      for (const e of layout) entries[e.binding] = e.type;
      const used = new Set<number>();
      for (const source of [decodeKernelWGSL(spec), mergeKernelWGSL(spec)]) {
        const vars = [...source.matchAll(/@binding\((\d+)\) var<([^>]+)>/g)];
        assert.ok(vars.length >= 5);
        for (const [, n, kind] of vars) {
          assert.equal(declared[kind], entries[Number(n)], `binding ${n} is var<${kind}>`);
          used.add(Number(n));
        }
      }
      assert.deepStrictEqual([...used].sort((a, b) => a - b), numbers);
    }),
    fcParams(100),
  );
});

Deno.test("KV is read 16 bytes at a time and halves are unpacked from u32", () => {
  assert.match(kvLoadWGSL("f32"), /fn unpack_kv\(w: vec4<f32>\)/);
  for (const dtype of ["f16", "bf16"] as const) {
    const wgsl = decodeKernelWGSL({
      headDim: 128,
      kvDtype: dtype,
      tileTokens: 64,
      rowsPerBlock: 4,
      workgroupSize: 64,
    });
    assert.match(wgsl, /var<storage, read> k_cache: array<vec4<u32>>/);
    assert.match(wgsl, /var<storage, read> v_cache: array<vec4<u32>>/);
  }
  assert.match(kvLoadWGSL("f16"), /unpack2x16float/);
  assert.match(kvLoadWGSL("bf16"), /w << 16u/);
  assert.match(kvLoadWGSL("bf16"), /w & 0xffff0000u/);
  const f32 = decodeKernelWGSL({
    headDim: 64,
    kvDtype: "f32",
    tileTokens: 64,
    rowsPerBlock: 1,
    workgroupSize: 64,
  });
  assert.match(f32, /var<storage, read> k_cache: array<vec4<f32>>/);
});

Deno.test("decode workgroup memory is what the kernel declares, and bounded", () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      const bytes = decodeWorkgroupBytes(spec);
      const wgsl = decodeKernelWGSL(spec);
      let declared = 0;
      for (const m of wgsl.matchAll(/var<workgroup> \w+: array<(vec4<f32>|f32), (\d+)>/g)) {
        declared += Number(m[2]) * (m[1] === "f32" ? 4 : 16);
      }
      assert.ok(
        Math.abs(declared - bytes) <= 8 * 256,
        "decodeWorkgroupBytes matches the declarations",
      );
      // Within WebGPU's default 16 KiB of workgroup memory (lavapipe has 32 KiB).
      assert.ok(declared <= 16 * 1024 + 64, `${declared} bytes`);
    }),
    fcParams(300),
  );
});

Deno.test("spec keys differ exactly when specs differ", () => {
  fc.assert(
    fc.property(specArb, specArb, (a, b) => {
      const same = JSON.stringify(a) === JSON.stringify(b);
      assert.equal(specKey("decode", a) === specKey("decode", b), same);
      assert.notEqual(specKey("decode", a), specKey("merge", a));
    }),
    fcParams(300),
  );
});

Deno.test("fmaDots: each score is a chain of scalar multiply-adds", () => {
  const base: KernelSpec = {
    headDim: 128,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 4,
    workgroupSize: 128,
    lanes: 8,
    unroll: 2,
    subgroups: true,
  };
  const plain = decodeKernelWGSL(base);
  const chained = decodeKernelWGSL({ ...base, fmaDots: true });
  assert.match(plain, /var d0_0 = dot\(kf0_0\[0\], qv\[0\]\) \+ dot\(/);
  const line = chained.split("\n").find((l) => l.includes("var d0_0 ="))!;
  assert.doesNotMatch(line, /dot\(/);
  // 128 dims over 8 lanes: 16 products per lane, one multiply and 15 multiply-adds.
  assert.equal(line.match(/fma\(/g)?.length, 15);
  assert.match(line, /kf0_0\[0\]\.x \* qv\[0\]\.x\)/);
  assert.notEqual(specKey("decode", base), specKey("decode", { ...base, fmaDots: true }));
  // A 136-dim row on one lane (8-bit KV in 8-byte chunks): 136 products in runs of 16 per
  // statement, in order, since Dawn's parser refuses calls nested 136 deep (session 29).
  const long = decodeKernelWGSL({
    ...base,
    headDim: 136,
    kvDtype: "fp8e4m3",
    lanes: 1,
    unroll: 1,
    fmaDots: true,
  }).split("\n").filter((l) => /^\s*(var )?d0_0 = /.test(l));
  assert.equal(long.length, 9);
  assert.equal(long.join("").match(/fma\(/g)?.length, 135);
  assert.match(long[1], /^\s*d0_0 = fma\(kf0_3\[1\]\.w, qv\[7\]\.w, .*, d0_0\)+;$/);
  // Query rows in workgroup memory: each shared vector's products join the score by fma.
  const shared = decodeKernelWGSL({ ...base, queryShared: true, fmaDots: true });
  assert.doesNotMatch(shared, /dot\(kf/);
  assert.match(
    shared,
    /d0_0 = fma\(kf0_0\[0\]\.w, qq\.w, fma\(kf0_0\[0\]\.z, qq\.z, fma\(kf0_0\[0\]\.y, qq\.y, fma\(kf0_0\[0\]\.x, qq\.x, d0_0\)\)\)\);/,
  );
});

Deno.test("a lane count that is not a power of two is rejected; one that does not divide the row pads", () => {
  const spec = {
    headDim: 24,
    kvDtype: "f16",
    tileTokens: 32,
    rowsPerBlock: 1,
    workgroupSize: 64,
  } as const;
  assert.throws(() => decodeKernelWGSL({ ...spec, lanes: 3 }), RangeError);
  // 3 chunks over 2 lanes: the second round holds one chunk; lane 1 re-reads it, query zero.
  const wgsl = decodeKernelWGSL({ ...spec, lanes: 2 });
  assert.ok(wgsl.includes("let kpad = min(lane + 2u, CHUNKS - 1u) - lane;"));
  assert.ok(wgsl.includes("if (lane + 2u < CHUNKS_V) {"));
});

Deno.test("fast steps: an unmasked path beside the masked one unless fastSteps is false", () => {
  const base: KernelSpec = {
    headDim: 64,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 4,
    workgroupSize: 64,
    subgroups: true,
  };
  const fast = decodeKernelWGSL(base);
  const masked = decodeKernelWGSL({ ...base, fastSteps: false });
  assert.ok(fast.includes("if (s0 + STEP <= lim_all)"), "fast kernel tests whole steps");
  assert.ok(fast.includes("poisoned(l[0])"), "fast kernel checks the sums once per piece");
  assert.ok(!masked.includes("lim_all"), "masked kernel has one path");
  // Both paths keep the masked path's per-score NaN tracking.
  for (const wgsl of [fast, masked]) assert.ok(wgsl.includes("poisoned(d0_0)"));
  assert.notEqual(specKey("decode", base), specKey("decode", { ...base, fastSteps: false }));
});

Deno.test("the kernel table has a choice for every class, lanes a power of two up to 16 (32 above d256)", () => {
  for (const rows of [1, 2, 3, 4, 5, 8, 16]) {
    for (const headDim of [8, 64, 80, 128, 200, 256, 264, 576]) {
      const c = kernelChoice(headDim, rows);
      assert.ok(c, `class of ${rows} rows, d${headDim}`);
      const most = headDim > 256 ? 32 : 16;
      assert.ok(c.lanes >= 1 && c.lanes <= most && (c.lanes & (c.lanes - 1)) === 0);
      assert.equal(c.padded ?? false, headDim > 256, "only MLA's class pads lane rounds");
      assert.ok(Number.isInteger(c.unroll) && c.unroll >= 1);
    }
  }
  assert.equal(Object.keys(KERNEL_TABLE).length, 16);
});

Deno.test("8-bit KV takes its class's 8-bit table entry where a table has one, else the class's", () => {
  const table = {
    "r1 d128": { lanes: 8, unroll: 2 },
    "r1 d128 8-bit": { lanes: 8, unroll: 4 },
    "r4 d128": { lanes: 8, unroll: 4 },
  };
  for (const kvDtype of ["int8", "fp8e4m3", "fp8e5m2"] as const) {
    assert.equal(kernelChoiceKey(table, 128, 1, kvDtype), "r1 d128 8-bit");
    assert.equal(kernelChoiceKey(table, 128, 4, kvDtype), "r4 d128", "no 8-bit entry: the class's");
  }
  for (const kvDtype of ["f32", "f16", "bf16", undefined] as const) {
    assert.equal(kernelChoiceKey(table, 128, 1, kvDtype), "r1 d128");
  }
  // The built-in table has no 8-bit entries yet: 8-bit kernels take their class's choice.
  assert.equal(kernelChoice(128, 1, "fp8e5m2"), kernelChoice(128, 1));
});

Deno.test("runner formats: HND addressing, f16 queries and outputs are keyed and generated apart", () => {
  fc.assert(
    fc.property(specArb, (spec) => {
      const decode = decodeKernelWGSL(spec).replace(/\/\/.*$/gm, "");
      const merge = mergeKernelWGSL(spec).replace(/\/\/.*$/gm, "");
      const hnd = (spec.paged ?? false) && spec.kvLayout === "HND";
      assert.equal(/kv_head \* CHUNKS\) << params\.page_shift/.test(decode), hnd, "HND address");
      assert.equal(specKey("decode", spec).includes(":hnd"), hnd);
      const qHalf = spec.qDtype === "f16";
      const outHalf = spec.outDtype === "f16";
      assert.equal(/var<storage, read> q: array<vec2<u32>>/.test(decode), qHalf);
      assert.equal(/unpack2x16float\(w\.x\)/.test(decode), qHalf);
      for (const wgsl of [decode, merge]) {
        assert.equal(/var<storage, read_write> out: array<u32>/.test(wgsl), outHalf);
        assert.equal(/half_bits\(/.test(wgsl), outHalf);
      }
      assert.equal(specKey("decode", spec).includes(":qf16"), qHalf);
      assert.equal(specKey("merge", spec).includes(":of16"), outHalf);
    }),
    fcParams(100),
  );
});

Deno.test("row sets split a block's rows among lane groups that read the same K/V", () => {
  const base: KernelSpec = {
    headDim: 64,
    kvDtype: "f16",
    tileTokens: 64,
    rowsPerBlock: 4,
    workgroupSize: 128,
    lanes: 8,
    subgroups: true,
  };
  const one = kernelLayout(base);
  const two = kernelLayout({ ...base, rowSets: 2 });
  assert.equal(one.groups, 16);
  assert.equal(one.rowsPerThread, 4);
  assert.equal(two.groups, 8, "half the token groups: two lane groups per token");
  assert.equal(two.rowsPerThread, 2);
  // 6 rows: 4 row sets do not divide them, 2 do (3 rows each).
  assert.equal(kernelLayout({ ...base, rowsPerBlock: 6, rowSets: 4 }).rowSets, 2);
  assert.equal(kernelLayout({ ...base, rowsPerBlock: 1, rowSets: 2 }).rowSets, 1);
  assert.throws(() => kernelLayout({ ...base, rowSets: 3 }), RangeError);
  const wgsl = decodeKernelWGSL({ ...base, rowSets: 2 });
  assert.ok(wgsl.includes("let rs0 = (lg % 2u) * 2u;"), "each row set starts at its own row");
  assert.ok(wgsl.includes("var qv = array<vec4<f32>, 4>();"), "a thread holds 2 rows x 2 vec4");
  assert.ok(!decodeKernelWGSL(base).includes("rs0"), "one row set: the kernel of before");
  assert.ok(specKey("decode", { ...base, rowSets: 2 }).endsWith(":rs2"));
  assert.equal(specKey("decode", { ...base, rowSets: 1 }), specKey("decode", base));
});

Deno.test("a device-wide lane count meets shorter rows with the most lanes dividing them", () => {
  const plan = (headDim: number) => ({
    problem: { headDim, kvDtype: "f16" as const },
    tiles: tileConfig({ headDim, rowsPerGroup: 4, kvDtype: "f16" }),
  });
  assert.equal(kernelSpec(plan(128), undefined, { lanes: 16 }).lanes, 16);
  assert.equal(kernelSpec(plan(64), undefined, { lanes: 16 }).lanes, 8);
  assert.equal(kernelSpec(plan(24), undefined, { lanes: 16 }).lanes, 1);
  // Row sets come from the tuning, else from the table.
  assert.equal(kernelSpec(plan(64), undefined, { rowSets: 1 }).rowSets, undefined);
  assert.equal(kernelSpec(plan(64)).rowSets, kernelChoice(64, 4).rowSets);
});

Deno.test("early loads are the default for 4-row int8 with integer keys, 4-row int8 with per-token scales, 4-row E4M3 at per-tensor scales, and packed f16 keys", () => {
  const plan = (kvDtype: "int8" | "f16" | "fp8e4m3", rowsPerGroup: number) => ({
    problem: { headDim: 128, kvDtype },
    tiles: tileConfig({ headDim: 128, rowsPerGroup, kvDtype }),
  });
  const caps = { subgroups: true, subgroupMinSize: 32 };
  const int8 = kernelSpec(plan("int8", 4), caps);
  assert.equal(int8.earlyLoads, true);
  assert.ok(earlyLoads(int8));
  assert.match(decodeKernelWGSL(int8), /early \^= /);
  assert.equal(kernelSpec(plan("int8", 4), caps, {}, false, "tensor").earlyLoads, true);
  // With per-token scales (dense, or paged as the cache keeps them), int8, and E4M3 with a NaN
  // test per word (with one per step it is faster without them, tests/nan_steps_test.ts), the
  // next step's scale pairs and page-table entries with them.
  for (const kvDtype of ["int8", "fp8e4m3"] as const) {
    const tuning = kvDtype === "int8" ? {} : { nanSteps: false };
    for (const paged of [false, true]) {
      const token = kernelSpec(plan(kvDtype, 4), caps, tuning, paged, "token");
      assert.equal(token.kvScales, "token");
      assert.equal(token.earlyLoads, true, `${kvDtype} paged ${paged}`);
      const wgsl = decodeKernelWGSL(token);
      assert.match(wgsl, /early \^= [^;]*bitcast<u32>\(nsc0\.x\)/);
      assert.equal(/early \^= [^;]* \^ npg0/.test(wgsl), paged);
      const off = kernelSpec(
        plan(kvDtype, 4),
        caps,
        { ...tuning, earlyLoads: false },
        paged,
        "token",
      );
      assert.doesNotMatch(decodeKernelWGSL(off), /early \^= /);
    }
  }
  // E4M3 at per-tensor scales: with its NaN codes tested per step and its rows' base read ahead
  // (dense) or slices (paged); not with a test per word (its loads at the loop's top already).
  assert.equal(kernelSpec(plan("fp8e4m3", 4), caps, {}, false, "tensor").earlyLoads, true);
  const perWord = { nanSteps: false };
  assert.equal(
    kernelSpec(plan("fp8e4m3", 4), caps, perWord, false, "tensor").earlyLoads,
    undefined,
  );
  assert.equal(kernelSpec(plan("fp8e4m3", 4), caps, {}, false, "token").earlyLoads, undefined);
  assert.equal(kernelSpec(plan("int8", 4), caps, { earlyLoads: false }).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("int8", 4), caps, { intDots: false }).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("int8", 1), caps).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("int8", 1), caps, {}, true, "token").earlyLoads, undefined);
  assert.equal(kernelSpec(plan("f16", 4), caps).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("f16", 4), caps, { earlyLoads: true }).earlyLoads, true);
  // Packed f16 keys (where the device has shader-f16) on 4- and 8-row blocks.
  const f16caps = { ...caps, shaderF16: true };
  for (const rows of [4, 8]) {
    const half = kernelSpec(plan("f16", rows), f16caps, { halfMath: true });
    assert.equal(half.earlyLoads, true, `${rows} rows`);
    assert.match(decodeKernelWGSL(half), /early \^= pack2x16float/);
  }
  assert.equal(kernelSpec(plan("f16", 1), f16caps, { halfMath: true }).earlyLoads, undefined);
  assert.equal(kernelSpec(plan("f16", 4), caps, { halfMath: true }).earlyLoads, undefined);
});

Deno.test("the split prefetch, shared or staged query rows, packed f16, row scatter, V-per-token and early-load options change the key exactly when they change the kernel", () => {
  const toggles: ((s: KernelSpec) => KernelSpec)[] = [
    (s) => ({ ...s, halfMath: !s.halfMath }),
    (s) => ({ ...s, halfValues: !(s.halfValues ?? s.kvDtype !== "f16") }),
    (s) => ({ ...s, earlyLoads: !s.earlyLoads }),
    (s) => ({ ...s, queryShared: !s.queryShared }),
    (s) => ({ ...s, prefetch: s.prefetch === "split" ? true : "split" }),
    (s) => ({ ...s, rowScatter: !s.rowScatter }),
    (s) => ({ ...s, vPerToken: !s.vPerToken }),
    (s) => ({ ...s, queryStaged: !s.queryStaged }),
    (s) => ({ ...s, nanSteps: !s.nanSteps }),
    (s) => ({ ...s, baseAhead: !s.baseAhead }),
  ];
  fc.assert(
    fc.property(specArb, fc.integer({ min: 0, max: toggles.length - 1 }), (a, t) => {
      const b = toggles[t](a);
      const sameKernel = decodeKernelWGSL(a) === decodeKernelWGSL(b);
      assert.equal(specKey("decode", a) === specKey("decode", b), sameKernel);
    }),
    fcParams(150),
  );
});

Deno.test("the groups of a subgroup add their states with shuffles first, as many as the smallest subgroup holds", () => {
  const tiles = tileConfig({ headDim: 128, rowsPerGroup: 4, kvDtype: "f16" });
  const problem = { headDim: 128, kvDtype: "f16" as const };
  const at = (subgroupMinSize: number, tuning = {}) =>
    kernelSpec({ problem, tiles }, { subgroups: true, subgroupMinSize }, tuning);
  // 8 lanes: four groups in a 32-lane subgroup, two in 16, none in 8 (or without subgroups).
  assert.equal(at(32).shuffleGroups, 4);
  assert.equal(at(16).shuffleGroups, 2);
  assert.equal(at(8).shuffleGroups, undefined);
  assert.equal(kernelSpec({ problem, tiles }).shuffleGroups, undefined);
  assert.equal(at(32, { shuffleGroups: 1 }).shuffleGroups, undefined, "tuning turns it off");
  assert.equal(at(32, { shuffleGroups: 2 }).shuffleGroups, 2, "tuning caps it");
  const four = at(32);
  const wgsl = decodeKernelWGSL(four);
  // Shuffles 8 and 16 lanes apart (one and two groups), for the maxima and the states.
  assert.ok(wgsl.includes("mg[0] = max(mg[0], subgroupShuffleXor(mg[0], 16u));"));
  assert.ok(wgsl.includes("o[15] += subgroupShuffleXor(o[15], 16u);"));
  assert.ok(wgsl.includes("if (g % 4u == 0u) {"), "only every fourth group posts");
  // A quarter of the groups post: all four rows in one round, each a chain of four additions.
  assert.ok(wgsl.includes("for (var gg = 1u; gg < 4u; gg++) { s += red[gg * 128u + e]; }"));
  assert.notEqual(specKey("decode", four), specKey("decode", at(32, { shuffleGroups: 1 })));
  assert.ok(decodeWorkgroupBytes(four) <= 16384, "within WebGPU's default workgroup memory");
  // Row sets: groups are lanes x row sets apart (16 threads), so a 32-lane subgroup holds two.
  const rowSets = at(32, { rowSets: 2 });
  assert.equal(rowSets.shuffleGroups, 2);
  assert.ok(decodeKernelWGSL(rowSets).includes("subgroupShuffleXor(o[7], 16u)"));
});

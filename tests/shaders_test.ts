/**
 * Generated WGSL for any spec the planner can produce, checked without a GPU (fast-check over
 * kernel specs): specialisation constants, no `shader-f16` unless asked, bindings of the one
 * layout with their buffer types, workgroup memory within WebGPU's limits, and cache keys that
 * tell kernels apart. The WGSL of particular options: tests/shader_options_test.ts; the kernel
 * table's and `kernelSpec`'s choices: tests/kernel_choice_test.ts.
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
import { kernelLayoutEntries } from "../src/kernels/abi.ts";
import { mergeKernelWGSL } from "../src/kernels/merge_kernel.ts";
import { KV_DTYPES } from "../mod.ts";
import { tileConfig } from "../plan.ts";
import { fcParams } from "./helpers.ts";

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

/**
 * Shared by the diagnostics of issue 13 (bench/diag_overhead.ts, bench/diag_floors.ts): a
 * filter on the compute-pass encoder that drops the merge or the decode dispatches (for timing
 * only: outputs are then not read), and one diagnostic cell: lean on one input with one decoder
 * configuration, timed warm like the benchmark.
 *
 * @module
 */

import { createDecoder, type DecodeInput, type DecoderOptions } from "../mod.ts";
import type { BenchCase } from "./bench_cases.ts";
import { makeBenchInput } from "./bench_input.ts";

/** Which dispatches of a pass the filter drops. */
export type DispatchSkip = "merge" | "decode" | undefined;

/** The dispatch filter: set `skip` before recording; undefined records every dispatch. */
export interface DispatchFilter {
  skip: DispatchSkip;
}

/**
 * Wraps `GPUComputePassEncoder`'s `setPipeline` and `dispatchWorkgroups` (once per process) so
 * that the returned filter's `skip` drops the merge pipeline's dispatches or every other one.
 * `proto` is the pass encoder's prototype: the runtime's by default, Dawn's when given.
 */
export function installDispatchFilter(
  proto: Record<string, unknown> =
    (globalThis as unknown as { GPUComputePassEncoder: { prototype: Record<string, unknown> } })
      .GPUComputePassEncoder.prototype,
): DispatchFilter {
  const filter: DispatchFilter = { skip: undefined };
  const setPipeline = proto.setPipeline as (this: unknown, p: GPUComputePipeline) => void;
  const dispatch = proto.dispatchWorkgroups as (this: unknown, ...a: number[]) => void;
  const merging = new WeakMap<object, boolean>();
  proto.setPipeline = function (this: object, p: GPUComputePipeline) {
    merging.set(this, p.label.startsWith("merge"));
    setPipeline.call(this, p);
  };
  proto.dispatchWorkgroups = function (this: object, ...a: number[]) {
    const isMerge = merging.get(this) ?? false;
    if ((filter.skip === "merge" && isMerge) || (filter.skip === "decode" && !isMerge)) return;
    dispatch.call(this, ...a);
  };
  return filter;
}

/**
 * Wraps `createShaderModule` of a device prototype (the runtime's `GPUDevice.prototype` by
 * default; Dawn's from one of its devices) so that every module's WGSL passes through `rewrite`
 * (which returns it unchanged where it does not apply).
 */
export function installShaderRewrite(
  rewrite: (code: string) => string,
  proto: Record<string, unknown> =
    (globalThis as unknown as { GPUDevice: { prototype: Record<string, unknown> } })
      .GPUDevice.prototype,
): void {
  const createModule = proto.createShaderModule as (
    this: unknown,
    d: GPUShaderModuleDescriptor,
  ) => GPUShaderModule;
  proto.createShaderModule = function (this: object, d: GPUShaderModuleDescriptor) {
    return createModule.call(this, { ...d, code: rewrite(d.code) });
  };
}

/**
 * Patches the device class of `gpu` (Dawn's, from one of its devices) so that every matrix
 * kernel's WGSL passes through the rewrite last given to the returned setter (none: as it is).
 * Devices opened afterwards, decoders' own included, compile through it (bench/diag_matrix.ts,
 * bench/diag_matrix_time.ts).
 */
export async function matrixKernelRewriter(
  gpu: GPU,
): Promise<(rewrite: ((code: string) => string) | undefined) => void> {
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  const probe = await adapter!.requestDevice();
  let current: ((code: string) => string) | undefined;
  installShaderRewrite(
    (code) =>
      current && code.includes("// lean-attention matrix decode kernel") ? current(code) : code,
    Object.getPrototypeOf(probe),
  );
  probe.destroy();
  return (rewrite) => {
    current = rewrite;
  };
}

/** K/V copies the diagnostics rotate through: enough that small caches do not stay in L2. */
export function kvSetsFor(kvBytes: number): number {
  return kvBytes < 100e6 ? Math.min(8, Math.ceil(150e6 / kvBytes)) : 1;
}

/** A diagnostic's case with its input, K+V bytes and K/V copies to rotate. */
export interface DiagCase {
  readonly c: BenchCase;
  readonly input: DecodeInput;
  readonly kvBytes: number;
  readonly kvSets: number;
}

/** The cases whose names contain one of `only` (all without it), each with its input. */
export function* diagCases(cases: readonly BenchCase[], only?: string[]): Generator<DiagCase> {
  for (const c of cases) {
    if (only && !only.some((o) => c.name.includes(o))) continue;
    const input = makeBenchInput(c);
    const kvBytes = input.k.byteLength + (input.v?.byteLength ?? 0);
    yield { c, input, kvBytes, kvSets: kvSetsFor(kvBytes) };
  }
}

/** One diagnostic cell: lean's warm times and schedule, or the error that stopped it. */
export interface DiagCell {
  /** `median/lastWarm` in ms, or `error`, padded for the diagnostics' tables. */
  readonly text: string;
  /** The measurement (absent after an error). */
  readonly row?: {
    medianMs: number;
    lastWarmMs: number;
    grid: number;
    workgroups: number;
    /** Pieces of the schedule (runs cut at head and sequence boundaries). */
    pieces: number;
    /** Median ms per run of passes back to back (when `streamMs` asked for them). */
    streamMs?: number;
    /** Runs per back-to-back pass. */
    runsPerStreamPass?: number;
  };
}

/**
 * Times lean on `input` (25 passes after 400 ms of warm passes, `kvSets` K/V copies) with a
 * decoder of `options` on `device`; `filter.skip` is set to `skip` for the timing only (the
 * decoder's calibration records every dispatch). With `streamMs`, passes of that many ms of runs
 * are also timed back to back (the benchmark's stream column), and the cell's text gains their
 * median. Errors are printed and give an `error` cell.
 */
export async function timeLeanCell(
  device: GPUDevice,
  input: DecodeInput,
  kvSets: number,
  options: Partial<DecoderOptions>,
  filter?: DispatchFilter,
  skip?: DispatchSkip,
  streamMs?: number,
): Promise<DiagCell> {
  const decoder = await createDecoder({ backend: "webgpu", device, ...options });
  try {
    const plan = decoder.plan(input, { strategy: "lean" });
    if (filter) filter.skip = skip;
    const t = await decoder.timeKernels({ ...input, strategy: "lean" }, {
      runs: 25,
      kvSets,
      warmupMs: 400,
      ...(streamMs ? { streamMs } : {}),
    });
    const stream = t.stream ? `/${t.stream.medianMs.toFixed(4)}` : "";
    return {
      text: `${t.medianMs.toFixed(4)}/${t.lastWarmMs.toFixed(4)}${stream}`.padStart(
        stream ? 25 : 18,
      ),
      row: {
        medianMs: t.medianMs,
        lastWarmMs: t.lastWarmMs,
        grid: plan.grid,
        workgroups: plan.schedule.workgroups,
        pieces: plan.schedule.pieceOffsets[plan.schedule.workgroups],
        ...(t.stream
          ? { streamMs: t.stream.medianMs, runsPerStreamPass: t.stream.runsPerSample }
          : {}),
      },
    };
  } catch (e) {
    console.error(e);
    return { text: "error".padStart(18) };
  } finally {
    if (filter) filter.skip = undefined;
    await decoder.dispose();
  }
}

/**
 * Rewrites a decode kernel with query rows in workgroup memory (`queryShared`) so that the token
 * loop reads them again every step (session 27): their index gains `s0 >> 31`, zero at run time
 * (no piece starts 2^31 tokens in) but unknown to the compiler, which otherwise hoists the
 * loop-invariant reads out of the loop and holds the rows in registers after all (the NVIDIA
 * driver gives such kernels 255 registers, as with the rows in registers). Kernels without
 * such rows are returned as they are.
 */
export function reloadSharedQuery(code: string): string {
  const loop = "for (var s0 = tok_begin; s0 < tok_end; s0 += STEP) {";
  // Kernels without rows in workgroup memory (another class under a device-wide tuning) stay.
  if (!code.includes("= q_sh[")) return code;
  if (!code.includes(loop)) throw new Error("no token loop in the kernel");
  return code.replace(loop, `${loop}\n      let qz = s0 >> 31u;`).replaceAll(
    "= q_sh[",
    "= q_sh[qz + ",
  );
}

/**
 * Rewrites a decode kernel so that its token loop uses the next step's K and V words (those of
 * `which`: "kv" both, "k" K only) before the step's unmasked/masked split (session 28): NVIDIA's
 * compiler otherwise sinks the prefetch's loads to the end of the loop body, where the next
 * step's first instruction waits for them (bench/sass_from_cache.py shows it). The use is an
 * exclusive-or of one word of each load into a value tested against an impossible token, so
 * nothing changes at run time but the loads must be issued before the split.
 */
export function pinPrefetch(code: string, which: "kv" | "k" = "kv"): string {
  const loop = "for (var s0 = tok_begin; s0 < tok_end; s0 += STEP) {";
  const split = "if (s0 + STEP <= lim_all) {";
  const names = [...code.matchAll(/var (n[kv]\d+_\d+) = /g)].map((m) => m[1])
    .filter((n) => which === "kv" || n.startsWith("nk"));
  if (!code.includes(loop) || !code.includes(split) || names.length === 0) {
    throw new Error("no prefetching token loop in the kernel");
  }
  const use = names.map((n) => `${n}.x`).join(" ^ ");
  return code.replace(loop, `var pin = 0u;\n    ${loop}`).replace(
    split,
    `pin ^= ${use};\n      if (pin == 0x9e3779b9u && s0 == 0xffffffffu) { bad[0] = 1u; }\n      ${split}`,
  );
}

/**
 * Rewrites a decode kernel so that a workgroup barrier follows each block of the next step's K
 * or V requests in its token loop (session 29). Session 28's `pinPrefetch` moved the requests up
 * by using their words, which also made the warp wait for them there; a barrier instead keeps
 * NVIDIA's compiler from sinking the requests to the end of the loop body (as a code-motion fence)
 * without a use of their words, so they stay in flight through the step's arithmetic (the
 * register-prefetch pattern of classic tiled matrix kernels). The token loop is uniform in a
 * workgroup (its bounds come from the read-only schedule), so the barrier is allowed there.
 */
export function fenceIssue(code: string): string {
  const loop = "for (var s0 = tok_begin; s0 < tok_end; s0 += STEP) {";
  const at = code.indexOf(loop);
  if (at < 0) throw new Error("no token loop in the kernel");
  const body = code.slice(at).split("\n");
  // Requests of the next step: `nk{u}_{i} = k_cache[...]` or `nv{u}_{i} = v_cache[...]` (not the
  // declarations before the loop). A barrier after the last line of each run of them, unless the
  // run ends the loop body (the split prefetch's V requests: nothing left to hide them behind).
  const request = /^\s+n[kv]\d+_\d+ = [kv]_cache\[/;
  let fenced = 0;
  // The row addresses of the next token (`let nrow{u} = ...`) interleave with its requests.
  const address = /^\s+let n\w+ = /;
  for (let i = body.length - 2; i >= 0; i--) {
    let j = i + 1;
    while (j < body.length - 1 && address.test(body[j])) j++;
    if (!request.test(body[i]) || request.test(body[j])) continue;
    if (/^ {4}}\s*$/.test(body[i + 1])) continue;
    body.splice(i + 1, 0, "      workgroupBarrier();");
    fenced++;
  }
  if (fenced === 0) throw new Error("no prefetching token loop in the kernel");
  return code.slice(0, at) + body.join("\n");
}

/** The int8 `unpack_word` before session 28: one signed-byte conversion per element. */
export const INT8_BY_CONVERSION = `fn unpack_word(w: u32) -> vec4<f32> {
  let i = bitcast<i32>(w);
  return vec4<f32>(
    f32(extractBits(i, 0u, 8u)),
    f32(extractBits(i, 8u, 8u)),
    f32(extractBits(i, 16u, 8u)),
    f32(extractBits(i, 24u, 8u)),
  );
}`;
/**
 * int8 bytes (made b + 128) in the mantissa of the f16 1024, two per unpack, 1152 taken off
 * (session 28's first version: slower than the f32 magic numbers the library keeps).
 */
export const INT8_BY_HALVES = `fn unpack_word(w: u32) -> vec4<f32> {
  let u = w ^ 0x80808080u;
  let a = unpack2x16float((u & 0x00ff00ffu) | 0x64006400u) - vec2<f32>(1152.0);
  let b = unpack2x16float(((u >> 8u) & 0x00ff00ffu) | 0x64006400u) - vec2<f32>(1152.0);
  return vec4<f32>(a.x, b.x, a.y, b.y);
}`;
/**
 * Session 32 (timing only: the values are wrong): each byte (made b + 128) placed in the top of
 * the mantissa of 1.0, which is 1 + (b + 128) / 256 with no add; a kernel that folds the offset
 * and the factor 256 into its sums (exactly, for V: its weights sum to l) would need no other
 * per-element work. Times what the 4-row loop gains without one add per element.
 */
export const INT8_NO_ADD = `fn unpack_word(w: u32) -> vec4<f32> {
  let u = w ^ 0x80808080u;
  let m = vec4<u32>(u << 15u, u << 7u, u >> 1u, u >> 9u) & vec4<u32>(0x7f8000u);
  return bitcast<vec4<f32>>(m | vec4<u32>(0x3f800000u));
}`;
/**
 * A rewrite replacing an int8 kernel's `unpack_word` by `body` (session 28's diagnostics); other
 * kernels (an f16 twin timed beside) stay as they are.
 */
export function int8Unpack(body: string): (code: string) => string {
  const at = /fn unpack_word\(w: u32\) -> vec4<f32> \{\n {2}let u = w \^ 0x80808080u;[^}]*\}/;
  return (code) => code.replace(at, body);
}

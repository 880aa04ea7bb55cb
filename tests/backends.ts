/**
 * The backends under test. "cpu" is always tested; "webgpu" and "dawn" are tested whenever
 * `createDecoder({ backend })` succeeds on this machine, so the same suite runs against the GPU
 * backends as soon as they work. A backend that cannot be opened is reported on one line and its
 * tests are registered as ignored, never as passed.
 *
 * @module
 */

// Registers Dawn, so that the "dawn" backend is tested where it finds an adapter.
import { loadDawn } from "../dawn.ts";
import { collectWhileDawnIsOpen } from "./dawn_collector.ts";
import { requestDevice } from "../src/gpu/gpu_runtime.ts";
import { type BackendName, createDecoder, type Decoder, type DecoderOptions } from "../mod.ts";
import { collectGarbage } from "./gc.ts";
import { fcParams } from "./helpers.ts";
import {
  envVar,
  EXHAUSTIVE_ENV,
  guardKernelSet,
  isSoftwareAdapter,
  type SoftwareOptions,
  softwareSkip,
} from "./kernel_set.ts";

import { ALL_BACKENDS } from "./backend_names.ts";
export { ALL_BACKENDS };

/** Options for a decoder under test (everything but the backend). */
export type TestDecoderOptions = Omit<DecoderOptions, "backend">;

/** A backend that opened on this machine. */
export interface BackendUnderTest {
  readonly name: BackendName;
  /** Whether Deno's op/resource sanitizers can stay on (GPU runtimes keep handles alive). */
  readonly sanitize: boolean;
  /** The adapter is a software rasteriser (lavapipe, SwiftShader): kernels compile slowly. */
  readonly software: boolean;
  /**
   * Tests may use any shape: the CPU, a hardware GPU, or `LEAN_TEST_EXHAUSTIVE=1`. Otherwise GPU
   * tests keep to the kernel set of `tests/kernel_set.ts`.
   */
  readonly exhaustive: boolean;
  /** Opens a fresh decoder; the caller must `dispose()` it. */
  open(options?: TestDecoderOptions): Promise<Decoder>;
}

/** Availability of one backend: usable, or the reason it is skipped. */
export type BackendStatus =
  | { readonly name: BackendName; readonly ok: true; readonly backend: BackendUnderTest }
  | { readonly name: BackendName; readonly ok: false; readonly reason: string };

/**
 * GPU backends named in `LEAN_TEST_BACKENDS` (comma-separated), or all of them when it is unset.
 * "cpu" is always tested.
 */
function wanted(name: BackendName): boolean {
  if (name === "cpu") return true;
  const list = envVar("LEAN_TEST_BACKENDS");
  return list === undefined || list.split(",").map((s) => s.trim()).includes(name);
}

/**
 * Extra options of GPU decoders under test: `poison` fills GPU outputs with NaN before every run,
 * so an element the kernels fail to write fails `assertNoPoison` instead of passing on stale data.
 */
const GPU_OPTIONS: TestDecoderOptions = { poison: true } as TestDecoderOptions;

/**
 * `LEAN_TEST_DAWN_GC=1`: Dawn decoders collect garbage after each decode. Under Deno, Dawn may
 * not report a completion until earlier calls' command objects have been collected (the README's
 * "Dawn in Deno"), and a test that only waits allocates nothing that would start a collection:
 * on the H200 the kernel options test through Dawn stopped making progress at a different test
 * in each of three runs (bench/notes.md, session 30). Opt-in, to find out there: on lavapipe the
 * collections made the row-scatter test through Dawn take about 1.6 times as long.
 */
const DAWN_GC = envVar("LEAN_TEST_DAWN_GC") === "1";

/** A Dawn decoder whose every `decode()` is followed by a garbage collection. */
function collectingAfterDecodes(decoder: Decoder): Decoder {
  return new Proxy(decoder, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop !== "decode") return value.bind(target);
      return async (...args: unknown[]) => {
        const result = await value.apply(target, args);
        await collectGarbage();
        return result;
      };
    },
  });
}

/**
 * `LEAN_TEST_DAWN_SHARED=1`: Dawn decoders under test share one device per test module (the
 * decoders do not own it, so `dispose()` leaves it open) instead of opening and destroying one
 * each. Opt-in, a diagnostic: on the H200 the kernel options test through Dawn stalled the same
 * way with it (not the devices' churn), while the calibration-free runs passed (session 32).
 * A test that passes its own `device` keeps it.
 */
const DAWN_SHARED = envVar("LEAN_TEST_DAWN_SHARED") === "1";

/**
 * `LEAN_TEST_GRID`: on a hardware adapter, GPU decoders under test take a fixed lean grid (a
 * test's own `grid` wins) instead of calibrating one each: by default the grid the module's probe
 * decoder calibrated; `N` for grid N; `calibrate` to calibrate every decoder. Two reasons:
 * - Many tests compare the bits of two decoders whose kernel options differ. Each such decoder
 *   calibrates apart (its probe kernel differs), calibrations vary from run to run (the H200's
 *   Dawn probe gave 502, 131, 1010, 264 and 131 in five runs, session 26), and different grids
 *   split differently, hence give different bits. Under `deno test --parallel` on the H200, with
 *   the other test modules loading the same GPU, the packed f16 test failed, most likely so (its
 *   message was not printed: the run was cut first; session 42).
 * - Under `deno test` on the H200 a Dawn decoder's calibration (its timestamp-query readbacks)
 *   could stall the test process for good: its JavaScript thread spins, no timer fires (sessions
 *   30-32). With a fixed grid the kernel options test and four more GPU test files ran through
 *   Dawn there (bench/notes.md, session 32). A grid given by number spares the module's probe
 *   decoder its calibration too: with `LEAN_TEST_DAWN_GRID=264` every GPU test file passed
 *   through Dawn there, where 11 of 33 had stalled with the probe calibrating (session 44).
 * `LEAN_TEST_DAWN_GRID`, where set, overrides it for Dawn alone (the name sessions 32-41 used).
 */
const GRID = envVar("LEAN_TEST_GRID");
const DAWN_GRID = envVar("LEAN_TEST_DAWN_GRID") ?? GRID;

let sharedDawn: Promise<GPUDevice> | undefined;

/** The module's one Dawn device (opened on first use, as the library would open it). */
function sharedDawnDevice(): Promise<GPUDevice> {
  sharedDawn ??= (async () => {
    const adapter = await (await loadDawn()).requestAdapter({
      powerPreference: "high-performance",
    });
    if (!adapter) throw new Error("Dawn found no adapter");
    return requestDevice(adapter);
  })();
  return sharedDawn;
}

/**
 * `LEAN_TEST_TRACE=1`: every GPU decoder's opening and every call of it that returns a promise
 * are stamped on stderr (start, end, milliseconds), with a line every 10 s while one waits: says
 * which step a stalled run waits in (bench/notes.md, session 31).
 */
const TRACE = envVar("LEAN_TEST_TRACE") === "1";

/** Runs `work`, stamped on stderr as `label` when tracing. */
async function traced<T>(label: string, work: () => Promise<T>): Promise<T> {
  if (!TRACE) return work();
  const t0 = performance.now();
  const stamp = (what: string) =>
    console.error(
      `[trace ${(t0 / 1000).toFixed(2)}s +${
        (performance.now() - t0).toFixed(0)
      }ms] ${what} ${label}`,
    );
  stamp("start");
  const timer = setInterval(() => stamp("waiting in"), 10_000);
  try {
    const result = await work();
    stamp("end");
    return result;
  } finally {
    clearInterval(timer);
  }
}

/** A decoder whose promise-returning calls are stamped (see {@linkcode traced}). */
function tracingCalls(decoder: Decoder, name: BackendName): Decoder {
  return new Proxy(decoder, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        const result = value.apply(target, args);
        return result instanceof Promise ? traced(`${name} ${String(prop)}`, () => result) : result;
      };
    },
  });
}

async function probe(name: BackendName): Promise<BackendStatus> {
  if (!wanted(name)) {
    const reason = "not listed in LEAN_TEST_BACKENDS";
    console.log(`skipping backend "${name}": ${reason}`);
    return { name, ok: false, reason };
  }
  const gridVar = name === "dawn" ? DAWN_GRID : GRID;
  // A grid given by number spares the probe its calibration too (a Dawn calibration could stall).
  const givenGrid = name === "cpu" ? undefined : Number(gridVar ?? "") || undefined;
  let decoder: Decoder;
  try {
    decoder = await createDecoder({ backend: name, ...(givenGrid ? { grid: givenGrid } : {}) });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    console.log(`skipping backend "${name}": ${reason}`);
    return { name, ok: false, reason };
  }
  const software = name !== "cpu" && isSoftwareAdapter(decoder.profile.name);
  if (name === "dawn" && software) collectWhileDawnIsOpen();
  const fixedGrid = name !== "cpu" && !software && gridVar !== "calibrate"
    ? givenGrid ?? decoder.profile.grid
    : undefined;
  await decoder.dispose();
  const backend: BackendUnderTest = {
    name,
    sanitize: name === "cpu",
    software,
    exhaustive: !software || EXHAUSTIVE_ENV,
    open: async (options = {}) => {
      const decoder = await traced(`${name} open`, async () =>
        createDecoder({
          ...(name === "dawn" && DAWN_SHARED ? { device: await sharedDawnDevice() } : {}),
          ...(fixedGrid ? { grid: fixedGrid } : {}),
          ...options,
          ...(name === "cpu" ? {} : GPU_OPTIONS),
          backend: name,
        }));
      const collecting = name === "dawn" && DAWN_GC ? collectingAfterDecodes(decoder) : decoder;
      return TRACE && name !== "cpu" ? tracingCalls(collecting, name) : collecting;
    },
  };
  return { name, ok: true, backend };
}

let statuses: Promise<readonly BackendStatus[]> | undefined;

/** Probes every backend once per test module and reports the skipped ones. */
export function backendStatuses(): Promise<readonly BackendStatus[]> {
  statuses ??= (async () => {
    const result: BackendStatus[] = [];
    for (const name of ALL_BACKENDS) result.push(await probe(name));
    return result;
  })();
  return statuses;
}

/** The decoders under test: "cpu", plus every GPU backend that opens here. */
export async function listBackends(): Promise<readonly BackendUnderTest[]> {
  const all = await backendStatuses();
  return all.flatMap((s) => s.ok ? [s.backend] : []);
}

if (TRACE && wanted("dawn")) {
  // Dawn's native calls stamped too (a stall blocks the main thread: no timer fires).
  await import("./dawn_trace.ts").then((m) => m.traceDawnCalls()).catch(() => {});
}
const known = await backendStatuses();

/** Options of {@linkcode backendTest}. */
export interface BackendTestOptions extends SoftwareOptions {
  /** Decoder options (grid, tile sizes) for the decoder handed to the test. */
  decoder?: TestDecoderOptions;
}

/** The context a backend test gets besides its decoder. */
export interface BackendTestContext {
  /** The backend may be given any shape (see {@linkcode BackendUnderTest.exhaustive}). */
  readonly exhaustive: boolean;
}

/**
 * Registers one `Deno.test` per backend, named `"<name> [<backend>]"`. Each gets a fresh decoder
 * that is disposed afterwards, whatever the outcome. Backends that did not open are registered
 * as ignored; so are tests a software adapter does not run (see {@linkcode softwareSkip}), with
 * the reason printed. On a software adapter the decoder only accepts shapes of the kernel set.
 */
export function backendTest(
  name: string,
  fn: (decoder: Decoder, backend: BackendName, context: BackendTestContext) => Promise<void>,
  options: BackendTestOptions = {},
): void {
  for (const status of known) {
    const testName = `${name} [${status.name}]`;
    if (!status.ok) {
      Deno.test({ name: testName, ignore: true, fn: () => {} });
      continue;
    }
    const backend = status.backend;
    const skip = softwareSkip(backend, options);
    if (skip !== undefined) {
      console.log(`ignoring "${testName}" on this software adapter: ${skip}`);
      Deno.test({ name: testName, ignore: true, fn: () => {} });
      continue;
    }
    Deno.test({
      name: testName,
      sanitizeOps: backend.sanitize,
      sanitizeResources: backend.sanitize,
      fn: async () => {
        const decoder = await backend.open(options.decoder);
        const guarded = backend.exhaustive
          ? decoder
          : guardKernelSet(decoder, options.decoder ?? {});
        try {
          await fn(guarded, backend.name, { exhaustive: backend.exhaustive });
        } finally {
          await decoder.dispose();
        }
      },
    });
  }
}

/** Options of {@linkcode gpuTest}. */
export interface GpuTestOptions extends SoftwareOptions {
  /** Only these GPU backends (default: every one). */
  backends?: readonly BackendName[];
}

/**
 * Registers one `Deno.test` per GPU backend (no CPU variant), named `"<name> [<backend>]"`, for
 * tests that open their own decoders. Backends that did not open, and tests a software adapter
 * does not run (see `softwareSkip`), are registered as ignored, the latter with the reason
 * printed.
 */
export function gpuTest(
  name: string,
  fn: (backend: BackendUnderTest) => Promise<void>,
  options: GpuTestOptions = {},
): void {
  for (const status of known) {
    if (status.name === "cpu") continue;
    if (options.backends && !options.backends.includes(status.name)) continue;
    const testName = `${name} [${status.name}]`;
    const skip = status.ok ? softwareSkip(status.backend, options) : undefined;
    if (skip) console.log(`ignoring "${testName}" on this software adapter: ${skip}`);
    Deno.test({
      name: testName,
      ignore: !status.ok || skip !== undefined,
      sanitizeOps: false,
      sanitizeResources: false,
      fn: () => fn((status as { backend: BackendUnderTest }).backend),
    });
  }
}

/**
 * fast-check parameters of a property run on a backend: `cpuRuns` cases on the CPU, a fifth of
 * them on exhaustive GPU backends (hardware GPUs, whole shape space), `gpuRuns` on a software
 * adapter. On GPU backends a failure is reported as found, without shrinking; its message
 * describes the case.
 */
export function propertyParams(
  backend: BackendName,
  cpuRuns: number,
  gpuRuns: number,
  context: BackendTestContext = { exhaustive: false },
): { numRuns: number; seed?: number; endOnFailure?: boolean } {
  if (backend === "cpu") return fcParams(cpuRuns);
  // Exhaustive GPU runs draw a new kernel almost every case, and even a hardware GPU's driver
  // spends about a second on each: a fifth of the CPU's cases.
  const runs = context.exhaustive ? Math.max(gpuRuns, Math.ceil(cpuRuns / 5)) : gpuRuns;
  return { ...fcParams(runs), endOnFailure: true };
}

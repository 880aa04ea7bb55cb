/**
 * `lean-attention info`: the runtime, the WebGPU adapters it can reach (runtime WebGPU and Dawn)
 * with their features and limits, the optional kernel paths a device of each gets (subgroups,
 * `shader-f16`, matrix units: one device opened per adapter), the device profile each would get,
 * and what `auto` picks.
 *
 * @module
 */

import { CPU_GRID } from "../cpu/cpu_backend.ts";
import { createDecoder } from "../decoder.ts";
import { tableProfile } from "../gpu/device_profile.ts";
import { type AdapterReport, probeAdapters } from "./adapters.ts";
import { formatUsage, parseFlags } from "./args.ts";
import { autoChoice } from "./backend_choice.ts";
import type { CliIO } from "./io.ts";
import { Spinner } from "./spinner.ts";
import { VERSION } from "../core/version.ts";

/**
 * Flags of `info`.
 *
 * @example
 * ```ts
 * import { INFO_FLAGS, parseFlags } from "@lean/attention/cli";
 * console.log(parseFlags(["--dawn"], INFO_FLAGS).flags.dawn); // true
 * ```
 */
export const INFO_FLAGS = {
  dawn: {
    kind: "boolean",
    help: "also load Dawn (npm webgpu: a 130 MB download the first time; Deno needs --allow-ffi)",
  },
  calibrate: {
    kind: "boolean",
    help: "open each adapter and calibrate its lean grid (compiles a kernel: slow on software)",
  },
  json: { kind: "boolean", help: "print JSON" },
} as const;

/**
 * Usage text of `info`.
 *
 * @example
 * ```ts
 * import { INFO_USAGE } from "@lean/attention/cli";
 * console.log(INFO_USAGE.includes("--calibrate")); // true
 * ```
 */
export const INFO_USAGE: string = formatUsage(
  "lean-attention info",
  "Lists the WebGPU adapters this runtime can reach (its own navigator.gpu, and Dawn with\n" +
    "--dawn), their features and limits, the optional kernel paths a device of each gets\n" +
    "(subgroups, shader-f16, matrix units), each one's device profile, and the backend auto picks.",
  INFO_FLAGS,
);

/**
 * An adapter report with the device profile the backend would use.
 *
 * @example
 * ```ts
 * import type { InfoAdapter } from "@lean/attention/cli";
 * const a: InfoAdapter = { backend: "dawn", available: false, reason: "no adapter" };
 * ```
 */
export interface InfoAdapter extends AdapterReport {
  /** Lean grid and where it comes from. */
  readonly profile?: { grid: number; source: string };
}

/** What `info` says about Dawn without `--dawn`. */
const DAWN_NOT_LOADED = "not loaded (opt-in: --dawn loads it)";

/** The `kernels:` lines of an adapter: which optional kernel paths its device gets. */
function kernelLines(a: InfoAdapter): string[] {
  const k = a.kernels;
  if (!k) return [];
  if (k.deviceError !== undefined) return [`  kernels: no device (${k.deviceError})`];
  return [
    `  kernels: subgroups ${k.subgroups > 0 ? `of ${k.subgroups} lanes` : "no"}, ` +
    `shader-f16 (halfMath) ${k.shaderF16 ? "yes" : "no"}`,
    `  matrix units (matrixMath): ${
      k.matrixUnits
        ? "yes: with kernel: { matrixMath: true } KV groups of 7+ query rows run on them (f16 grade)"
        : `no: ${k.matrixReason}`
    }`,
  ];
}

function runtimeName(): string {
  const g = globalThis as {
    Deno?: { version: { deno: string; v8: string } };
    process?: { versions?: { node?: string } };
  };
  if (g.Deno) return `Deno ${g.Deno.version.deno} (V8 ${g.Deno.version.v8})`;
  if (g.process?.versions?.node) return `Node ${g.process.versions.node}`;
  return "unknown runtime";
}

/**
 * Runs `info` with its flags; returns the exit code. Throws `UsageError` for bad flags.
 *
 * @example
 * ```ts
 * import { captureIO, infoCommand } from "@lean/attention/cli";
 * const io = captureIO();
 * await infoCommand(["--json"], io);
 * console.log(JSON.parse(io.stdout).cpu.grid); // 16
 * ```
 */
export async function infoCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const { flags, help } = parseFlags(argv, INFO_FLAGS);
  if (help) {
    io.out(`${INFO_USAGE}\n`);
    return 0;
  }
  const spinner = new Spinner({ io });
  const adapters: InfoAdapter[] = [];
  let reports;
  try {
    spinner.update(`looking for WebGPU adapters${flags.dawn ? " (and loading Dawn)" : ""}`);
    reports = await probeAdapters({ dawn: flags.dawn === true, kernels: true });
    for (const r of reports) {
      if (!r.available || !r.summary) {
        adapters.push(r);
        continue;
      }
      let profile = tableProfile(r.summary.description, r.summary.software);
      if (flags.calibrate) {
        const decoder = await createDecoder({
          backend: r.backend,
          onProgress: (p) => spinner.update(`${r.backend}: ${p.message}`),
        });
        profile = decoder.profile;
        await decoder.dispose();
      }
      adapters.push({ ...r, profile: { grid: profile.grid, source: profile.source } });
    }
  } finally {
    spinner.stop();
  }
  if (!flags.dawn) adapters.push({ backend: "dawn", available: false, reason: DAWN_NOT_LOADED });
  // Like openBestDecoder: Dawn only counts where the runtime has no WebGPU of its own.
  const choice = autoChoice(
    globalThis.navigator?.gpu !== undefined
      ? reports.filter((r) => r.backend === "webgpu")
      : reports,
  );
  const threads = (globalThis.navigator as { hardwareConcurrency?: number } | undefined)
    ?.hardwareConcurrency;
  if (flags.json) {
    io.out(
      JSON.stringify(
        {
          version: VERSION,
          runtime: runtimeName(),
          threads,
          adapters,
          cpu: { grid: CPU_GRID, source: "builtin" },
          auto: choice,
        },
        null,
        2,
      ) + "\n",
    );
    return 0;
  }
  const lines = [
    `@lean/attention ${VERSION}`,
    `runtime  ${runtimeName()}, ${threads ?? "?"} CPU threads`,
    "",
  ];
  for (const a of adapters) {
    const title = a.backend === "webgpu"
      ? "webgpu (the runtime's navigator.gpu)"
      : "dawn (npm webgpu)";
    if (!a.available || !a.summary) {
      lines.push(`${title}: not available: ${a.reason}`, "");
      continue;
    }
    const s = a.summary;
    lines.push(
      `${title}: ${s.description}`,
      `  vendor ${s.vendor || "?"}, architecture ${s.architecture || "?"}, ` +
        `${s.software ? "software adapter" : "hardware adapter"}`,
      `  features: ${a.features?.join(", ") || "none"}`,
      "  limits:",
      ...Object.entries(a.limits ?? {}).map(([k, v]) => `    ${k.padEnd(34)} ${v}`),
      ...kernelLines(a),
      `  profile: lean grid ${a.profile?.grid} workgroups (${a.profile?.source}` +
        `${flags.calibrate ? "" : "; --calibrate measures it"})`,
      "",
    );
  }
  lines.push(
    `cpu: always available, lean grid ${CPU_GRID} (builtin)`,
    "",
    `auto picks: ${choice.backend} (${choice.reason})`,
  );
  io.out(`${lines.join("\n")}\n`);
  return 0;
}

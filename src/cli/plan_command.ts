/**
 * `lean-attention plan`: plans a batch shape without running it, prints the plan's summary and,
 * with `--out`, writes its picture (see {@linkcode planSvg}; `--strategy=all` draws the three
 * strategies side by side). It writes no file unless told where. Needs no GPU when `--grid` is
 * given.
 *
 * @module
 */

import type { BackendName } from "../plan/backend.ts";
import { createPlan, describePlan, type Plan } from "../plan/plan.ts";
import { type DecodeShape, MAX_HEAD_DIM, type Strategy } from "../core/problem.ts";
import { formatUsage, parseFlags, UsageError } from "./args.ts";
import { openBestDecoder } from "./backend_choice.ts";
import { DEMO_SEQ_LENS } from "./demo_batch.ts";
import type { CliIO } from "./io.ts";
import { planComparisonSvg, planSvg } from "./plan_svg.ts";
import { Spinner } from "./spinner.ts";

/**
 * Flags of `plan`.
 *
 * @example
 * ```ts
 * import { parseFlags, PLAN_FLAGS } from "@lean/attention/cli";
 * console.log(parseFlags(["--seq-lens=100,7"], PLAN_FLAGS).flags["seq-lens"]); // [ 100, 7 ]
 * ```
 */
export const PLAN_FLAGS = {
  "seq-lens": {
    kind: "integers",
    min: 1,
    max: 1 << 24,
    maxCount: 4096,
    help: "context lengths (default: the demo batch, 37,512,1000,4096,130,2048,777,3000)",
  },
  heads: { kind: "integer", min: 1, max: 256, help: "query heads (default 32)" },
  "kv-heads": { kind: "integer", min: 1, max: 256, help: "KV heads (default 8)" },
  "head-dim": {
    kind: "integer",
    min: 8,
    max: MAX_HEAD_DIM,
    help: "head dimension of Q and K (default 128; MLA: 576)",
  },
  "head-dim-v": {
    kind: "integer",
    min: 8,
    max: MAX_HEAD_DIM,
    help: "head dimension of V (default --head-dim; MLA: 512)",
  },
  "q-len": { kind: "integer", min: 1, max: 16, help: "query tokens per sequence (default 1)" },
  strategy: {
    kind: "choice",
    choices: ["lean", "split", "single", "all"],
    help: "partition strategy (default lean); all: the three, drawn side by side",
  },
  grid: {
    kind: "integer",
    min: 1,
    max: 65536,
    help: "lean grid (default: the grid of --backend's device)",
  },
  backend: {
    kind: "choice",
    choices: ["auto", "cpu", "webgpu", "dawn"],
    help: "device whose grid to plan for when --grid is not given (default auto)",
  },
  out: {
    kind: "string",
    placeholder: "FILE",
    help: "write an SVG picture of the plan to FILE (nothing is written without it)",
  },
  width: {
    kind: "integer",
    min: 400,
    max: 20000,
    help: "picture width in pixels (default 1100; 1500 with --strategy=all)",
  },
} as const;

/**
 * Usage text of `plan`.
 *
 * @example
 * ```ts
 * import { PLAN_USAGE } from "@lean/attention/cli";
 * console.log(PLAN_USAGE.includes("--out=FILE")); // true
 * ```
 */
export const PLAN_USAGE: string = formatUsage(
  "lean-attention plan",
  "Plans a decode batch shape and prints the plan; --out writes an SVG picture of it: workgroups\n" +
    "against LeanTiles, coloured by sequence and head, with head/sequence crossings and merges.",
  PLAN_FLAGS,
);

/**
 * Plans the shape described by `plan`'s flags for a known grid (no GPU needed). Throws
 * `UsageError` when the flags describe an invalid batch.
 *
 * @example
 * ```ts
 * import { planFromFlags } from "@lean/attention/cli";
 * const plan = planFromFlags({ "seq-lens": [1000, 50], heads: 8, "kv-heads": 2 }, 24);
 * console.log(plan.strategy, plan.grid, plan.numSegments); // lean 24 4
 * ```
 */
export function planFromFlags(flags: PlanShapeFlags, grid: number): Plan {
  return planOrUsage(flags, (shape, strategy) => createPlan(shape, { strategy, grid }));
}

/**
 * The shape flags of `plan`, as {@linkcode parseFlags} gives them.
 *
 * @example
 * ```ts
 * import { type PlanShapeFlags, planFromFlags } from "@lean/attention/cli";
 * const flags: PlanShapeFlags = { heads: 16, "kv-heads": 1, "head-dim": 576, "head-dim-v": 512 };
 * console.log(planFromFlags(flags, 8).problem.headDimV); // 512
 * ```
 */
export interface PlanShapeFlags {
  /** Context lengths (default: the demo batch). */
  "seq-lens"?: number[];
  /** Query heads (default 32). */
  heads?: number;
  /** KV heads (default 8). */
  "kv-heads"?: number;
  /** Head dim of Q and K (default 128). */
  "head-dim"?: number;
  /** Head dim of V (default `head-dim`). */
  "head-dim-v"?: number;
  /** Query tokens per sequence (default 1). */
  "q-len"?: number;
  /** Partition strategy (default lean; `all` is refused: several plans). */
  strategy?: string;
}

/** The flags' shape planned by `planner`, its range and type errors turned into usage errors. */
function planOrUsage(
  flags: PlanShapeFlags,
  planner: (shape: DecodeShape, strategy: Strategy) => Plan,
): Plan {
  if (flags.strategy === "all") {
    throw new UsageError(`Flag --strategy=all names several plans: plan them one by one`);
  }
  const shape = {
    seqLens: flags["seq-lens"] ?? [...DEMO_SEQ_LENS],
    numHeads: flags.heads ?? 32,
    numKVHeads: flags["kv-heads"] ?? 8,
    headDim: flags["head-dim"] ?? 128,
    ...(flags["head-dim-v"] === undefined ? {} : { headDimV: flags["head-dim-v"] }),
    qLen: flags["q-len"] ?? 1,
  };
  try {
    return planner(shape, (flags.strategy ?? "lean") as Strategy);
  } catch (error) {
    if (error instanceof RangeError || error instanceof TypeError) {
      throw new UsageError(`Flags describe an invalid batch: ${error.message}`);
    }
    throw error;
  }
}

/**
 * Runs `plan` with its flags; returns the exit code. Throws `UsageError` for bad flags.
 *
 * @example
 * ```ts
 * import { captureIO, planCommand } from "@lean/attention/cli";
 * const io = captureIO();
 * await planCommand(["--seq-lens=300,40", "--heads=4", "--kv-heads=2", "--grid=8"], io);
 * console.log(io.stdout.split("\n")[0]);
 * // lean: 2 seq x 2 kv heads x 1 row blocks = 4 segments, 12 tiles of 64 tokens
 * ```
 */
export async function planCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const { flags, help } = parseFlags(argv, PLAN_FLAGS);
  if (help) {
    io.out(`${PLAN_USAGE}\n`);
    return 0;
  }
  if (flags.width !== undefined && flags.out === undefined) {
    throw new UsageError(`Flag --width sets the picture's width: give --out=FILE too`);
  }
  if (flags.grid !== undefined && flags.backend !== undefined) {
    throw new UsageError(`Flag --backend is not used when --grid is given: got both`);
  }
  const strategies = flags.strategy === "all"
    ? (["lean", "split", "single"] as const)
    : [(flags.strategy ?? "lean") as Strategy];
  const planAll = (g: number) =>
    strategies.map((strategy) => planFromFlags({ ...flags, strategy }, g));
  let plans: Plan[];
  let gridSource = "--grid";
  if (flags.grid === undefined) {
    // Check the shape before opening a GPU.
    planAll(1);
    const backend = (flags.backend ?? "auto") as "auto" | BackendName;
    const spinner = new Spinner({ io });
    try {
      spinner.update(`opening the ${backend} backend for its grid`);
      const { decoder } = await openBestDecoder({
        backend,
        onProgress: (p) => spinner.update(p.message),
      });
      try {
        // The device's own plans: its blocks (a GPU's tiled or matrix blocks for many rows over
        // long head dims) and its grid for their class.
        plans = strategies.map((strategy) =>
          planOrUsage({ ...flags, strategy }, (shape, s) => decoder.plan(shape, { strategy: s }))
        );
        gridSource = `${decoder.backend} device ${decoder.profile.name}, ${decoder.profile.source}`;
      } finally {
        await decoder.dispose();
      }
    } finally {
      spinner.stop();
    }
  } else {
    plans = planAll(flags.grid);
  }
  const lines = [...plans.map(describePlan), `  grid ${plans[0].grid} from ${gridSource}`];
  if (flags.out !== undefined) {
    const svg = plans.length === 1
      ? planSvg(plans[0], { width: flags.width })
      : planComparisonSvg(plans, { width: flags.width });
    await Deno.writeTextFile(flags.out, svg);
    const size = plans.map((p) => `${p.strategy} ${p.schedule.workgroups}`).join(", ");
    lines.push(`wrote ${flags.out} (workgroups: ${size}; ${plans[0].numTiles} tiles)`);
  }
  io.out(`${lines.join("\n")}\n`);
  return 0;
}

/**
 * The best of several runs of an anchor (bench/anchors/torch_sdpa.py or triton_decode.py): for
 * each case, the fastest back-to-back time (`ms`) of any run and the fastest lone call
 * (`aloneMs`), each with the file it came from (`from`, `aloneFrom`). The anchor's time varies
 * between device calls (an H200 call may land on another GPU: PyTorch's flash SDPA at b1 h32
 * 128k took 0.586, 0.621 and 0.570 ms in three calls), so lean is judged against the best of
 * them, which never flatters lean.
 *
 * Usage: deno run -A bench/anchor_best.ts OUT.json RUN.json...
 *
 * @module
 */

/** An anchor run's file: times by case name, back to back and alone. */
interface AnchorFile {
  device?: string;
  ms: Record<string, number | null>;
  aloneMs?: Record<string, number | null>;
}

/**
 * The per-case minimum of some runs' times, and which run gave it.
 *
 * @example
 * ```ts
 * import { bestOf } from "./anchor_best.ts";
 * const best = bestOf([
 *   { path: "a.json", times: { x: 0.5, y: 0.2 } },
 *   { path: "b.json", times: { x: 0.4, y: null } },
 * ]);
 * console.log(best.ms.x, best.from.x, best.ms.y, best.from.y); // 0.4 b.json 0.2 a.json
 * ```
 */
export function bestOf(
  runs: readonly { path: string; times: Record<string, number | null> | undefined }[],
): { ms: Record<string, number>; from: Record<string, string> } {
  const ms: Record<string, number> = {};
  const from: Record<string, string> = {};
  for (const { path, times } of runs) {
    for (const [name, t] of Object.entries(times ?? {})) {
      if (typeof t === "number" && !(t >= ms[name])) {
        ms[name] = t;
        from[name] = path;
      }
    }
  }
  return { ms, from };
}

if (import.meta.main) {
  const [out, ...paths] = Deno.args;
  if (!out || paths.length === 0) {
    console.error("usage: deno run -A bench/anchor_best.ts OUT.json RUN.json...");
    Deno.exit(2);
  }
  const files = await Promise.all(
    paths.map(async (path) => ({
      path,
      file: JSON.parse(await Deno.readTextFile(path)) as AnchorFile,
    })),
  );
  const stream = bestOf(files.map(({ path, file }) => ({ path, times: file.ms })));
  const alone = bestOf(files.map(({ path, file }) => ({ path, times: file.aloneMs })));
  await Deno.writeTextFile(
    out,
    JSON.stringify(
      {
        device: files[0].file.device,
        bestOf: paths,
        ms: stream.ms,
        aloneMs: alone.ms,
        from: stream.from,
        aloneFrom: alone.from,
      },
      null,
      1,
    ) + "\n",
  );
  console.log(`${Object.keys(stream.ms).length} cases, best of ${paths.length} runs: ${out}`);
}

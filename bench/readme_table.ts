/**
 * The README's H200 table, from a merged result file (bench/merge_results.ts): per case lean,
 * split and single (each pass timed alone), lean's passes back to back ("stream", as the
 * anchors' main times are taken), the anchors, the roofline, lean's fraction of it (alone and
 * stream), lean over the anchors (stream over their back-to-back times, alone over their lone
 * calls) and lean through the paged cache over lean dense (stream where the file has it).
 *
 * Usage: deno run -A bench/readme_table.ts [bench/results/h200_webgpu.json] [--cases=GROUP,...]
 *
 * @module
 */

interface Row {
  name: string;
  group?: string;
  strategy: string;
  medianMs: number;
  streamMs?: number;
  fractionOfRooflineStream?: number;
  torchMs?: number | null;
  tritonMs?: number | null;
  torchAloneMs?: number | null;
  tritonAloneMs?: number | null;
  rooflineMs: number;
  bound: string;
  fractionOfRoofline: number;
  pagedOverDense?: number;
  pagedOverDenseStream?: number;
}

const path = Deno.args.find((a) => !a.startsWith("--")) ?? "bench/results/h200_webgpu.json";
const groups = Deno.args.find((a) => a.startsWith("--groups="))?.slice(9).split(",");
const file = JSON.parse(await Deno.readTextFile(path)) as { results: Row[] };
const byCase = new Map<string, Map<string, Row>>();
for (const r of file.results) {
  if (groups && !groups.includes(r.group ?? "")) continue;
  if (!byCase.has(r.name)) byCase.set(r.name, new Map());
  byCase.get(r.name)!.set(r.strategy, r);
}

const ms = (x: number | null | undefined) => (x == null ? "-" : x.toFixed(4));
const ratio = (a: number | undefined, b: number | null | undefined) =>
  a == null || b == null ? "-" : `${(a / b).toFixed(2)}x`;
const pct = (x: number | undefined) => (x === undefined ? "-" : `${Math.round(100 * x)}%`);
const lines = [
  "| case | lean ms | lean stream ms | split ms | single ms | PyTorch ms | Triton ms | roofline ms | lean of roofline (alone / stream) | lean / PyTorch (stream / alone) | lean / Triton (stream / alone) | paged / dense |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
];
for (const [name, rows] of byCase) {
  const lean = rows.get("lean");
  if (!lean) continue;
  const paged = rows.get("lean-paged");
  const roof = `${lean.rooflineMs.toFixed(4)}${lean.bound === "compute" ? " (FMA)" : ""}`;
  // The anchors are timed back to back (CUDA graphs): compare like with like.
  const comparable = lean.streamMs ?? lean.medianMs;
  const pagedRatio = paged?.pagedOverDenseStream ?? paged?.pagedOverDense;
  lines.push(
    `| ${name} | ${ms(lean.medianMs)} | ${ms(lean.streamMs)} | ${
      ms(rows.get("split")?.medianMs)
    } | ${ms(rows.get("single")?.medianMs)} | ${ms(lean.torchMs)} | ${
      ms(lean.tritonMs)
    } | ${roof} | ${pct(lean.fractionOfRoofline)} / ${pct(lean.fractionOfRooflineStream)} | ${
      ratio(comparable, lean.torchMs)
    } / ${ratio(lean.medianMs, lean.torchAloneMs)} | ${ratio(comparable, lean.tritonMs)} / ${
      ratio(lean.medianMs, lean.tritonAloneMs)
    } | ${pagedRatio === undefined ? "-" : pagedRatio.toFixed(3)} |`,
  );
}
console.log(lines.join("\n"));

/**
 * The README's H200 table, from a merged result file (bench/merge_results.ts): per case lean,
 * split and single, the anchors, the roofline, lean's fraction of it, lean over the anchors and
 * lean through the paged cache over lean dense.
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
  torchMs?: number | null;
  tritonMs?: number | null;
  rooflineMs: number;
  bound: string;
  fractionOfRoofline: number;
  pagedOverDense?: number;
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
const lines = [
  "| case | lean ms | split ms | single ms | PyTorch ms | Triton ms | roofline ms | lean of roofline | lean / PyTorch | lean / Triton | paged / dense |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
];
for (const [name, rows] of byCase) {
  const lean = rows.get("lean");
  if (!lean) continue;
  const paged = rows.get("lean-paged");
  const roof = `${lean.rooflineMs.toFixed(4)}${lean.bound === "compute" ? " (FMA)" : ""}`;
  lines.push(
    `| ${name} | ${ms(lean.medianMs)} | ${ms(rows.get("split")?.medianMs)} | ${
      ms(rows.get("single")?.medianMs)
    } | ${ms(lean.torchMs)} | ${ms(lean.tritonMs)} | ${roof} | ${
      Math.round(100 * lean.fractionOfRoofline)
    }% | ${ratio(lean.medianMs, lean.torchMs)} | ${ratio(lean.medianMs, lean.tritonMs)} | ${
      paged?.pagedOverDense === undefined ? "-" : paged.pagedOverDense.toFixed(3)
    } |`,
  );
}
console.log(lines.join("\n"));

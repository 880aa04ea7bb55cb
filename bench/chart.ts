/**
 * Draws the benchmark chart from a `bench:gpu` JSON file: (left) time against context length for
 * the batch-1 sweep, lean, split and single (each pass timed alone) and lean's passes back to
 * back beside PyTorch's flash SDPA, the Triton split-KV anchor (both back to back) and the
 * roofline; (right) the ragged batches, each strategy and anchor as a bar. Both on
 * log scales. Plain SVG, no dependencies.
 *
 * Usage: deno run -A bench/chart.ts bench/results/h200_webgpu.json bench/results/h200_webgpu.svg
 */

interface Row {
  name: string;
  group: string;
  seqLens: number[] | string;
  strategy: string;
  medianMs: number;
  streamMs?: number;
  rooflineMs: number;
  torchMs: number | null;
  tritonMs: number | null;
  skipped?: string;
  failed?: string;
}

const [input, output] = Deno.args;
if (!input || !output) {
  console.error("usage: deno run -A bench/chart.ts RESULTS.json OUT.svg");
  Deno.exit(2);
}
const data = JSON.parse(await Deno.readTextFile(input)) as {
  adapter: string;
  backend: string;
  results: Row[];
};
const rows = data.results.filter((r) => !r.skipped && !r.failed && r.medianMs);
const W = 520, H = 330, M = { l: 58, r: 14, t: 36, b: 50 };
const SERIES = [
  { key: "lean", name: "lean", color: "#1b7f3b" },
  { key: "lean-stream", name: "lean, passes back to back", color: "#7bc96f" },
  { key: "split", name: "split (FlashDecoding)", color: "#c2571a" },
  { key: "single", name: "single (FA-2 style)", color: "#3557a8" },
  { key: "torch", name: "PyTorch flash SDPA", color: "#8e44ad" },
  { key: "triton", name: "Triton split-KV", color: "#b8860b" },
  { key: "roof", name: "roofline", color: "#000" },
];

/** The time of a series for a case: a strategy's median, an anchor, or the roofline. */
function timeOf(name: string, key: string): number | undefined {
  const lean = rows.find((r) => r.name === name && r.strategy === "lean");
  if (key === "torch") return lean?.torchMs ?? undefined;
  if (key === "triton") return lean?.tritonMs ?? undefined;
  if (key === "roof") return lean?.rooflineMs;
  // The anchors are timed back to back (CUDA graphs), as this series is.
  if (key === "lean-stream") return lean?.streamMs;
  return rows.find((r) => r.name === name && r.strategy === key)?.medianMs;
}

function logScale(lo: number, hi: number, a: number, b: number): (v: number) => number {
  return (v) => a + ((Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) * (b - a);
}

function decades(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo && v <= hi) ticks.push(v);
    }
  }
  return ticks;
}

function frame(x0: number, title: string, yLabel: string, lo: number, hi: number): string[] {
  const pw = W - M.l - M.r, ph = H - M.t - M.b;
  const ys = logScale(lo, hi, M.t + ph, M.t);
  const parts = [
    `<text x="${x0 + W / 2}" y="20" text-anchor="middle" font-weight="bold">${title}</text>`,
    `<rect x="${x0 + M.l}" y="${M.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
    `<text transform="translate(${x0 + 14},${
      M.t + ph / 2
    }) rotate(-90)" text-anchor="middle" font-size="12">${yLabel}</text>`,
  ];
  for (const t of decades(lo, hi)) {
    parts.push(
      `<line x1="${x0 + M.l}" x2="${x0 + M.l + pw}" y1="${ys(t)}" y2="${ys(t)}" stroke="#eee"/>`,
      `<text x="${x0 + M.l - 6}" y="${ys(t) + 4}" text-anchor="end" font-size="11">${t}</text>`,
    );
  }
  return parts;
}

function legend(x: number, y: number, keys: string[]): string[] {
  const shown = SERIES.filter((s) => keys.includes(s.key));
  const parts = [
    `<rect x="${x}" y="${y}" width="150" height="${
      8 + 15 * shown.length
    }" fill="white" fill-opacity="0.9" stroke="#ccc"/>`,
  ];
  shown.forEach((s, k) =>
    parts.push(
      `<text x="${x + 8}" y="${y + 16 + 15 * k}" font-size="11" fill="${s.color}">${s.name}</text>`,
    )
  );
  return parts;
}

// Left: the batch-1 context sweep.
const sweep = [...new Set(rows.filter((r) => r.group === "context").map((r) => r.name))];
const ctx = (name: string) => (rows.find((r) => r.name === name)!.seqLens as number[])[0];
sweep.sort((a, b) => ctx(a) - ctx(b));
const left: string[] = [];
{
  const values = sweep.flatMap((n) => SERIES.map((s) => timeOf(n, s.key) ?? NaN)).filter((v) =>
    v > 0
  );
  const lo = Math.min(...values) / 1.5, hi = Math.max(...values) * 4;
  left.push(...frame(0, "batch 1, 32 heads, d128, f16: time per call", "ms (log)", lo, hi));
  const pw = W - M.l - M.r, ph = H - M.t - M.b;
  const xs = (i: number) => M.l + (sweep.length === 1 ? pw / 2 : (i * pw) / (sweep.length - 1));
  const ys = logScale(lo, hi, M.t + ph, M.t);
  sweep.forEach((n, i) => {
    const c = ctx(n);
    left.push(
      `<text x="${xs(i)}" y="${M.t + ph + 16}" text-anchor="middle" font-size="11">${
        c >= 1024 ? `${c / 1024}k` : c
      }</text>`,
    );
  });
  left.push(
    `<text x="${M.l + pw / 2}" y="${
      H - 14
    }" text-anchor="middle" font-size="12">context tokens</text>`,
  );
  for (const s of SERIES) {
    const pts = sweep.map((n, i) => [xs(i), timeOf(n, s.key)] as const).filter(([, v]) =>
      v !== undefined && v > 0
    );
    if (pts.length === 0) continue;
    const dash = s.key === "roof" ? ` stroke-dasharray="5 4"` : "";
    left.push(
      `<polyline points="${
        pts.map(([x, v]) => `${x.toFixed(1)},${ys(v!).toFixed(1)}`).join(" ")
      }" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`,
    );
    if (s.key !== "roof") {
      for (const [x, v] of pts) {
        left.push(`<circle cx="${x}" cy="${ys(v!)}" r="2.5" fill="${s.color}"/>`);
      }
    }
  }
  left.push(...legend(M.l + 6, M.t + 6, SERIES.map((s) => s.key)));
}

// Right: the ragged batches, one group of bars per case.
const ragged = [...new Set(rows.filter((r) => r.group === "ragged").map((r) => r.name))];
const right: string[] = [];
{
  const x0 = W;
  const keys = SERIES.filter((s) => s.key !== "roof").map((s) => s.key);
  const values = ragged.flatMap((n) => keys.map((k) => timeOf(n, k) ?? NaN)).filter((v) => v > 0);
  const lo = Math.min(...values) / 2, hi = Math.max(...values) * 3;
  right.push(
    ...frame(x0, "ragged batches (GQA 32/8): time per call", "ms (log)", lo, hi),
  );
  const pw = W - M.l - M.r, ph = H - M.t - M.b;
  const ys = logScale(lo, hi, M.t + ph, M.t);
  const groupW = pw / Math.max(1, ragged.length);
  const barW = (groupW * 0.7) / keys.length;
  ragged.forEach((n, g) => {
    const gx = x0 + M.l + g * groupW + groupW * 0.15;
    keys.forEach((k, j) => {
      const v = timeOf(n, k);
      if (v === undefined || !(v > 0)) return;
      const color = SERIES.find((s) => s.key === k)!.color;
      const y = ys(v);
      right.push(
        `<rect x="${gx + j * barW}" y="${y}" width="${barW - 2}" height="${
          M.t + ph - y
        }" fill="${color}"/>`,
        `<text x="${gx + j * barW + barW / 2}" y="${y - 3}" text-anchor="middle" font-size="9">${
          v < 1 ? v.toFixed(2) : v.toFixed(1)
        }</text>`,
      );
    });
    right.push(
      `<text x="${gx + (barW * keys.length) / 2}" y="${
        M.t + ph + 16
      }" text-anchor="middle" font-size="11">${n.replace("ragged ", "")}</text>`,
    );
  });
  const roof = ragged.map((n) => timeOf(n, "roof")).filter((v) => v !== undefined) as number[];
  ragged.forEach((n, g) => {
    const v = timeOf(n, "roof");
    if (v === undefined) return;
    const gx = x0 + M.l + g * groupW + groupW * 0.1;
    right.push(
      `<line x1="${gx}" x2="${gx + groupW * 0.8}" y1="${ys(v)}" y2="${
        ys(v)
      }" stroke="#000" stroke-dasharray="5 4"/>`,
    );
  });
  if (roof.length) {
    right.push(
      `<text x="${x0 + M.l + pw - 4}" y="${
        M.t + ph - 4
      }" text-anchor="end" font-size="10" fill="#555">dashed: roofline; PyTorch pads to the longest sequence</text>`,
    );
  }
  right.push(...legend(x0 + M.l + pw - 156, M.t + 6, keys));
}

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${
  H + 18
}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${left.join("\n")}
${right.join("\n")}
<text x="${W}" y="${
  H + 10
}" text-anchor="middle" font-size="11" fill="#555">${data.adapter}, ${data.backend} backend, warm GPU: deno task bench:gpu; deno task bench:chart</text>
</svg>
`;
await Deno.writeTextFile(output, svg);
console.log(`wrote ${output}`);

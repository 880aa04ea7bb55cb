/**
 * Draws the benchmark chart from a `bench:gpu` JSON file: (left) lean's speedup over split and
 * single against context length for the batch-1 sweep, (right) KV bandwidth of each strategy
 * against the measured read ceiling. Plain SVG, no dependencies.
 *
 * Usage: deno run -A bench/chart.ts bench/results/h100_webgpu.json bench/results/h100_webgpu.svg
 */

interface Row {
  name: string;
  group: string;
  seqLens: number[] | string;
  strategy: string;
  medianMs: number;
  kvBytes: number;
  skipped?: string;
}

const [input, output] = Deno.args;
if (!input || !output) {
  console.error("usage: deno run -A bench/chart.ts RESULTS.json OUT.svg");
  Deno.exit(2);
}
const data = JSON.parse(await Deno.readTextFile(input)) as {
  adapter: string;
  backend: string;
  ceiling: number;
  results: Row[];
};
const sweep = data.results.filter((r) => r.group === "context" && !r.skipped);
const contexts = [...new Set(sweep.map((r) => (r.seqLens as number[])[0]))].sort((a, b) => a - b);
const ms = (ctx: number, strategy: string) =>
  sweep.find((r) => (r.seqLens as number[])[0] === ctx && r.strategy === strategy)!.medianMs;
const tbps = (ctx: number, strategy: string) => {
  const r = sweep.find((r) => (r.seqLens as number[])[0] === ctx && r.strategy === strategy)!;
  return r.kvBytes / (r.medianMs / 1e3) / 1e12;
};

const W = 460, H = 300, M = { l: 56, r: 16, t: 36, b: 44 };
const COLORS: Record<string, string> = { lean: "#1b7f3b", split: "#c2571a", single: "#3557a8" };

function panel(
  x0: number,
  title: string,
  yLabel: string,
  series: { name: string; color: string; values: number[]; dash?: string }[],
  yMax: number,
  logY: boolean,
): string {
  const pw = W - M.l - M.r, ph = H - M.t - M.b;
  const xs = (i: number) =>
    x0 + M.l + (contexts.length === 1 ? pw / 2 : (i * pw) / (contexts.length - 1));
  const yMin = logY ? 0.5 : 0;
  const ys = (v: number) =>
    M.t + ph - (logY ? (Math.log(v / yMin) / Math.log(yMax / yMin)) * ph : (v / yMax) * ph);
  const parts: string[] = [];
  parts.push(
    `<text x="${x0 + W / 2}" y="20" text-anchor="middle" font-weight="bold">${title}</text>`,
  );
  parts.push(
    `<rect x="${x0 + M.l}" y="${M.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
  );
  const ticks = logY
    ? [0.5, 1, 2, 5, 10, 20, 50].filter((t) => t <= yMax)
    : [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4].filter((t) => t <= yMax);
  for (const t of ticks) {
    parts.push(
      `<line x1="${x0 + M.l}" x2="${x0 + M.l + pw}" y1="${ys(t)}" y2="${ys(t)}" stroke="#eee"/>`,
    );
    parts.push(
      `<text x="${x0 + M.l - 6}" y="${ys(t) + 4}" text-anchor="end" font-size="11">${t}</text>`,
    );
  }
  contexts.forEach((c, i) => {
    parts.push(
      `<text x="${xs(i)}" y="${M.t + ph + 16}" text-anchor="middle" font-size="11">${
        c >= 1024 ? `${c / 1024}k` : c
      }</text>`,
    );
  });
  parts.push(
    `<text x="${x0 + M.l + pw / 2}" y="${
      H - 8
    }" text-anchor="middle" font-size="12">context tokens (batch 1, 32 heads, d128, f16)</text>`,
  );
  parts.push(
    `<text transform="translate(${x0 + 14},${
      M.t + ph / 2
    }) rotate(-90)" text-anchor="middle" font-size="12">${yLabel}</text>`,
  );
  for (const line of series) {
    const pts = line.values.map((v, i) => `${xs(i).toFixed(1)},${ys(v).toFixed(1)}`).join(" ");
    const dash = line.dash ? ` stroke-dasharray="${line.dash}"` : "";
    parts.push(
      `<polyline points="${pts}" fill="none" stroke="${line.color}" stroke-width="2"${dash}/>`,
    );
    line.values.forEach((v, i) =>
      parts.push(`<circle cx="${xs(i)}" cy="${ys(v)}" r="3" fill="${line.color}"/>`)
    );
  }
  // The legend sits on an opaque box in the top-left corner, above the lines.
  const width = 8 + 6.6 * Math.max(...series.map((l) => l.name.length));
  parts.push(
    `<rect x="${x0 + M.l + 4}" y="${M.t + 4}" width="${width}" height="${
      8 + 15 * series.length
    }" fill="white" fill-opacity="0.9" stroke="#ccc"/>`,
  );
  series.forEach((line, k) => {
    parts.push(
      `<text x="${x0 + M.l + 10}" y="${
        M.t + 18 + 15 * k
      }" font-size="12" fill="${line.color}">${line.name}</text>`,
    );
  });
  return parts.join("\n");
}

const overSplit = contexts.map((c) => ms(c, "split") / ms(c, "lean"));
const overSingle = contexts.map((c) => ms(c, "single") / ms(c, "lean"));
const ceiling = data.ceiling / 1e12;
const left = panel(
  0,
  "lean speedup (log scale)",
  "time of baseline / time of lean",
  [
    { name: "over single (FlashAttention-2 style)", color: COLORS.single, values: overSingle },
    { name: "over split (FlashDecoding)", color: COLORS.split, values: overSplit },
    { name: "1x", color: "#999", values: contexts.map(() => 1), dash: "4 4" },
  ],
  Math.max(2, ...overSingle, ...overSplit) * 4, // headroom for the legend
  true,
);
const right = panel(
  W,
  `KV bandwidth vs read ceiling (${ceiling.toFixed(2)} TB/s)`,
  "TB/s of K and V",
  [
    ...["lean", "split", "single"].map((s) => ({
      name: s,
      color: COLORS[s],
      values: contexts.map((c) => tbps(c, s)),
    })),
    { name: "read ceiling", color: "#000", values: contexts.map(() => ceiling), dash: "6 4" },
  ],
  Math.ceil(ceiling * 2) / 2 + 1, // headroom for the legend
  false,
);
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${
  H + 18
}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${left}
${right}
<text x="${W}" y="${
  H + 12
}" text-anchor="middle" font-size="11" fill="#555">${data.adapter}, ${data.backend} backend: deno task bench:gpu; deno run -A bench/chart.ts</text>
</svg>
`;
await Deno.writeTextFile(output, svg);
console.log(`wrote ${output}`);

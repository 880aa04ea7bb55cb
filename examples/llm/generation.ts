/**
 * The generation loop shared by the runner's backends: prompts are prefilled in chunks of up to
 * 16 query tokens through the decode path (`qLen > 1`, causal), sequences whose chunks have the
 * same length forming one forward pass; each prompt's last chunk samples its first token; then
 * every sequence advances one token per step (greedy).
 *
 * ```ts
 * import { prefillSchedule } from "./generation.ts";
 * const steps = prefillSchedule([5, 20], 16);
 * console.log(steps.map((s) => `${s.seqs}:${s.start}+${s.qLen}${s.sample ? "*" : ""}`).join(" "));
 * // 0:0+5* 1:0+16 1:16+4*
 * ```
 *
 * @module
 */

import type { ModelConfig } from "./config.ts";

/** Most query tokens per sequence in one forward pass (the library's `MAX_Q_LEN`). */
export const PREFILL_CHUNK = 16;

/** One forward pass: sequences that each get `qLen` new tokens. */
export interface ForwardStep {
  /** Batch indices of the sequences, in row order. */
  seqs: number[];
  /** New tokens per sequence (1 to 16). */
  qLen: number;
  /** Token ids `[seq][qpos]`; absent: each sequence's last generated token (`qLen` 1). */
  tokens?: number[];
  /** Compute the logits of each sequence's last new token and sample the next token. */
  sample: boolean;
  /** Which generated token this step samples (0 for the prompt's last chunk). */
  genIndex: number;
}

/** A model on one backend, holding the KV cache of a batch of sequences. */
export interface ModelRunner {
  readonly config: ModelConfig;
  /** Runs (GPU: records and submits) one forward pass. */
  forward(step: ForwardStep): void;
  /** Logits `[seqs][vocab]` of the last sampling step (waits for the GPU). */
  readLogits(): Promise<Float32Array>;
  /** Generated tokens of every sequence so far (waits for the GPU). */
  readTokens(generated: number): Promise<number[][]>;
  /** Waits until submitted work is done. */
  sync(): Promise<void>;
  dispose(): void;
}

/** A prefill forward pass: batch indices, where in their prompts the chunk starts, its length. */
export interface PrefillStep {
  seqs: number[];
  start: number;
  qLen: number;
  /** The chunk ends the prompts: sample. */
  sample: boolean;
}

/**
 * Cuts prompts into chunks of up to `chunk` tokens, round by round (every unfinished prompt's
 * next chunk), grouping a round's chunks of equal length and kind into one step.
 */
export function prefillSchedule(lengths: number[], chunk = PREFILL_CHUNK): PrefillStep[] {
  const steps: PrefillStep[] = [];
  for (let start = 0; lengths.some((n) => n > start); start += chunk) {
    const groups = new Map<string, PrefillStep>();
    lengths.forEach((n, s) => {
      if (n <= start) return;
      const qLen = Math.min(chunk, n - start);
      const sample = start + qLen === n;
      const key = `${qLen}:${sample}`;
      const g = groups.get(key) ?? { seqs: [], start, qLen, sample };
      g.seqs.push(s);
      groups.set(key, g);
    });
    steps.push(...groups.values());
  }
  return steps;
}

/** Options of {@linkcode generate}. */
export interface GenerateOptions {
  prompts: number[][];
  maxNewTokens: number;
  /** Receives each sampling step's logits (reads them back: slow on GPUs). */
  onLogits?: (seqs: number[], genIndex: number, logits: Float32Array) => void;
  /** Wait for the GPU every this many decode steps (0: only at the end). */
  syncEvery?: number;
  /** Called after every forward pass (e.g. to collect garbage under Dawn). */
  afterStep?: () => void;
}

/** What {@linkcode generate} returns: tokens and timings. */
export interface GenerateResult {
  tokens: number[][];
  /** Wall milliseconds of the prefill (to its first tokens, GPU included). */
  prefillMs: number;
  /** Wall milliseconds of the decode steps (GPU included). */
  decodeMs: number;
  /** Decode steps run. */
  decodeSteps: number;
}

/** Greedy generation of `maxNewTokens` tokens for every prompt. */
export async function generate(
  runner: ModelRunner,
  options: GenerateOptions,
): Promise<GenerateResult> {
  const { prompts, maxNewTokens, onLogits } = options;
  if (prompts.length === 0 || prompts.some((p) => p.length === 0)) {
    throw new RangeError("prompts must be a non-empty list of non-empty token lists");
  }
  const vocab = runner.config.vocab;
  for (const p of prompts) {
    const bad = p.find((t) => !Number.isInteger(t) || t < 0 || t >= vocab);
    if (bad !== undefined) {
      throw new RangeError(`prompt token ids must be in [0, ${vocab}): got ${bad}`);
    }
  }
  const t0 = performance.now();
  for (const s of prefillSchedule(prompts.map((p) => p.length))) {
    const tokens = s.seqs.flatMap((b) => prompts[b].slice(s.start, s.start + s.qLen));
    runner.forward({ seqs: s.seqs, qLen: s.qLen, tokens, sample: s.sample, genIndex: 0 });
    options.afterStep?.();
    if (s.sample && onLogits) onLogits(s.seqs, 0, await runner.readLogits());
  }
  await runner.sync();
  const t1 = performance.now();
  const all = prompts.map((_, b) => b);
  const syncEvery = options.syncEvery ?? 0;
  for (let g = 1; g < maxNewTokens; g++) {
    runner.forward({ seqs: all, qLen: 1, sample: true, genIndex: g });
    options.afterStep?.();
    if (onLogits) onLogits(all, g, await runner.readLogits());
    else if (syncEvery > 0 && g % syncEvery === 0) await runner.sync();
  }
  await runner.sync();
  const t2 = performance.now();
  return {
    tokens: await runner.readTokens(maxNewTokens),
    prefillMs: t1 - t0,
    decodeMs: t2 - t1,
    decodeSteps: Math.max(0, maxNewTokens - 1),
  };
}

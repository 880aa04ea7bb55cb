/**
 * The benchmark's `--check`: before a case is timed, its kernels run on a shortened input of the
 * same shape (at most 4 sequences of at most about 3,000 tokens) and their output is compared with
 * the float64 reference. The dense check runs the case's decoder; the paged check (`--paged`)
 * runs the paged mode's kernel: a `KVCache` made as {@linkcode timePaged} makes it (pages of 16
 * tokens handed out to the sequences in turn, the case's per-tensor scales or a table per
 * token), the shortened sequences' rows appended, planned and recorded through an attention
 * encoder with the mode's grid and tuning.
 *
 * @module
 */

import { type DecodeInput, type Decoder, referenceAttention } from "../mod.ts";
import { BufferUsage, MAP_READ } from "../src/gpu/gpu_runtime.ts";
import type { BenchCase } from "./bench_cases.ts";
import { makeBenchInput, variantFields } from "./bench_input.ts";
import { PAGE_SIZE, pagedCache, pagedEncoder, type PagedTimingOptions } from "./paged_timing.ts";

/** The shortened input of a case: its first 4 sequences, each at most about 3,000 tokens. */
export function shortInput(c: BenchCase): DecodeInput {
  return makeBenchInput({
    ...c,
    seqLens: c.seqLens.slice(0, 4).map((n) => Math.min(n, 3000 + n % 7)),
  });
}

/** Relative L2 error of `out` against the reference's; throws above `tolerance`. */
function relativeError(input: DecodeInput, out: Float32Array, tolerance: number, what: string) {
  const ref = referenceAttention(input);
  let num = 0, den = 0;
  for (let i = 0; i < ref.out.length; i++) {
    num += (out[i] - ref.out[i]) ** 2;
    den += ref.out[i] ** 2;
  }
  const err = Math.sqrt(num / den);
  if (!(err < tolerance)) throw new Error(`${what}: output off the float64 reference by ${err}`);
  return err;
}

/** The dense check: the case's decoder on its shortened input. Returns the relative L2 error. */
export async function checkDense(
  decoder: Decoder,
  c: BenchCase,
  tolerance: number,
): Promise<number> {
  const input = shortInput(c);
  const got = await decoder.decode(input);
  return relativeError(input, got.out, tolerance, c.name);
}

/**
 * The paged check: the paged mode's kernel (the cache, grid and tuning of
 * {@linkcode timePaged}) on the case's shortened input. Returns the relative L2 error.
 */
export async function checkPaged(
  device: GPUDevice,
  c: BenchCase,
  options: Pick<PagedTimingOptions, "grid" | "kernel" | "tileTokens" | "tokenScales">,
  tolerance: number,
): Promise<number> {
  const input = shortInput(c);
  const { seqLens, numKVHeads, headDim } = c;
  const short = input.seqLens as number[];
  const scaled = input.kScale !== undefined;
  const pages = short.reduce((n, len) => n + Math.ceil(len / PAGE_SIZE), 0);
  const { cache, tensor } = pagedCache(device, c, input, options, 1, pages);
  const attention = await pagedEncoder(device, options);
  const row = numKVHeads * headDim;
  const rowV = numKVHeads * (c.headDimV ?? headDim);
  const buffers: GPUBuffer[] = [];
  const make = (bytes: number, usage: number) => {
    const b = device.createBuffer({ size: bytes, usage });
    buffers.push(b);
    return b;
  };
  try {
    const seqs = short.map(() => cache.addSequence());
    const starts = short.map((_, i) => short.slice(0, i).reduce((a, b) => a + b, 0));
    // A page at a time to every sequence that needs one, as the timed cache's pages are handed
    // out: each appended chunk's rows and, with a table per token, its scales.
    for (let at = 0; at < Math.max(...short); at += PAGE_SIZE) {
      for (const [i, seq] of seqs.entries()) {
        const n = Math.min(PAGE_SIZE, short[i] - at);
        if (n <= 0) continue;
        const from = starts[i] + at;
        const rows = (a: DecodeInput["k"], r = row) => a.slice(from * r, (from + n) * r);
        const scale = (s: DecodeInput["kScale"]) =>
          typeof s === "number" ? s : s!.slice(from * numKVHeads, (from + n) * numKVHeads);
        cache.append(seq, {
          k: [rows(input.k)],
          ...(input.vFromK ? {} : { v: [rows(input.v!, rowV)] }),
          ...(scaled && !tensor
            ? { kScale: [scale(input.kScale)], vScale: [scale(input.vScale)] }
            : {}),
        });
      }
    }
    const bytes = input.q.byteLength / headDim * (c.headDimV ?? headDim);
    const storage = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;
    const q = make(input.q.byteLength, storage);
    device.queue.writeBuffer(q, 0, input.q as Float32Array<ArrayBuffer>);
    const out = make(bytes, storage);
    const read = make(bytes, BufferUsage.MAP_READ | BufferUsage.COPY_DST);
    const plan = attention.plan(cache, {
      seqs,
      numHeads: c.numHeads,
      qLen: c.qLen,
      ...variantFields(c),
    });
    const encoder = device.createCommandEncoder();
    attention.encode(encoder, { plan, layer: 0, q, out });
    encoder.copyBufferToBuffer(out, 0, read, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(MAP_READ);
    const got = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    return relativeError(input, got, tolerance, `${c.name} (paged, ${seqLens.length} seqs)`);
  } finally {
    attention.dispose();
    cache.dispose();
    for (const b of buffers) b.destroy();
  }
}

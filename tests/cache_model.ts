/**
 * The model of tests/cache_model_test.ts: a paged KV cache beside a simple model of it, and the
 * random operations applied to both with their expected outcomes. The model holds each
 * sequence's tokens as cells (forks share them; a copy-on-write gives a sequence copies of its
 * partial page's cells), so after every step {@linkcode Harness.check} can check that each
 * sequence reads back exactly the tokens written through it (or through a fork sharing them), and
 * that every page is accounted for: used pages are exactly those the sequences reference, with
 * their counts. On a GPU, writes may go through the append kernel and plans run encoded.
 *
 * @module
 */

import assert from "node:assert/strict";
import { referenceAttention } from "../mod.ts";
import {
  type AppendSlots,
  type AttentionEncoder,
  createKVCache,
  executePagedPlanOnCpu,
  type KVCache,
  type PagedPlan,
  planForCache,
} from "../runner.ts";
import { gpuBuffer, type GpuUnderTest, readF32 } from "./gpu_device.ts";
import { OUT_TOLERANCE, randomFloats, relativeL2Error, seededRng } from "./helpers.ts";

/** One token: the tag written to it in each layer (undefined: reserved, not written). */
interface Cell {
  tags: (number | undefined)[];
}

interface ModelSeq {
  cells: Cell[];
}

/** Slots handed out by extend, and what they were for. */
interface SlotRecord {
  slots: AppendSlots;
  id: number;
  owner: ModelSeq;
  start: number;
  cells: Cell[];
}

/** An operation on the cache and its model; picks index the live sequences (modulo). */
export type Op =
  | { kind: "add" }
  | { kind: "extend"; picks: number[]; n: number }
  | { kind: "append"; pick: number; n: number }
  | { kind: "write"; pick: number; layer: number; gpu: boolean }
  | { kind: "fork"; pick: number }
  | { kind: "free"; pick: number }
  | { kind: "plan"; picks: number[]; runNow: boolean; layer: number }
  | { kind: "run"; pick: number; layer: number };

/** Shape of a harness's cache. */
export interface Shape {
  numHeads: number;
  numKVHeads: number;
  headDim: number;
  pageSize: number;
  numPages: number;
  kvDtype: "f32" | "f16";
}

const LAYERS = 2;

/** What the operations did (to show the runs exercise every outcome). */
export interface Outcomes {
  wrote: number;
  staleWrites: number;
  outOfPages: number;
  executed: number;
  stalePlans: number;
  /** Writes through the GPU append kernel. */
  gpuWrote: number;
}

/** Outcomes before any operation: all none. */
export function noOutcomes(): Outcomes {
  return { wrote: 0, staleWrites: 0, outOfPages: 0, executed: 0, stalePlans: 0, gpuWrote: 0 };
}

/** Sums the outcomes of many runs. */
export function tally(into: Outcomes, from: Outcomes): void {
  for (const key of Object.keys(into) as (keyof Outcomes)[]) into[key] += from[key];
}

/** A cache, its model, and the operations with their expected outcomes. */
export class Harness {
  readonly cache: KVCache;
  readonly shape: Shape;
  readonly row: number;
  readonly model = new Map<number, ModelSeq>();
  readonly slots: SlotRecord[] = [];
  readonly plans: { plan: PagedPlan; version: number }[] = [];
  /** Changes with every extend, fork and free: plans of an older version are stale. */
  version = 0;
  /** What this harness's operations did. */
  readonly outcomes: Outcomes = noOutcomes();
  #tag = 1;
  #gpu: GpuUnderTest | undefined;
  #attention: AttentionEncoder | undefined;

  constructor(shape: Shape, gpu?: GpuUnderTest, attention?: AttentionEncoder) {
    this.shape = shape;
    this.#gpu = gpu;
    this.#attention = attention;
    this.row = shape.numKVHeads * shape.headDim;
    this.cache = createKVCache({ ...shape, numLayers: LAYERS, device: gpu?.device });
  }

  #ids(): number[] {
    return [...this.model.keys()];
  }

  #pick(n: number): number | undefined {
    const ids = this.#ids();
    return ids.length === 0 ? undefined : ids[n % ids.length];
  }

  #picks(ns: number[]): number[] {
    const ids = this.#ids();
    if (ids.length === 0) return [];
    return [...new Set(ns.map((n) => ids[n % ids.length]))];
  }

  /** Rows of `count` tokens tagged `tag, tag+1, ...`: K all `t`, V all `-t`. */
  #rows(tags: number[]): { k: Float32Array; v: Float32Array } {
    const k = new Float32Array(tags.length * this.row);
    const v = new Float32Array(tags.length * this.row);
    tags.forEach((t, i) => {
      k.fill(t, i * this.row, (i + 1) * this.row);
      v.fill(-t, i * this.row, (i + 1) * this.row);
    });
    return { k, v };
  }

  #newTags(n: number): number[] {
    // f16 holds integers up to 2048 exactly.
    return Array.from({ length: n }, () => (this.#tag++ % 2000) + 1);
  }

  /** Pages the model's sequences use: one per distinct first cell of a page. */
  #modelPages(): number {
    const P = this.shape.pageSize;
    const firsts = new Set<Cell>();
    for (const s of this.model.values()) {
      for (let t = 0; t < s.cells.length; t += P) firsts.add(s.cells[t]);
    }
    return firsts.size;
  }

  /** Extends the model as the cache does: copy-on-write of a shared partial page, then cells. */
  #extendModel(ids: number[], n: number): { need: number; starts: number[]; added: Cell[][] } {
    const P = this.shape.pageSize;
    let need = 0;
    const starts: number[] = [];
    const added: Cell[][] = [];
    for (const id of ids) {
      const s = this.model.get(id)!;
      const len = s.cells.length;
      starts.push(len);
      if (n > 0 && len % P !== 0) {
        const first = len - (len % P);
        const shared = [...this.model.values()].some((o) =>
          o !== s && o.cells[first] === s.cells[first]
        );
        if (shared) {
          need++;
          for (let t = first; t < len; t++) s.cells[t] = { tags: s.cells[t].tags.slice() };
        }
      }
      need += Math.ceil((len + n) / P) - Math.ceil(len / P);
      const cells = Array.from({ length: n }, () => ({ tags: Array(LAYERS).fill(undefined) }));
      s.cells.push(...cells);
      added.push(cells);
    }
    return { need, starts, added };
  }

  /** Two sequences with a few tokens: most operations then have something to act on. */
  async setUp(): Promise<void> {
    for (const op of [{ kind: "add" }, { kind: "add" }] as Op[]) await this.apply(op);
    await this.apply({ kind: "append", pick: 0, n: 3 });
    await this.apply({ kind: "append", pick: 1, n: 1 });
  }

  async apply(op: Op): Promise<void> {
    const cache = this.cache;
    switch (op.kind) {
      case "add":
        this.model.set(cache.addSequence(), { cells: [] });
        return;
      case "fork": {
        const id = this.#pick(op.pick);
        if (id === undefined) return;
        this.model.set(cache.fork(id), { cells: this.model.get(id)!.cells.slice() });
        this.version++;
        return;
      }
      case "free": {
        const id = this.#pick(op.pick);
        if (id === undefined) return;
        cache.free(id);
        this.model.delete(id);
        this.version++;
        return;
      }
      case "extend":
      case "append": {
        const ids = op.kind === "extend" ? this.#picks(op.picks) : this.#picks([op.pick]);
        if (ids.length === 0) return;
        const free = cache.memory().pagesFree;
        const needed = cache.pagesNeeded(ids, op.n);
        // Predict on a copy of the model: out of pages changes nothing.
        const saved = new Map([...this.model].map(([id, s]) => [id, { cells: s.cells.slice() }]));
        const { need, starts, added } = this.#extendModel(ids, op.n);
        assert.equal(needed, need, `pages needed for ${ids} + ${op.n}`);
        const tags = op.kind === "append" ? this.#newTags(op.n) : [];
        const data = op.kind === "append" ? this.#rows(tags) : undefined;
        if (need > free) {
          for (const [id, s] of saved) this.model.get(id)!.cells = s.cells;
          const call = () =>
            op.kind === "extend"
              ? cache.extend(ids, op.n)
              : cache.append(ids[0], { k: [data!.k, data!.k], v: [data!.v, data!.v] });
          assert.throws(call, /^RangeError: Out of KV cache pages/);
          this.outcomes.outOfPages++;
          return;
        }
        this.version++;
        if (op.kind === "extend") {
          const slots = cache.extend(ids, op.n);
          ids.forEach((id, i) =>
            this.slots.push({
              slots,
              id,
              owner: this.model.get(id)!,
              start: starts[i],
              cells: added[i],
            })
          );
          // One record per sequence, all sharing the slots: a write uses the whole slots.
          return;
        }
        cache.append(ids[0], { k: [data!.k, data!.k], v: [data!.v, data!.v] });
        for (const [i, c] of added[0].entries()) c.tags.fill(tags[i]);
        assert.equal(cache.memory().pagesFree, free - need);
        return;
      }
      case "write": {
        if (this.slots.length === 0) return;
        const record = this.slots[op.pick % this.slots.length];
        // Every sequence of the slots must still own its rows.
        const group = this.slots.filter((r) => r.slots === record.slots);
        const valid = group.every((r) =>
          this.model.get(r.id) === r.owner &&
          r.cells.every((c, j) => r.owner.cells[r.start + j] === c)
        );
        const tags = this.#newTags(record.slots.rows.length);
        const data = this.#rows(tags);
        const write = async () => {
          if (op.gpu && this.#gpu) {
            const device = this.#gpu.device;
            const k = gpuBuffer(device, data.k);
            const v = gpuBuffer(device, data.v);
            const enc = device.createCommandEncoder();
            cache.encodeAppend(enc, { slots: record.slots, layer: op.layer, k, v });
            device.queue.submit([enc.finish()]);
            await device.queue.onSubmittedWorkDone();
            k.destroy();
            v.destroy();
          } else {
            cache.write(record.slots, op.layer, data);
          }
        };
        if (!valid) {
          await assert.rejects(write, /^RangeError: slots are stale/);
          this.outcomes.staleWrites++;
          return;
        }
        await write();
        this.outcomes.wrote++;
        if (op.gpu && this.#gpu) this.outcomes.gpuWrote++;
        let i = 0;
        for (const r of group) for (const c of r.cells) c.tags[op.layer] = tags[i++];
        return;
      }
      case "plan": {
        const ids = this.#picks(op.picks);
        if (ids.length === 0) return;
        const step = { seqs: ids, numHeads: this.shape.numHeads };
        const plan = () =>
          this.#gpu
            ? planForCache(cache, step, { grid: 8 })
            : planForCache(cache, step, { grid: 3, tileTokens: 16 });
        // A sequence of no tokens is an empty request: planned, its rows the merge identity.
        this.plans.push({ plan: plan(), version: this.version });
        if (op.runNow) {
          await this.apply({ kind: "run", pick: this.plans.length - 1, layer: op.layer });
        }
        return;
      }
      case "run": {
        if (this.plans.length === 0) return;
        const { plan, version } = this.plans[op.pick % this.plans.length];
        const q = randomFloats(
          seededRng(op.pick),
          plan.problem.numSeqs * plan.problem.numHeads * this.shape.headDim,
        );
        const execute = () => this.#execute(plan, op.layer, q);
        if (version !== this.version) {
          await assert.rejects(execute, /^RangeError: plan is stale/);
          this.outcomes.stalePlans++;
          return;
        }
        const out = await execute();
        this.outcomes.executed++;
        const ids = Array.from(plan.seqIds!);
        const stored = await Promise.all(ids.map((id) => cache.read(op.layer, id)));
        const cat = (key: "k" | "v") => {
          const parts = stored.map((s) => s[key]);
          const all = new (parts[0].constructor as Float32ArrayConstructor)(
            parts.reduce((n, p) => n + p.length, 0),
          );
          let o = 0;
          for (const p of parts) all.set(p as Float32Array, (o += p.length) - p.length);
          return all;
        };
        const ref = referenceAttention({
          q,
          k: cat("k"),
          v: cat("v"),
          seqLens: ids.map((id) => this.model.get(id)!.cells.length),
          numHeads: this.shape.numHeads,
          numKVHeads: this.shape.numKVHeads,
          headDim: this.shape.headDim,
          kvDtype: this.shape.kvDtype,
        });
        const err = relativeL2Error(out, ref.out);
        assert.ok(err < OUT_TOLERANCE, `plan of ${ids} on layer ${op.layer}: error ${err}`);
        return;
      }
    }
  }

  /** A plan's output on one layer: on the CPU, or encoded on the GPU. */
  async #execute(plan: PagedPlan, layer: number, q: Float32Array): Promise<Float32Array> {
    const gpu = this.#gpu;
    if (!gpu) return executePagedPlanOnCpu(plan, { q, ...this.cache.layerData(layer) }).out;
    const qb = gpuBuffer(gpu.device, q);
    const out = gpuBuffer(gpu.device, new Float32Array(q.length).fill(NaN));
    const enc = gpu.device.createCommandEncoder();
    this.#attention!.encode(enc, { plan, layer, q: qb, out });
    gpu.device.queue.submit([enc.finish()]);
    const got = await readF32(gpu.device, out, q.length);
    qb.destroy();
    out.destroy();
    return got;
  }

  /** Every sequence holds its model's tokens; every page is accounted for. */
  async check(): Promise<void> {
    const cache = this.cache;
    const P = this.shape.pageSize;
    const refs = new Map<number, number>();
    let tokens = 0;
    for (const [id, s] of this.model) {
      const table = cache.pageTable(id);
      assert.equal(cache.length(id), s.cells.length, `length of ${id}`);
      assert.equal(table.length, Math.ceil(s.cells.length / P), `pages of ${id}`);
      for (const p of table) refs.set(p, (refs.get(p) ?? 0) + 1);
      tokens += s.cells.length;
    }
    const m = cache.memory();
    assert.equal(m.pagesUsed, refs.size, "pages used = pages referenced");
    assert.equal(m.pagesUsed, this.#modelPages(), "pages used = the model's pages");
    assert.equal(m.pagesUsed + m.pagesFree, this.shape.numPages);
    assert.deepStrictEqual([m.sequences, m.tokens], [this.model.size, tokens]);
    for (const [p, n] of refs) assert.equal(cache.pageRefCount(p), n, `references of page ${p}`);
    for (let layer = 0; layer < LAYERS; layer++) {
      for (const [id, s] of this.model) {
        const want = s.cells.map((c) => c.tags[layer]);
        if (want.every((t) => t === undefined)) continue;
        const { k, v } = await this.#readRows(layer, id);
        want.forEach((t, i) => {
          if (t === undefined) return;
          const at = i * this.row;
          const label = `layer ${layer} sequence ${id} token ${i}`;
          assert.ok(k[at] === t && k[at + this.row - 1] === t, `${label}: k ${k[at]} != ${t}`);
          assert.ok(v[at] === -t && v[at + this.row - 1] === -t, `${label}: v ${v[at]} != ${-t}`);
        });
      }
    }
  }

  /** A sequence's rows of one layer as floats. */
  async #readRows(layer: number, id: number): Promise<{ k: Float32Array; v: Float32Array }> {
    const { k, v } = await this.cache.read(layer, id);
    if (k instanceof Float32Array) return { k, v: v as Float32Array };
    const f = (bits: Uint16Array) => new Float32Array(new Float16Array(bits.buffer));
    return { k: f(k as Uint16Array), v: f(v as Uint16Array) };
  }
}

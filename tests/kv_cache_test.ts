/**
 * The paged KV cache on the host: page tables, appends, forks with copy-on-write, freeing,
 * memory reports and out-of-pages errors, checked against a plain model of each sequence's rows.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { toBf16Bits } from "../mod.ts";
import { createKVCache, type KVCache, PagePool, planForCache } from "../runner.ts";
import { fcParams, randomFloats, seededRng } from "./helpers.ts";

const ROW = 2 * 8; // numKVHeads x headDim

function small(numPages = 8, pageSize = 4, numLayers = 2): KVCache {
  return createKVCache({ numLayers, numKVHeads: 2, headDim: 8, pageSize, numPages });
}

/** Rows whose every element encodes (layer, tag, token), so a misplaced row shows. */
function rows(layer: number, tag: number, from: number, count: number): Float32Array {
  const a = new Float32Array(count * ROW);
  for (let t = 0; t < count; t++) {
    a.fill(layer * 1e6 + tag * 1e3 + from + t, t * ROW, (t + 1) * ROW);
  }
  return a;
}

function appendTagged(cache: KVCache, seq: number, tag: number, count: number): void {
  const from = cache.length(seq);
  const layers = Array.from({ length: cache.numLayers }, (_, l) => l);
  cache.append(seq, {
    k: layers.map((l) => rows(l, tag, from, count)),
    v: layers.map((l) => rows(l, tag + 500, from, count)),
  });
}

Deno.test("page pool: allocation, reference counts and the free list", () => {
  const pool = new PagePool(3);
  assert.deepStrictEqual(pool.allocate(2), [0, 1]);
  assert.throws(() => pool.allocate(2), /Out of KV cache pages: 2 needed, 1 free of 3/);
  assert.equal(pool.free, 1);
  pool.retain(0);
  assert.equal(pool.shared(), 1);
  pool.release(0);
  pool.release(0);
  assert.equal(pool.refCount(0), 0);
  assert.throws(() => pool.release(0), RangeError);
  assert.throws(() => pool.retain(2), RangeError);
  assert.deepStrictEqual(pool.allocate(2), [0, 2]);
  assert.throws(() => new PagePool(0), RangeError);
  assert.throws(() => new PagePool("4" as unknown as number), TypeError);
});

Deno.test("appends fill pages in order and the rows read back per layer", async () => {
  const cache = small();
  const a = cache.addSequence();
  appendTagged(cache, a, 1, 3);
  appendTagged(cache, a, 2, 6);
  assert.equal(cache.length(a), 9);
  assert.equal(cache.pageTable(a).length, 3);
  for (let l = 0; l < 2; l++) {
    const { k, v } = await cache.read(l, a);
    const want = new Float32Array([...rows(l, 1, 0, 3), ...rows(l, 2, 3, 6)]);
    assert.deepStrictEqual(k, want);
    assert.equal(v[0], l * 1e6 + 501e3);
  }
  const m = cache.memory();
  assert.deepStrictEqual(
    [m.pagesUsed, m.pagesFree, m.pagesShared, m.tokens, m.sequences],
    [3, 5, 0, 9, 1],
  );
  assert.equal(m.bytesPerPage, 2 * 2 * 4 * ROW * 4);
  assert.equal(m.bytesUsed, 3 * m.bytesPerPage);
  assert.equal(m.bytesAllocated, 8 * m.bytesPerPage);
});

Deno.test("extend reserves rows in every layer; write fills one layer", () => {
  const cache = small(8, 4, 1);
  const a = cache.addSequence();
  const b = cache.addSequence();
  const slots = cache.extend([a, b], [2, 5]);
  assert.deepStrictEqual(Array.from(slots.counts), [2, 5]);
  const ta = cache.pageTable(a);
  const tb = cache.pageTable(b);
  assert.deepStrictEqual(Array.from(slots.rows), [
    ta[0] * 4,
    ta[0] * 4 + 1,
    ...[0, 1, 2, 3].map((i) => tb[0] * 4 + i),
    tb[1] * 4,
  ]);
  cache.write(slots, 0, { k: rows(0, 7, 0, 7), v: rows(0, 8, 0, 7) });
  const { k } = cache.layerData(0);
  assert.equal(k[(tb[1] * 4) * ROW], 7e3 + 6);
  assert.throws(() => cache.write(slots, 0, { k: rows(0, 7, 0, 6), v: rows(0, 8, 0, 7) }), {
    name: "RangeError",
    message: /k must have 112 elements \(7 tokens x 2 KV heads x 8\): got 96/,
  });
  assert.throws(() => cache.write(slots, 1, { k: rows(0, 7, 0, 7), v: rows(0, 8, 0, 7) }), {
    name: "RangeError",
    message: /layer must be an integer from 0 to 0: got 1/,
  });
});

Deno.test("forks share pages; appending to either copies the shared last page first", async () => {
  const cache = small(8, 4);
  const parent = cache.addSequence();
  appendTagged(cache, parent, 1, 6); // pages: full, half
  const child = cache.fork(parent);
  const pt = cache.pageTable(parent);
  assert.deepStrictEqual(cache.pageTable(child), pt);
  assert.equal(cache.memory().pagesShared, 2);
  assert.equal(cache.memory().pagesUsed, 2);
  assert.equal(cache.pagesNeeded([child], 1), 1); // the copy of the half page
  appendTagged(cache, child, 2, 1);
  const ct = cache.pageTable(child);
  assert.equal(ct[0], pt[0], "full prefix page stays shared");
  assert.notEqual(ct[1], pt[1], "the partially filled page was copied");
  assert.equal(cache.pageRefCount(pt[0]), 2);
  assert.equal(cache.pageRefCount(pt[1]), 1);
  // The parent appends in place now: its last page is no longer shared.
  assert.equal(cache.pagesNeeded([parent], 2), 0);
  appendTagged(cache, parent, 3, 2);
  assert.deepStrictEqual(cache.pageTable(parent), pt);
  for (let l = 0; l < 2; l++) {
    const p = await cache.read(l, parent);
    const c = await cache.read(l, child);
    assert.deepStrictEqual(p.k, new Float32Array([...rows(l, 1, 0, 6), ...rows(l, 3, 6, 2)]));
    assert.deepStrictEqual(c.k, new Float32Array([...rows(l, 1, 0, 6), ...rows(l, 2, 6, 1)]));
    assert.deepStrictEqual(c.v, new Float32Array([...rows(l, 501, 0, 6), ...rows(l, 502, 6, 1)]));
  }
  // A fork at a page boundary shares full pages only: no copy.
  const full = cache.addSequence();
  appendTagged(cache, full, 4, 8);
  const f2 = cache.fork(full);
  assert.equal(cache.pagesNeeded([f2, full], [1, 1]), 2);
  // Two forks of one half page extended together: only the first needs a copy.
  const g1 = cache.fork(child);
  assert.equal(cache.pagesNeeded([g1, child], [1, 1]), 1);
});

Deno.test("freeing returns pages, except those another sequence still shares", () => {
  const cache = small(8, 4);
  const a = cache.addSequence();
  appendTagged(cache, a, 1, 10); // 3 pages
  const b = cache.fork(a);
  appendTagged(cache, b, 2, 4); // copies page 3, then one more
  assert.equal(cache.memory().pagesUsed, 5);
  cache.free(a);
  assert.equal(cache.memory().pagesUsed, 4, "a's unshared last page returned");
  assert.equal(cache.memory().pagesShared, 0);
  cache.free(b);
  assert.deepStrictEqual(
    [cache.memory().pagesUsed, cache.memory().pagesFree, cache.memory().sequences],
    [0, 8, 0],
  );
  assert.throws(() => cache.free(b), /seq must be a live sequence id: got 1/);
  assert.throws(() => cache.length("0" as unknown as number), TypeError);
});

Deno.test("running out of pages throws a RangeError and changes nothing", async () => {
  const cache = small(4, 4);
  const a = cache.addSequence();
  const b = cache.addSequence();
  appendTagged(cache, a, 1, 6);
  const c = cache.fork(a);
  const before = {
    memory: cache.memory(),
    tables: [a, b, c].map((s) => Array.from(cache.pageTable(s))),
    lengths: [a, b, c].map((s) => cache.length(s)),
    version: cache.version,
  };
  // c needs a copy of the shared half page plus 2 new pages; b needs 1: 4 > 2 free.
  assert.throws(() => cache.extend([c, b], [7, 1]), {
    name: "RangeError",
    message:
      "Out of KV cache pages: extending 2 sequence(s) by 8 token(s) needs 4 page(s), 2 free of 4",
  });
  assert.throws(
    () =>
      cache.append(b, {
        k: [rows(0, 1, 0, 12), rows(1, 1, 0, 12)],
        v: [rows(0, 1, 0, 12), rows(1, 1, 0, 12)],
      }),
    /needs 3 page\(s\), 2 free of 4/,
  );
  assert.deepStrictEqual(
    {
      memory: cache.memory(),
      tables: [a, b, c].map((s) => Array.from(cache.pageTable(s))),
      lengths: [a, b, c].map((s) => cache.length(s)),
      version: cache.version,
    },
    before,
  );
  assert.deepStrictEqual((await cache.read(1, c)).k, rows(1, 1, 0, 6));
  // What fits still works afterwards.
  cache.extend([c, b], [2, 1]);
  assert.equal(cache.memory().pagesFree, 0);
});

Deno.test("bad options and arguments throw TypeError or RangeError naming the field", () => {
  const base = { numLayers: 1, numKVHeads: 1, headDim: 8, numPages: 4 };
  assert.throws(() => createKVCache({ ...base, pageSize: 12 }), {
    name: "RangeError",
    message: "pageSize must be a power of two from 1 to 65536: got 12",
  });
  assert.throws(() => createKVCache({ ...base, headDim: 12 }), /headDim must be a multiple of 8/);
  assert.throws(() => createKVCache({ ...base, numPages: 0 }), /numPages must be an integer/);
  assert.throws(() => createKVCache({ ...base, kvDtype: "f64" as "f32" }), RangeError);
  assert.throws(() => createKVCache({ ...base, numLayers: "2" as unknown as number }), TypeError);
  assert.throws(() => createKVCache({ ...base, device: {} as GPUDevice }), TypeError);
  const cache = createKVCache({ ...base, pageSize: 2 });
  const a = cache.addSequence();
  assert.throws(() => cache.extend([a, a], 1), /seqs must not repeat a sequence: got 0 twice/);
  // A plan without its options (the grid) says so.
  assert.throws(
    () => planForCache(cache, { seqs: [a], numHeads: 1 }, undefined as never),
    { name: "TypeError", message: "options must be an object with the plan's grid: got undefined" },
  );
  assert.throws(
    () => cache.extend([a], -1),
    /counts must be an integer from 0 to 4294967295: got -1/,
  );
  assert.throws(() => cache.extend([a], [1, 2]), TypeError);
  assert.throws(() => cache.extend([7], 1), /seqs\[0\] must be a live sequence id: got 7/);
  assert.throws(
    () => cache.append(a, { k: [new Float32Array(12)], v: [new Float32Array(12)] }),
    /k\[0\] must hold whole token rows of 8 elements: got 12/,
  );
  assert.throws(
    () => cache.append(a, { k: [new Uint16Array(8)], v: [new Uint16Array(8)] }),
    /k\[0\] must be a Float32Array \(kvDtype "f32"\)/,
  );
  assert.equal(cache.length(a), 0, "failed appends left the sequence empty");
  assert.throws(() => cache.encodeAppend({} as GPUCommandEncoder, {} as never), TypeError);
  assert.throws(() => cache.layerBuffers(0), /needs a GPU cache/);
  cache.dispose();
  assert.throws(() => cache.addSequence(), /KVCache is disposed/);
});

Deno.test("f16 and bf16 caches store the bits of the floats appended", async () => {
  for (const kvDtype of ["f16", "bf16"] as const) {
    const cache = createKVCache({
      numLayers: 1,
      numKVHeads: 1,
      headDim: 8,
      pageSize: 2,
      numPages: 4,
      kvDtype,
    });
    const a = cache.addSequence();
    const data = randomFloats(seededRng(3), 24);
    cache.append(a, { k: [data], v: [data] });
    const { k } = await cache.read(0, a);
    const want = kvDtype === "bf16"
      ? toBf16Bits(data)
      : new Uint16Array(new Float16Array(data).buffer);
    assert.deepStrictEqual(k, want, kvDtype);
  }
});

Deno.test("random add/append/fork/free sequences keep every sequence's rows (property)", () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("add" as const) }),
    fc.record({
      kind: fc.constant("append" as const),
      pick: fc.nat(),
      n: fc.integer({ min: 1, max: 9 }),
    }),
    fc.record({ kind: fc.constant("fork" as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant("free" as const), pick: fc.nat() }),
  );
  fc.assert(
    fc.property(
      fc.array(op, { minLength: 1, maxLength: 40 }),
      fc.constantFrom(1, 2, 4),
      (ops, pageSize) => {
        const cache = createKVCache({
          numLayers: 1,
          numKVHeads: 1,
          headDim: 8,
          pageSize,
          numPages: 24,
        });
        const model = new Map<number, number[]>(); // token tags of each sequence
        let tag = 1;
        for (const o of ops) {
          const ids = [...model.keys()];
          const id = ids[(o as { pick?: number }).pick! % Math.max(1, ids.length)];
          if (o.kind === "add") {
            model.set(cache.addSequence(), []);
          } else if (id === undefined) {
            continue;
          } else if (o.kind === "fork") {
            model.set(cache.fork(id), model.get(id)!.slice());
          } else if (o.kind === "free") {
            cache.free(id);
            model.delete(id);
          } else {
            const tags = Array.from({ length: o.n }, () => tag++);
            const k = new Float32Array(o.n * 8);
            tags.forEach((t, i) => k.fill(t, i * 8, i * 8 + 8));
            const free = cache.memory().pagesFree;
            const need = cache.pagesNeeded([id], o.n);
            if (need > free) {
              assert.throws(() => cache.append(id, { k: [k], v: [k] }), RangeError);
            } else {
              cache.append(id, { k: [k], v: [k] });
              model.get(id)!.push(...tags);
              assert.equal(cache.memory().pagesFree, free - need);
            }
          }
          // Pages in use are exactly those some sequence references, counted by reference.
          const refs = new Map<number, number>();
          for (const s of model.keys()) {
            for (const p of cache.pageTable(s)) refs.set(p, (refs.get(p) ?? 0) + 1);
          }
          assert.equal(cache.memory().pagesUsed, refs.size);
          for (const [p, n] of refs) assert.equal(cache.pageRefCount(p), n);
        }
        const { k } = cache.layerData(0);
        for (const [s, tags] of model) {
          const table = cache.pageTable(s);
          tags.forEach((t, i) => {
            const row = table[Math.floor(i / pageSize)] * pageSize + (i % pageSize);
            assert.equal(k[row * 8], t, `sequence ${s} token ${i}`);
          });
        }
      },
    ),
    fcParams(150),
  );
});

Deno.test("counts at or above 2^32 are refused, never wrapped, and change nothing", () => {
  const cache = small(8, 4, 1);
  const a = cache.addSequence();
  const b = cache.addSequence();
  const version = cache.version;
  for (const n of [2 ** 32, 2 ** 32 + 2, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
    assert.throws(() => cache.extend([a], n), {
      name: "RangeError",
      message: `counts must be an integer from 0 to 4294967295: got ${n}`,
    });
    assert.throws(() => cache.extend([a, b], [1, n]), {
      name: "RangeError",
      message: `counts[1] must be an integer from 0 to 4294967295: got ${n}`,
    });
    assert.throws(() => cache.pagesNeeded([a], n), RangeError);
  }
  assert.throws(() => cache.extend([a], Infinity), RangeError);
  assert.deepStrictEqual([cache.length(a), cache.length(b), cache.version], [0, 0, version]);
  assert.equal(cache.memory().pagesUsed, 0);
  // A count that fits but needs more pages than exist is the usual out-of-pages error.
  assert.throws(() => cache.extend([a], 2 ** 32 - 1), /Out of KV cache pages/);
});

Deno.test("a host cache too large to allocate names numPages and the bytes asked for", () => {
  const options = { numLayers: 2, numKVHeads: 8, headDim: 256, pageSize: 65536, numPages: 2 ** 20 };
  assert.throws(() => createKVCache(options), {
    name: "RangeError",
    message: new RegExp(
      `^numPages \\(1048576\\) of 65536 tokens needs ${
        2 * 2 * 2 ** 20 * 65536 * 8 * 256 * 4
      } bytes of host memory for K and V: `,
    ),
  });
});

Deno.test("stale slots are refused: a freed sequence's rows, rows moved by copy-on-write, other caches'", () => {
  const cache = small(4, 4, 1);
  const a = cache.addSequence();
  const stale = cache.extend([a], 2);
  cache.free(a);
  const b = cache.addSequence();
  const live = cache.extend([b], 2);
  assert.deepStrictEqual(Array.from(live.rows), Array.from(stale.rows), "b got a's old page");
  cache.write(live, 0, { k: rows(0, 1, 0, 2), v: rows(0, 2, 0, 2) });
  const before = cache.layerData(0).k.slice();
  assert.throws(() => cache.write(stale, 0, { k: rows(0, 9, 0, 2), v: rows(0, 9, 0, 2) }), {
    name: "RangeError",
    message: `slots are stale: sequence ${a} was freed after extend() reserved them`,
  });
  assert.deepStrictEqual(cache.layerData(0).k, before, "b's rows are untouched");

  // Copy-on-write moves a sequence's unwritten rows to a new page: its old slots are stale.
  const c = cache.addSequence();
  const early = cache.extend([c], 2);
  const d = cache.fork(c);
  cache.extend([c], 1); // c's shared half page is copied; d keeps the original
  assert.throws(() => cache.write(early, 0, { k: rows(0, 3, 0, 2), v: rows(0, 3, 0, 2) }), {
    name: "RangeError",
    message: new RegExp(
      `^slots are stale: token 0 of sequence ${c} moved to another row since extend\\(\\)`,
    ),
  });
  // Rows still shared with a fork (no copy yet) are the fork's tokens too: writing them is fine.
  const e = cache.addSequence();
  const shared = cache.extend([e], 1);
  const f = cache.fork(e);
  cache.write(shared, 0, { k: rows(0, 4, 0, 1), v: rows(0, 4, 0, 1) });
  assert.equal(cache.layerData(0).k[cache.pageTable(f)[0] * 4 * ROW], 4e3);
  // Slots of another cache.
  const other = small(4, 4, 1);
  const foreign = other.extend([other.addSequence()], 1);
  assert.throws(() => cache.write(foreign, 0, { k: rows(0, 5, 0, 1), v: rows(0, 5, 0, 1) }), {
    name: "TypeError",
    message: "slots must be the AppendSlots returned by this cache's extend()",
  });
  // Changing the returned rows does not redirect a write.
  const g = cache.addSequence();
  cache.free(d);
  const mine = cache.extend([g], 1);
  const fRow = cache.pageTable(f)[0] * 4;
  (mine.rows as Uint32Array)[0] = fRow;
  const fBefore = cache.layerData(0).k[fRow * ROW];
  cache.write(mine, 0, { k: rows(0, 6, 0, 1), v: rows(0, 6, 0, 1) });
  assert.equal(cache.layerData(0).k[fRow * ROW], fBefore);
  assert.equal(cache.layerData(0).k[cache.pageTable(g)[0] * 4 * ROW], 6e3);
});

Deno.test("KVCache is async-disposable", async () => {
  let escaped: KVCache | undefined;
  {
    await using cache = small();
    cache.addSequence();
    escaped = cache;
  }
  assert.throws(() => escaped!.addSequence(), /KVCache is disposed/);
});

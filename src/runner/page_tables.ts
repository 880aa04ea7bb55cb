/**
 * The page tables of a paged KV cache: its sequences (pages in token order, length), the page
 * pool with reference counts, forks that share pages and the copy-on-write of a shared partial
 * last page when a sequence grows. No K/V data here: the cache's storage moves the rows.
 *
 * @module
 */

import { PagePool } from "./page_pool.ts";
import type { AppendSlots, KVCacheMemory } from "./kv_cache_types.ts";

/** A sequence's pages and length. */
export interface Sequence {
  pages: Uint32Array;
  numPages: number;
  length: number;
}

/** What the cache recorded of slots it handed out: whose rows they are, and where. */
export interface SlotRecord {
  /** The sequence objects extended (a freed id never maps to its object again). */
  owners: Sequence[];
  /** Their ids, and the new tokens of each (copies: the caller's may be changed). */
  ids: Uint32Array;
  counts: Uint32Array;
  /** First new token of each sequence. */
  starts: Float64Array;
  /** The rows, as handed out (the caller's copy may be changed; this one is used). */
  rows: Uint32Array;
  /** Cache version at which the rows were last checked to still be their owners'. */
  checkedAt: number;
}

/** Largest count of new tokens: a sequence's length is a `u32` in the kernels. */
const MAX_COUNT = 0xffffffff;

/** What an extend of some sequences needs: pages, the sequences, counts and copy-on-writes. */
export interface ExtendPlan {
  need: number;
  list: Sequence[];
  n: Uint32Array;
  cow: Uint8Array;
  tokens: number;
}

/** Sequences and pages of one cache. */
export class PageTables {
  readonly pool: PagePool;
  readonly seqs: Map<number, Sequence> = new Map();
  readonly pageSize: number;
  readonly pageShift: number;
  nextId = 0;
  /** Bumped by every change to sequences (extend, fork, free). */
  version = 0;
  readonly numPages: number;
  /** The records of the slots `extend` handed out. */
  #slots = new WeakMap<AppendSlots, SlotRecord>();

  constructor(numPages: number, pageSize: number) {
    this.pool = new PagePool(numPages);
    this.numPages = numPages;
    this.pageSize = pageSize;
    this.pageShift = Math.log2(pageSize);
  }

  /** A live sequence by id; TypeError or RangeError naming `name` otherwise. */
  get(id: unknown, name = "seq"): Sequence {
    if (typeof id !== "number") throw new TypeError(`${name} must be a number: got ${typeof id}`);
    const s = this.seqs.get(id);
    if (!s) throw new RangeError(`${name} must be a live sequence id: got ${id}`);
    return s;
  }

  /** Adds an empty sequence; returns its id. */
  add(): number {
    const id = this.nextId++;
    this.seqs.set(id, { pages: new Uint32Array(8), numPages: 0, length: 0 });
    return id;
  }

  /** A new sequence sharing every page of `s`; returns its id. */
  fork(s: Sequence): number {
    for (let i = 0; i < s.numPages; i++) this.pool.retain(s.pages[i]);
    const id = this.nextId++;
    this.version++;
    this.seqs.set(id, { pages: s.pages.slice(), numPages: s.numPages, length: s.length });
    return id;
  }

  /** Drops sequence `id` (`s`), releasing its pages. */
  free(id: number, s: Sequence): void {
    for (let i = 0; i < s.numPages; i++) this.pool.release(s.pages[i]);
    this.seqs.delete(id);
    this.version++;
  }

  plan(
    seqs: ArrayLike<number>,
    counts: number | ArrayLike<number>,
  ): { need: number; list: Sequence[]; n: Uint32Array; cow: Uint8Array; tokens: number } {
    if (seqs === null || typeof seqs !== "object" || typeof seqs.length !== "number") {
      throw new TypeError(`seqs must be an array of sequence ids: got ${typeof seqs}`);
    }
    const m = seqs.length;
    const n = new Uint32Array(m);
    if (typeof counts === "number") {
      if (!Number.isInteger(counts) || counts < 0 || counts > MAX_COUNT) {
        throw new RangeError(`counts must be an integer from 0 to ${MAX_COUNT}: got ${counts}`);
      }
      n.fill(counts);
    } else {
      if (counts === null || typeof counts !== "object" || counts.length !== m) {
        throw new TypeError(`counts must be a number or an array of ${m} numbers`);
      }
      for (let i = 0; i < m; i++) {
        const c = counts[i];
        if (typeof c !== "number") {
          throw new TypeError(`counts[${i}] must be a number: got ${typeof c}`);
        }
        if (!Number.isInteger(c) || c < 0 || c > MAX_COUNT) {
          throw new RangeError(`counts[${i}] must be an integer from 0 to ${MAX_COUNT}: got ${c}`);
        }
        n[i] = c;
      }
    }
    const list: Sequence[] = [];
    const cow = new Uint8Array(m);
    const pending = new Map<number, number>();
    const P = this.pageSize;
    let need = 0;
    let tokens = 0;
    for (let i = 0; i < m; i++) {
      const s = this.get(seqs[i], `seqs[${i}]`);
      if (list.includes(s)) {
        throw new RangeError(`seqs must not repeat a sequence: got ${seqs[i]} twice`);
      }
      list.push(s);
      tokens += n[i];
      if (n[i] === 0) continue;
      if (s.length + n[i] > 0xffffffff) {
        throw new RangeError(`counts[${i}] must keep the sequence under 2^32 tokens: got ${n[i]}`);
      }
      need += Math.ceil((s.length + n[i]) / P) - s.numPages;
      if (s.length % P !== 0) {
        const last = s.pages[s.numPages - 1];
        const held = pending.get(last) ?? 0;
        if (this.pool.refCount(last) - held > 1) {
          cow[i] = 1;
          need++;
          pending.set(last, held + 1);
        }
      }
    }
    return { need, list, n, cow, tokens };
  }

  /**
   * Grows the planned sequences by their counts: copies a shared partial last page first
   * (`copyPage(from, to, tokens)` moves the rows), takes new pages, and returns the new tokens'
   * rows and each sequence's first new token.
   */
  grow(
    list: Sequence[],
    n: Uint32Array,
    cow: Uint8Array,
    tokens: number,
    copyPage: (from: number, to: number, tokens: number) => void,
  ): { rows: Uint32Array; starts: Float64Array } {
    const P = this.pageSize;
    const shift = this.pageShift;
    const rows = new Uint32Array(tokens);
    const starts = new Float64Array(list.length);
    this.version++;
    let r = 0;
    for (let i = 0; i < list.length; i++) {
      const s = list[i];
      starts[i] = s.length;
      if (cow[i]) {
        const old = s.pages[s.numPages - 1];
        const [page] = this.pool.allocate(1);
        copyPage(old, page, s.length % P);
        this.pool.release(old);
        s.pages[s.numPages - 1] = page;
      }
      const end = s.length + n[i];
      const pagesAfter = Math.ceil(end / P);
      if (pagesAfter > s.numPages) {
        if (pagesAfter > s.pages.length) {
          const grown = new Uint32Array(Math.max(pagesAfter, 2 * s.pages.length));
          grown.set(s.pages.subarray(0, s.numPages));
          s.pages = grown;
        }
        const fresh = this.pool.allocate(pagesAfter - s.numPages);
        s.pages.set(fresh, s.numPages);
        s.numPages = pagesAfter;
      }
      for (let t = s.length; t < end; t++) {
        rows[r++] = s.pages[t >>> shift] * P + (t & (P - 1));
      }
      s.length = end;
    }
    return { rows, starts };
  }

  /** Throws RangeError when slots' rows are no longer their sequences' (freed, or moved). */
  /** Hands out the slots of an `extend`, keeping their record (see `slotRows`). */
  issue(
    seqs: ArrayLike<number>,
    owners: Sequence[],
    counts: Uint32Array,
    starts: Float64Array,
    rows: Uint32Array,
  ): AppendSlots {
    const ids = Uint32Array.from(seqs);
    const slots: AppendSlots = { seqs: ids.slice(), counts: counts.slice(), rows: rows.slice() };
    this.#slots.set(slots, { owners, ids, counts, starts, rows, checkedAt: this.version });
    return slots;
  }

  /**
   * The rows of slots from this cache's `extend()`, checked to still be their sequences' rows:
   * a sequence freed since (its pages may be another's now), or rows moved by a copy-on-write
   * since, make the slots stale. Checked again only after the cache changed.
   */
  slotRows(slots: AppendSlots): Uint32Array {
    const record = typeof slots === "object" && slots !== null ? this.#slots.get(slots) : undefined;
    if (!record) {
      throw new TypeError("slots must be the AppendSlots returned by this cache's extend()");
    }
    if (record.checkedAt === this.version) return record.rows;
    this.checkRows(record);
    record.checkedAt = this.version;
    return record.rows;
  }

  /** Memory use of the pool and sequences, at `bytesPerPage` (see `KVCache.memory`). */
  memory(bytesPerPage: number): KVCacheMemory {
    let tokens = 0;
    for (const s of this.seqs.values()) tokens += s.length;
    return {
      pageSize: this.pageSize,
      pagesTotal: this.numPages,
      pagesUsed: this.pool.used,
      pagesFree: this.pool.free,
      pagesShared: this.pool.shared(),
      sequences: this.seqs.size,
      tokens,
      bytesPerPage,
      bytesAllocated: bytesPerPage * this.numPages,
      bytesUsed: bytesPerPage * this.pool.used,
    };
  }

  checkRows(record: SlotRecord): void {
    const P = this.pageSize;
    const shift = this.pageShift;
    const { owners, ids, counts, starts, rows } = record;
    let r = 0;
    for (let i = 0; i < owners.length; i++) {
      const s = owners[i];
      if (this.seqs.get(ids[i]) !== s) {
        throw new RangeError(
          `slots are stale: sequence ${ids[i]} was freed after extend() reserved them`,
        );
      }
      for (let j = 0; j < counts[i]; j++, r++) {
        const t = starts[i] + j;
        if (s.pages[t >>> shift] * P + (t & (P - 1)) !== rows[r]) {
          throw new RangeError(
            `slots are stale: token ${j} of sequence ${
              ids[i]
            } moved to another row since extend() (a copy-on-write after a fork); write rows before extending a forked sequence again`,
          );
        }
      }
    }
  }
}

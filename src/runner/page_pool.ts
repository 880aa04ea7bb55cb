/**
 * The page allocator of a paged KV cache: a fixed number of pages, a free list and a reference
 * count per page (forked sequences share their prefix pages). It only hands out page numbers;
 * the storage behind them (one K and one V buffer per layer) belongs to the cache.
 *
 * @module
 */

/**
 * Page numbers with reference counts. Pages are handed out lowest first, so a fresh pool fills
 * from the start of its buffers.
 *
 * @example
 * ```ts
 * import { PagePool } from "@lean/attention/runner";
 * const pool = new PagePool(4);
 * const [a, b] = pool.allocate(2);
 * pool.retain(a);
 * pool.release(a);
 * console.log(pool.refCount(a), pool.free); // 1 2
 * pool.release(a);
 * pool.release(b);
 * console.log(pool.free); // 4
 * ```
 */
export class PagePool {
  #refs: Uint32Array;
  /** Free page numbers as a stack; the next page handed out is on top. */
  #freeList: Uint32Array;
  #free: number;

  /** A pool of `numPages` pages, all free. */
  constructor(numPages: number) {
    if (typeof numPages !== "number") {
      throw new TypeError(`numPages must be a number: got ${typeof numPages}`);
    }
    if (!Number.isInteger(numPages) || numPages < 1 || numPages > 0x7fffffff) {
      throw new RangeError(`numPages must be a positive integer: got ${numPages}`);
    }
    this.#refs = new Uint32Array(numPages);
    this.#freeList = new Uint32Array(numPages);
    for (let i = 0; i < numPages; i++) this.#freeList[i] = numPages - 1 - i;
    this.#free = numPages;
  }

  /** Pages in the pool. */
  get size(): number {
    return this.#refs.length;
  }

  /** Pages free now. */
  get free(): number {
    return this.#free;
  }

  /** Pages in use (referenced at least once). */
  get used(): number {
    return this.#refs.length - this.#free;
  }

  /** References held on a page (0 when it is free). */
  refCount(page: number): number {
    return this.#refs[page] ?? 0;
  }

  /**
   * Takes `count` free pages, each with one reference. Throws `RangeError` (and takes nothing)
   * when fewer are free.
   */
  allocate(count: number): number[] {
    if (count > this.#free) {
      throw new RangeError(
        `Out of KV cache pages: ${count} needed, ${this.#free} free of ${this.#refs.length}`,
      );
    }
    const pages: number[] = [];
    for (let i = 0; i < count; i++) {
      const page = this.#freeList[--this.#free];
      this.#refs[page] = 1;
      pages.push(page);
    }
    return pages;
  }

  /** Adds a reference to a page in use. */
  retain(page: number): void {
    if (this.refCount(page) === 0) {
      throw new RangeError(`page must be in use to be retained: got free page ${page}`);
    }
    this.#refs[page]++;
  }

  /** Drops a reference; the page returns to the free list when none is left. */
  release(page: number): void {
    if (this.refCount(page) === 0) {
      throw new RangeError(`page must be in use to be released: got free page ${page}`);
    }
    if (--this.#refs[page] === 0) this.#freeList[this.#free++] = page;
  }

  /** Pages referenced more than once (shared by forked sequences). */
  shared(): number {
    let n = 0;
    for (let i = 0; i < this.#refs.length; i++) if (this.#refs[i] > 1) n++;
    return n;
  }
}

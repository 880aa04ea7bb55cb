/**
 * Cache identity tokens: a paged plan names the cache it was made from by a number, so the plan
 * stays plain data, and the encoder and the CPU executor find the cache again by that number.
 * The registry holds caches weakly: a plan does not keep its cache alive.
 *
 * @module
 */

import type { KVCache } from "./kv_cache.ts";

const caches = new Map<number, WeakRef<KVCache>>();
const forget = new FinalizationRegistry<number>((id) => caches.delete(id));
let nextId = 1;

/** Gives a new cache its identity token. */
export function registerCache(cache: KVCache): number {
  const id = nextId++;
  caches.set(id, new WeakRef(cache));
  forget.register(cache, id);
  return id;
}

/** The cache of an identity token, or `undefined` once it is gone. */
export function cacheById(id: number): KVCache | undefined {
  return caches.get(id)?.deref();
}

/**
 * Bind groups cached by the identity of the buffers they bind, held weakly. A bind group keeps
 * its buffers alive (their memory, whatever happens to their JavaScript objects), so a cache that
 * held its groups strongly would keep every buffer a runner ever passed: here an entry lives only
 * as long as every buffer of its key is reachable from elsewhere, and goes with the first of them
 * to be collected.
 *
 * @module
 */

/** One level of the key: a weak map per buffer, then the groups of the full key by tag. */
interface Level {
  next: WeakMap<object, Level> | undefined;
  groups: Map<string, GPUBindGroup> | undefined;
}

/** Tags kept per buffer combination (older ones are dropped first). */
const TAGS_PER_KEY = 4;

/**
 * A weak cache of bind groups keyed by buffers (by identity, in order) and a tag (what else the
 * group depends on: a layout, internal buffers' generations). Counts the groups it made that are
 * still alive, through a `FinalizationRegistry`: a count that stays flat while a runner keeps
 * making new buffers shows nothing is retained.
 *
 * @example
 * ```ts
 * import { BindGroupCache } from "./bind_group_cache.ts";
 * const cache = new BindGroupCache();
 * const q = {} as GPUBuffer, out = {} as GPUBuffer;
 * const group = {} as GPUBindGroup;
 * cache.set([q, out], "layer 0", group);
 * console.log(cache.get([q, out], "layer 0") === group, cache.get([out, q], "layer 0")); // true undefined
 * console.log(cache.created, cache.live); // 1 1
 * ```
 */
export class BindGroupCache {
  #root: WeakMap<object, Level> = new WeakMap();
  #created = 0;
  #live = 0;
  #registry: FinalizationRegistry<undefined>;

  constructor() {
    this.#registry = new FinalizationRegistry(() => this.#live--);
  }

  /** Bind groups made (stored) so far. */
  get created(): number {
    return this.#created;
  }

  /** Bind groups stored here that have not been garbage-collected yet (cached or not). */
  get live(): number {
    return this.#live;
  }

  #level(keys: readonly object[], create: boolean): Level | undefined {
    let map = this.#root;
    let level: Level | undefined;
    for (let i = 0; i < keys.length; i++) {
      if (level) {
        if (!level.next) {
          if (!create) return undefined;
          level.next = new WeakMap();
        }
        map = level.next;
      }
      level = map.get(keys[i]);
      if (!level) {
        if (!create) return undefined;
        level = { next: undefined, groups: undefined };
        map.set(keys[i], level);
      }
    }
    return level;
  }

  /** The group stored for these buffers and tag, if its buffers are all still alive. */
  get(keys: readonly object[], tag: string): GPUBindGroup | undefined {
    return this.#level(keys, false)?.groups?.get(tag);
  }

  /** Stores a group for these buffers and tag. */
  set(keys: readonly object[], tag: string, group: GPUBindGroup): void {
    const level = this.#level(keys, true)!;
    const groups = level.groups ??= new Map();
    groups.delete(tag);
    groups.set(tag, group);
    if (groups.size > TAGS_PER_KEY) groups.delete(groups.keys().next().value!);
    this.#created++;
    this.#live++;
    this.#registry.register(group, undefined);
  }

  /** Forgets every group (they stay counted as live until they are collected). */
  clear(): void {
    this.#root = new WeakMap();
  }
}

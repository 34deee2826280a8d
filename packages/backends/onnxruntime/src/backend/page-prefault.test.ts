import { CpuKvCache, Float16KvCache, type HostKvCache, type KvElements } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { PagePrefault } from './page-prefault.js';

/** Records the element indices read from each layer's keys and values (one proxy per storage array, so identity holds). */
function watchReads(cache: HostKvCache): Map<string, Set<number>> {
  const reads = new Map<string, Set<number>>();
  const proxies = new Map<KvElements, KvElements>();
  const watch = (name: string, data: KvElements): KvElements => {
    let p = proxies.get(data);
    if (!p) {
      const seen = new Set<number>();
      reads.set(name, seen);
      p = new Proxy(data, {
        get: (target, key) => {
          if (typeof key === 'string' && /^\d+$/.test(key)) seen.add(Number(key));
          const v = Reflect.get(target, key, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      proxies.set(data, p);
    }
    return p;
  };
  const keys = cache.keys.bind(cache);
  const values = cache.values.bind(cache);
  cache.keys = ((l: number) => watch(`k${l}`, keys(l))) as typeof cache.keys;
  cache.values = ((l: number) => watch(`v${l}`, values(l))) as typeof cache.values;
  return reads;
}

/** The pages (of `pageElements` elements) of rows [from, to) of every head that `seen` touched none of. */
function unreadPages(cache: HostKvCache, seen: Set<number>, from: number, to: number, pageElements: number): number {
  let missing = 0;
  for (let h = 0; h < cache.layout.numKvHeads; h++) {
    for (let i = cache.offset(h, from); i < cache.offset(h, to); i += pageElements) {
      const page = [...Array(pageElements).keys()].some((j) => seen.has(i + j));
      if (!page) missing++;
    }
  }
  return missing;
}

describe('PagePrefault', () => {
  // A row of one head is one 4 KiB page of float32 (1024 values).
  const layout = { numLayers: 2, numKvHeads: 3, headDim: 1024 };
  const rowBytes = 2 * 2 * 3 * 1024 * 4;

  it('reads one element in every page of the rows past those read, every head, layer, keys and values, within the budget', () => {
    const cache = new CpuKvCache(layout, 8);
    const reads = watchReads(cache);
    const prefault = new PagePrefault();
    // 2 valid rows count as read; a budget of 3 rows reads rows 2..4.
    expect(prefault.readRows(cache, 2)).toBe(2);
    expect(prefault.advance(cache, 2, 3 * rowBytes)).toBe(3 * rowBytes);
    expect(prefault.readRows(cache, 2)).toBe(5);
    expect(prefault.done(cache, 2)).toBe(false);
    for (const name of ['k0', 'v0', 'k1', 'v1']) {
      const seen = reads.get(name)!;
      expect(unreadPages(cache, seen, 2, 5, 1024), name).toBe(0);
      // Nothing outside those rows: the valid ones were written, the rest is for later.
      expect(unreadPages(cache, seen, 0, 2, 1024), name).toBe(3 * 2);
      expect(unreadPages(cache, seen, 5, 8, 1024), name).toBe(3 * 3);
    }
    // The rest, then nothing left to read.
    expect(prefault.advance(cache, 2, 100 * rowBytes)).toBe(3 * rowBytes);
    expect(prefault.done(cache, 2)).toBe(true);
    expect(prefault.advance(cache, 2, 100 * rowBytes)).toBe(0);
    for (const name of ['k0', 'v0', 'k1', 'v1']) expect(unreadPages(cache, reads.get(name)!, 2, 8, 1024)).toBe(0);
  });

  it('a budget under one row still reads one; valid rows past those read count as read', () => {
    const cache = new CpuKvCache(layout, 8);
    const prefault = new PagePrefault();
    expect(prefault.advance(cache, 0, 1)).toBe(rowBytes);
    expect(prefault.readRows(cache, 0)).toBe(1);
    expect(prefault.readRows(cache, 6)).toBe(6);
    expect(prefault.done(cache, 8)).toBe(true);
  });

  it('new storage (a reserve that grew the cache) starts again from its valid rows', () => {
    const cache = new CpuKvCache(layout, 8);
    const prefault = new PagePrefault();
    prefault.advance(cache, 0, 100 * rowBytes);
    expect(prefault.done(cache, 0)).toBe(true);
    cache.reserve(40);
    expect(cache.capacity).toBeGreaterThan(8);
    expect(prefault.readRows(cache, 0)).toBe(0);
    expect(prefault.done(cache, 0)).toBe(false);
  });

  it('float16 storage: pages of 2048 elements', () => {
    const cache = new Float16KvCache({ numLayers: 1, numKvHeads: 2, headDim: 2048 }, 4);
    const reads = watchReads(cache);
    const prefault = new PagePrefault();
    expect(prefault.advance(cache, 1, 100 * 2 ** 20)).toBe(3 * 2 * 2 * 2048 * 2);
    expect(unreadPages(cache, reads.get('k0')!, 1, 4, 2048)).toBe(0);
    // One read per page (and each head's last element), not one per element.
    expect(reads.get('k0')!.size).toBeLessThanOrEqual(2 * (3 + 1));
  });
});

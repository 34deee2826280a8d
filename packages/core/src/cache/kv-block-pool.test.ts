import { describe, expect, it } from 'vitest';
import { CacheError } from '../errors.js';
import { makeRegime } from '../rope/regime.js';
import { CpuKvCache } from './cpu-kv-cache.js';
import { KvBlockPool } from './kv-block-pool.js';

const floats = (n: number) => new Float32Array(n);
const LAYOUT = { numLayers: 2, numKvHeads: 3, headDim: 4 };
const A = makeRegime('A', 'static', Float32Array.from([1, 0.1]), Float64Array.from([1, 0.1]), 1);

describe('KvBlockPool', () => {
  it('hands a given-back block out again (marked dirty, its old values kept), within 1/8 above the length asked for', () => {
    const pool = new KvBlockPool(floats, 1 << 20);
    const a = pool.allocate(800);
    expect(a.dirty).toBeUndefined();
    a.view.fill(7);
    a.free();
    a.free(); // idempotent: given back once
    expect(pool.stats).toEqual({ hits: 0, misses: 1, pooledBytes: 3200, pooledBlocks: 1 });
    // 701 would waste more than 1/8 of it: a fresh block (and the shorter request drops nothing).
    const fresh = pool.allocate(701);
    expect(fresh.dirty).toBeUndefined();
    expect(pool.stats.pooledBlocks).toBe(1);
    const b = pool.allocate(720);
    expect(b.dirty).toBe(true);
    expect(b.view.length).toBe(720);
    expect(b.view[0]).toBe(7);
    expect(b.view.buffer).toBe(a.view.buffer);
    expect(pool.stats).toMatchObject({ hits: 1, misses: 2, pooledBytes: 0, pooledBlocks: 0 });
  });

  it('keeps at most maxBytes, dropping the oldest; a miss drops the blocks shorter than it asked for', () => {
    const pool = new KvBlockPool(floats, 10_000);
    const blocks = [1000, 1000, 1000].map((n) => pool.allocate(n));
    for (const b of blocks) b.free();
    // 3 × 4000 bytes do not fit 10 000: the first one went.
    expect(pool.stats).toMatchObject({ pooledBytes: 8000, pooledBlocks: 2 });
    const big = pool.allocate(2000);
    expect(big.dirty).toBeUndefined();
    expect(pool.stats).toMatchObject({ pooledBytes: 0, pooledBlocks: 0 });
    // A block larger than the whole budget is never kept.
    const huge = pool.allocate(5000);
    huge.free();
    expect(pool.stats.pooledBlocks).toBe(0);
    // clear() lets go of everything; maxBytes 0 keeps nothing.
    big.free();
    pool.clear();
    expect(pool.stats.pooledBytes).toBe(0);
    const none = new KvBlockPool(floats, 0);
    none.allocate(4).free();
    expect(none.stats.pooledBlocks).toBe(0);
    // close() also stops keeping what is given back afterwards.
    const late = pool.allocate(100);
    pool.allocate(100).free();
    pool.close();
    expect(pool.stats.pooledBlocks).toBe(0);
    late.free();
    expect(pool.stats.pooledBlocks).toBe(0);
  });

  it('refuses a maxBytes that is not a non-negative finite number', () => {
    for (const bad of [-1, Number.NaN, Infinity]) {
      expect(() => new KvBlockPool(floats, bad)).toThrowError(CacheError);
      try {
        new KvBlockPool(floats, bad);
      } catch (e) {
        expect((e as CacheError).code).toBe('bad-pool-size');
      }
    }
  });

  it('hands a block mostly left unwritten fresh memory (untouched pages read as zeros for free), whatever it holds', () => {
    const pool = new KvBlockPool(floats, 1 << 20);
    pool.allocate(800).free();
    const sparse = pool.allocate(800, 0, 399);
    expect(sparse.dirty).toBeUndefined();
    // Nothing was dropped for it: a mostly written request still finds the block.
    expect(pool.stats.pooledBlocks).toBe(1);
    expect(pool.allocate(800, 0, 400).dirty).toBe(true);
  });

  it('caches on a pool zero every row past the ones they copy in: a reused block shows nothing of its last cache', () => {
    const pool = new KvBlockPool(floats, 1 << 20);
    const { numLayers, numKvHeads, headDim } = LAYOUT;
    const poison = (rows: number) => {
      const old = new CpuKvCache(LAYOUT, rows, pool);
      for (let l = 0; l < numLayers; l++) {
        old.keys(l).fill(Number.NaN);
        old.values(l).fill(Infinity);
      }
      old.dispose();
    };
    const write = (cache: CpuKvCache, rows: number) => {
      cache.reserve(rows);
      const from = cache.length;
      for (let l = 0; l < numLayers; l++) {
        for (let h = 0; h < numKvHeads; h++) {
          for (let i = from; i < from + rows; i++) {
            cache.keys(l).fill(1 + i, cache.offset(h, i), cache.offset(h, i) + headDim);
            cache.values(l).fill(-1 - i, cache.offset(h, i), cache.offset(h, i) + headDim);
          }
        }
      }
      cache.commit(Array.from({ length: rows }, (_, t) => from + t), Array.from({ length: rows }, (_, t) => from + t), A);
    };
    const expectRows = (cache: CpuKvCache) => {
      for (let l = 0; l < numLayers; l++) {
        for (let h = 0; h < numKvHeads; h++) {
          for (let i = 0; i < cache.capacity; i++) {
            const want = i < cache.length ? [1 + i, -1 - i] : [0, 0];
            expect([cache.keys(l)[cache.offset(h, i)], cache.values(l)[cache.offset(h, i)]]).toEqual(want);
          }
        }
      }
    };
    // A full cache of 4 rows grows to 8 on a poisoned block: rows 4–7 read as zeros.
    poison(8);
    const c = new CpuKvCache(LAYOUT, 4, pool);
    write(c, 4);
    const hits = pool.stats.hits;
    c.reserve(1);
    expect(pool.stats.hits).toBe(hits + 2 * numLayers);
    expect(c.capacity).toBe(8);
    expectRows(c);
    // A clone of its 8 rows with room for 9 on poisoned 10-row blocks (within the slack).
    write(c, 4);
    poison(10);
    const k = c.clone({ capacity: 9 });
    expect(k.keys(0).buffer.byteLength).toBe(numKvHeads * 10 * headDim * 4);
    expect(k.capacity).toBe(9);
    expectRows(k);
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import { CacheError } from '../errors.js';
import { type RopeRegime, makeRegime } from '../rope/regime.js';
import {
  GpuLikeCache,
  type TinyModel,
  appendRows,
  maxAbsDiff,
  randomIds,
  snapshot,
  tinyLongRope,
} from '@ropeswitch/testkit';
import { CpuKvCache } from './cpu-kv-cache.js';
import type { KvCache, KvCacheLayout } from './kv-cache.js';

const LAYOUT: KvCacheLayout = { numLayers: 2, numKvHeads: 2, headDim: 4 };
const regime = (id: string): RopeRegime => makeRegime(id, 'static', Float32Array.from([1, 0.1]), Float64Array.from([1, 0.1]), 1);
const A = regime('A');
const B = regime('B');

/** Appends `n` rows the way a backend does (reserve, write past `length`, commit); values derive from `seed`. */
function append(cache: CpuKvCache, n: number, r: RopeRegime, seed: number): void {
  appendRows(cache, n, r, (l, h, i, d, key) => (key ? 1 : -1) * (seed + 1000 * l + 100 * h + i + d / 10), (index) => seed + index);
}

function filled(n: number, r: RopeRegime, seed: number, layout = LAYOUT): CpuKvCache {
  const c = new CpuKvCache(layout, 2);
  append(c, n, r, seed);
  return c;
}

function expectCacheError(fn: () => void, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(CacheError);
  expect((caught as CacheError).code).toBe(code);
}

describe('CpuKvCache.replaceWith', () => {
  it('takes over the contents of the other cache and keeps its own identity', () => {
    const live = filled(3, A, 0);
    const rebuilt = filled(7, B, 50);
    const expected = snapshot(rebuilt);
    const holder = { cache: live as KvCache };
    live.replaceWith(rebuilt);
    expect(holder.cache).toBe(live);
    expect(snapshot(live)).toEqual(expected);
    expect(live.length).toBe(7);
    expect(live.uniformRegime()).toBe(B);
    expect(live.capacity).toBeGreaterThanOrEqual(7);
    expect(live.disposed).toBe(false);
  });

  it('disposes the other cache: any use of it throws CacheError disposed', () => {
    const live = filled(2, A, 0);
    const other = filled(4, B, 9);
    live.replaceWith(other);
    expect(other.disposed).toBe(true);
    expect(other.byteLength).toBe(0);
    expectCacheError(() => other.tokens(), 'disposed');
    expectCacheError(() => other.keys(0), 'disposed');
    // The live cache does not share storage the disposed one could still reach.
    expect(live.tokens()).toEqual(Int32Array.from([9, 10, 11, 12]));
  });

  it('replacing with itself changes nothing', () => {
    const live = filled(5, A, 3);
    const before = snapshot(live);
    live.replaceWith(live);
    expect(live.disposed).toBe(false);
    expect(snapshot(live)).toEqual(before);
  });

  it('works with an empty other cache (the sequence is emptied)', () => {
    const live = filled(5, A, 3);
    live.replaceWith(new CpuKvCache(LAYOUT));
    expect(live.length).toBe(0);
    expect(live.regimeSpans()).toEqual([]);
    expect(live.uniformRegime()).toBeUndefined();
  });

  it('keeps mixed regime spans of the other cache', () => {
    const live = filled(1, A, 0);
    const other = filled(3, A, 0);
    append(other, 2, B, 0);
    live.replaceWith(other);
    expect(live.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([
      [0, 3, 'A'],
      [3, 5, 'B'],
    ]);
  });

  it('rejects a cache of another kind with CacheError foreign-cache and changes neither', () => {
    const live = filled(3, A, 0);
    const before = snapshot(live);
    const foreign = new GpuLikeCache(filled(4, B, 1));
    expectCacheError(() => live.replaceWith(foreign), 'foreign-cache');
    expect(snapshot(live)).toEqual(before);
    expect(foreign.disposed).toBe(false);
    expect(foreign.length).toBe(4);
  });

  it('rejects a cache of another layout with CacheError cache-layout and changes neither', () => {
    const live = filled(3, A, 0);
    const before = snapshot(live);
    for (const layout of [
      { ...LAYOUT, numLayers: 3 },
      { ...LAYOUT, numKvHeads: 1 },
      { ...LAYOUT, headDim: 8 },
    ]) {
      const other = filled(2, B, 1, layout);
      expectCacheError(() => live.replaceWith(other), 'cache-layout');
      expect(other.disposed).toBe(false);
      expect(other.length).toBe(2);
    }
    expect(snapshot(live)).toEqual(before);
  });

  it('rejects a disposed other cache, and a disposed cache cannot take over another', () => {
    const live = filled(3, A, 0);
    const gone = filled(2, B, 1);
    gone.dispose();
    expectCacheError(() => live.replaceWith(gone), 'disposed');
    expect(live.length).toBe(3);

    const other = filled(2, B, 1);
    live.dispose();
    expectCacheError(() => live.replaceWith(other), 'disposed');
    expect(other.disposed).toBe(false);
  });

  it('keeps working after the swap: appends grow the adopted storage, crop and clone behave', () => {
    const live = filled(3, A, 0);
    const other = filled(4, B, 20);
    live.replaceWith(other);
    const capacity = live.capacity;
    append(live, capacity, A, 0); // forces a grow of the adopted arrays
    expect(live.length).toBe(4 + capacity);
    expect(Array.from(live.tokens().subarray(0, 4))).toEqual([20, 21, 22, 23]);
    expect(live.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([
      [0, 4, 'B'],
      [4, 4 + capacity, 'A'],
    ]);
    const copy = live.clone();
    live.crop(2);
    expect(live.length).toBe(2);
    expect(copy.length).toBe(4 + capacity);
    expect(live.uniformRegime()).toBe(B);
  });
});

describe('replaceWith under a real backend', () => {
  let model: TinyModel;
  beforeAll(async () => {
    model = await tinyLongRope();
  });

  it('a cache that took over a rebuilt one decodes exactly like the rebuilt one would', async () => {
    const ids = randomIds(4, 14, model.vocab);
    const { backend, schedule } = model;
    const positions = (from: number, n: number) => Int32Array.from({ length: n }, (_, i) => from + i);
    const fill = async (cache: KvCache, n: number) =>
      backend.forward({ rows: [{ tokens: ids.slice(0, n), positions: positions(0, n), cache, regime: schedule.regimeFor(17) }] });

    const live = backend.createCache();
    await backend.forward({ rows: [{ tokens: ids.slice(0, 5), positions: positions(0, 5), cache: live, regime: schedule.regimeFor(5) }] });
    const rebuilt = backend.createCache();
    await fill(rebuilt, 12);
    const reference = backend.createCache();
    await fill(reference, 12);

    live.replaceWith(rebuilt);
    expect(rebuilt.disposed).toBe(true);
    const step = (cache: KvCache) =>
      backend.forward({ rows: [{ tokens: ids.slice(12, 14), positions: positions(12, 2), cache, regime: schedule.regimeFor(17), logits: 2 }] });
    const a = (await step(live)).rows[0]!.data;
    const b = (await step(reference)).rows[0]!.data;
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(snapshot(live)).toEqual(snapshot(reference));
  });
});

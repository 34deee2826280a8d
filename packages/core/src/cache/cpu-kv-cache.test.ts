import { describe, expect, it } from 'vitest';
import type { RopePairing } from '../config/model-config.js';
import { CacheError } from '../errors.js';
import { applyRotary } from '../rope/apply-rotary.js';
import { type RopeRegime, makeRegime } from '../rope/regime.js';
import { RerotationTableCache } from '../rope/rerotation-table-cache.js';
import { rotaryTables } from '../rope/rotary-tables.js';
import { CpuKvCache } from './cpu-kv-cache.js';
import type { KvCacheLayout } from './kv-cache.js';
import { rerotateCpuKeys } from './rerotate-keys.js';

const LAYOUT: KvCacheLayout = { numLayers: 2, numKvHeads: 3, headDim: 4 };

const regime = (id: string, invFreq: number[] = [1, 0.1], m = 1): RopeRegime =>
  makeRegime(id, 'static', Float32Array.from(invFreq), Float64Array.from(Float32Array.from(invFreq)), m);

const A = regime('A');
const B = regime('B', [0.5, 0.01], 1.2);

/** The value stored at (layer, kvHead, index, dim) by {@link append}: distinct for keys and values. */
const keyAt = (l: number, h: number, i: number, d: number) => 1000 * l + 100 * h + i + d / 10;
const valueAt = (l: number, h: number, i: number, d: number) => -keyAt(l, h, i, d);

/** Appends `n` rows the way a backend does: reserve, write past `length`, commit. */
function append(cache: CpuKvCache, n: number, r: RopeRegime, firstPosition = cache.length): void {
  const start = cache.length;
  cache.reserve(n);
  const { numLayers, numKvHeads, headDim } = cache.layout;
  for (let l = 0; l < numLayers; l++) {
    const keys = cache.keys(l);
    const values = cache.values(l);
    for (let h = 0; h < numKvHeads; h++) {
      for (let i = start; i < start + n; i++) {
        for (let d = 0; d < headDim; d++) {
          keys[cache.offset(h, i) + d] = keyAt(l, h, i, d);
          values[cache.offset(h, i) + d] = valueAt(l, h, i, d);
        }
      }
    }
  }
  const tokens = Array.from({ length: n }, (_, t) => 7 * (start + t) + 1);
  const positions = Array.from({ length: n }, (_, t) => firstPosition + t);
  cache.commit(tokens, positions, r);
}

/** Every visible key and value, as nested arrays, for equality checks. */
function snapshot(cache: CpuKvCache) {
  const { numLayers, numKvHeads, headDim } = cache.layout;
  const keys: number[] = [];
  const values: number[] = [];
  for (let l = 0; l < numLayers; l++) {
    for (let h = 0; h < numKvHeads; h++) {
      for (let i = 0; i < cache.length; i++) {
        const o = cache.offset(h, i);
        keys.push(...cache.keys(l).subarray(o, o + headDim));
        values.push(...cache.values(l).subarray(o, o + headDim));
      }
    }
  }
  return {
    length: cache.length,
    tokens: Array.from(cache.tokens()),
    positions: Array.from(cache.positions()),
    spans: cache.regimeSpans().map((s) => ({ start: s.start, end: s.end, id: s.regime.id })),
    keys,
    values,
  };
}

function expectContents(cache: CpuKvCache, length: number): void {
  const { numLayers, numKvHeads, headDim } = cache.layout;
  expect(cache.length).toBe(length);
  for (let l = 0; l < numLayers; l++) {
    for (let h = 0; h < numKvHeads; h++) {
      for (let i = 0; i < length; i++) {
        for (let d = 0; d < headDim; d++) {
          expect(cache.keys(l)[cache.offset(h, i) + d]).toBe(Math.fround(keyAt(l, h, i, d)));
          expect(cache.values(l)[cache.offset(h, i) + d]).toBe(Math.fround(valueAt(l, h, i, d)));
        }
      }
    }
  }
  expect(Array.from(cache.tokens())).toEqual(Array.from({ length }, (_, i) => 7 * i + 1));
}

function expectCacheError(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(CacheError);
  expect((caught as CacheError).code).toBe(code);
}

describe('CpuKvCache', () => {
  it('starts empty', () => {
    const c = new CpuKvCache(LAYOUT);
    expect(c.location).toBe('cpu');
    expect(c.length).toBe(0);
    expect(c.disposed).toBe(false);
    expect(c.tokens().length).toBe(0);
    expect(c.positions().length).toBe(0);
    expect(c.regimeSpans()).toEqual([]);
    expect(c.uniformRegime()).toBeUndefined();
  });

  it('reserve / commit / grow keeps every committed row', () => {
    const c = new CpuKvCache(LAYOUT, 2);
    expect(c.capacity).toBe(2);
    let length = 0;
    for (const n of [1, 1, 3, 5, 1, 9, 2]) {
      append(c, n, A);
      length += n;
      expect(c.capacity).toBeGreaterThanOrEqual(length);
      expectContents(c, length);
      expect(Array.from(c.positions())).toEqual(Array.from({ length }, (_, i) => i));
    }
    // Doubling, or the exact need when that is more: 2 → 5 → 10 → 20 → 40.
    expect(c.capacity).toBe(40);
  });

  it('a reservation past double the capacity is taken exactly (a plan is not rounded up)', () => {
    const c = new CpuKvCache(LAYOUT, 16);
    c.reserve(4112);
    expect(c.capacity).toBe(4112);
    append(c, 4112, A);
    expect(c.capacity).toBe(4112);
    c.reserve(1); // past the plan: doubling again
    expect(c.capacity).toBe(8224);
    expectContents(c, 4112);
  });

  it('reserve within capacity does not reallocate', () => {
    const c = new CpuKvCache(LAYOUT, 8);
    append(c, 3, A);
    const keys = c.keys(0);
    c.reserve(5);
    expect(c.capacity).toBe(8);
    expect(c.keys(0)).toBe(keys);
    c.reserve(6);
    expect(c.capacity).toBe(16);
    expectContents(c, 3);
  });

  it('reserve refuses a negative or fractional count with CacheError bad-reserve, and changes nothing', () => {
    const c = new CpuKvCache(LAYOUT, 4);
    append(c, 2, A);
    for (const bad of [-1, 1.5, Number.NaN, Infinity]) {
      expect(() => c.reserve(bad)).toThrow(expect.objectContaining({ code: 'bad-reserve' }));
    }
    expect(c.capacity).toBe(4);
    expectContents(c, 2);
  });

  it('nothing written past length is visible before commit', () => {
    const c = new CpuKvCache(LAYOUT, 2);
    append(c, 2, A);
    const before = snapshot(c);
    c.reserve(4); // grows
    for (let l = 0; l < LAYOUT.numLayers; l++) {
      for (let h = 0; h < LAYOUT.numKvHeads; h++) c.keys(l).fill(99, c.offset(h, 2), c.offset(h, 6));
    }
    expect(snapshot(c)).toEqual(before);
    expect(c.length).toBe(2);
    expect(c.uniformRegime()).toBe(A);
    expectCacheError(() => c.regimeAt(2), 'out-of-range');
    // Committing makes exactly the reserved rows visible.
    c.commit([5, 6], [2, 3], B);
    expect(c.length).toBe(4);
    expect(c.keys(1)[c.offset(2, 3)]).toBe(99);
    expect(c.regimeAt(3)).toBe(B);
    expect(Array.from(c.tokens())).toEqual([1, 8, 5, 6]);
  });

  it('a commit that does not fit the reservation, or whose lengths differ, is refused and changes nothing', () => {
    const c = new CpuKvCache(LAYOUT, 2);
    append(c, 2, A);
    const before = snapshot(c);
    expectCacheError(() => c.commit([1], [2], A), 'bad-commit');
    c.reserve(2);
    expectCacheError(() => c.commit([1, 2], [2], A), 'bad-commit');
    expectCacheError(() => c.commit([1, 2, 3, 4, 5], [2, 3, 4, 5, 6], A), 'bad-commit');
    expect(snapshot(c)).toEqual(before);
  });

  it('crop keeps the first tokens, and appending after it overwrites the dropped rows', () => {
    const c = new CpuKvCache(LAYOUT, 4);
    append(c, 3, A);
    append(c, 4, B);
    append(c, 2, A);
    expect(c.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([
      [0, 3, 'A'],
      [3, 7, 'B'],
      [7, 9, 'A'],
    ]);
    c.crop(5);
    expect(c.length).toBe(5);
    expectContents(c, 5);
    expect(Array.from(c.positions())).toEqual([0, 1, 2, 3, 4]);
    expect(c.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([
      [0, 3, 'A'],
      [3, 5, 'B'],
    ]);
    expectCacheError(() => c.regimeAt(5), 'out-of-range');
    // Crop on a span boundary drops the later span entirely.
    c.crop(3);
    expect(c.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([[0, 3, 'A']]);
    expect(c.uniformRegime()).toBe(A);
    // Appending after a crop rewrites those indices.
    append(c, 2, A);
    expectContents(c, 5);
    expect(c.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([[0, 5, 'A']]);
    // Crop to the current length is a no-op; to 0 empties it.
    c.crop(5);
    expectContents(c, 5);
    c.crop(0);
    expect(c.length).toBe(0);
    expect(c.regimeSpans()).toEqual([]);
    expect(c.uniformRegime()).toBeUndefined();
  });

  it('bad crop values throw CacheError and leave the cache unchanged', () => {
    const c = new CpuKvCache(LAYOUT);
    append(c, 4, A);
    const before = snapshot(c);
    for (const bad of [-1, 5, 1.5, Number.NaN, Infinity]) {
      expectCacheError(() => c.crop(bad), 'bad-crop');
      expect(snapshot(c)).toEqual(before);
    }
  });

  it('clone is independent of the original, both ways', () => {
    const c = new CpuKvCache(LAYOUT, 2);
    append(c, 3, A);
    append(c, 2, B);
    const before = snapshot(c);
    const k = c.clone();
    expect(k).not.toBe(c);
    expect(snapshot(k)).toEqual(before);
    expect(k.regimeAt(4)).toBe(B);

    // Mutate the clone in every way.
    for (let l = 0; l < LAYOUT.numLayers; l++) {
      k.keys(l).fill(-5);
      k.values(l).fill(-6);
    }
    k.crop(1);
    append(k, 6, B, 100);
    k.markRotated(B);
    expect(snapshot(c)).toEqual(before);
    expect(c.regimeSpans().length).toBe(2);

    // Mutate the original: the clone does not move.
    const k2 = c.clone();
    const cloneBefore = snapshot(k2);
    c.keys(0).fill(3);
    c.crop(2);
    append(c, 4, A);
    expect(snapshot(k2)).toEqual(cloneBefore);

    // A clone of an empty cache is usable.
    const empty = new CpuKvCache(LAYOUT).clone();
    append(empty, 3, A);
    expectContents(empty, 3);
  });

  it('clone({ length, capacity }) copies the first tokens once, with room for the capacity; bad values are refused', () => {
    const c = new CpuKvCache(LAYOUT, 2);
    append(c, 3, A);
    append(c, 2, B);
    const k = c.clone({ length: 4, capacity: 9 });
    expect(k.length).toBe(4);
    expect(k.capacity).toBe(9);
    expectContents(k, 4);
    expect(k.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([
      [0, 3, 'A'],
      [3, 4, 'B'],
    ]);
    expect(Array.from(k.tokens())).toEqual(Array.from(c.tokens()).slice(0, 4));
    // The room is there: appending up to it does not grow (a grow would double the capacity).
    append(k, 5, A);
    expect(k.capacity).toBe(9);
    expectContents(k, 9);
    // A capacity below the kept length keeps the length; length 0 is an empty copy.
    expect(c.clone({ length: 5, capacity: 2 }).capacity).toBe(5);
    expect(c.clone({ length: 0 }).length).toBe(0);
    const before = snapshot(c);
    for (const bad of [-1, 6, 1.5, Number.NaN]) expectCacheError(() => c.clone({ length: bad }), 'bad-crop');
    for (const bad of [-1, 2.5, Number.NaN, Infinity]) expectCacheError(() => c.clone({ capacity: bad }), 'bad-reserve');
    expect(snapshot(c)).toEqual(before);
  });

  it('a clone whose storage fails half-way gives back every block it took and leaves the original as it was', () => {
    let live = 0;
    let allowed = Infinity;
    const storage = {
      allocate: (n: number) => {
        if (allowed-- <= 0) throw new RangeError('storage full');
        live++;
        let freed = false;
        return { view: new Float32Array(n), free: () => { if (!freed) live--; freed = true; } };
      },
    };
    const c = new CpuKvCache(LAYOUT, 2, storage);
    append(c, 5, A);
    const before = snapshot(c);
    const held = live;
    // The copy's first block of 1 row per layer (2 + 2), then 3 of the 4 blocks at its capacity.
    allowed = 4 + 3;
    expect(() => c.clone({ capacity: 12 })).toThrow('storage full');
    expect(live).toBe(held);
    expect(snapshot(c)).toEqual(before);
    allowed = Infinity;
    expectContents(c.clone(), 5);
  });

  it('use after dispose throws CacheError("disposed")', () => {
    const c = new CpuKvCache(LAYOUT);
    append(c, 2, A);
    c.dispose();
    expect(c.disposed).toBe(true);
    expect(c.byteLength).toBe(0);
    const uses: Array<() => unknown> = [
      () => c.keys(0),
      () => c.values(0),
      () => c.reserve(1),
      () => c.commit([1], [2], A),
      () => c.tokens(),
      () => c.positions(),
      () => c.regimeAt(0),
      () => c.regimeSpans(),
      () => c.uniformRegime(),
      () => c.clone(),
      () => c.crop(0),
      () => c.markRotated(A),
      () => rerotateCpuKeys(c, B, 'rotate-half'),
    ];
    for (const use of uses) expectCacheError(use, 'disposed');
    // Disposing twice is harmless.
    expect(() => c.dispose()).not.toThrow();
  });

  it('regimeSpans merge runs of the same regime id and split on a change', () => {
    const c = new CpuKvCache(LAYOUT);
    append(c, 2, A);
    append(c, 3, A);
    expect(c.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([[0, 5, 'A']]);
    // A different object with the same id is the same regime.
    append(c, 1, regime('A'));
    expect(c.regimeSpans()).toHaveLength(1);
    append(c, 2, B);
    append(c, 1, A);
    expect(c.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([
      [0, 6, 'A'],
      [6, 8, 'B'],
      [8, 9, 'A'],
    ]);
    expect(c.uniformRegime()).toBeUndefined();
    for (let i = 0; i < 9; i++) expect(c.regimeAt(i).id).toBe(i >= 6 && i < 8 ? 'B' : 'A');
    // An empty commit adds no span.
    c.reserve(0);
    c.commit([], [], B);
    expect(c.regimeSpans()).toHaveLength(3);
    // markRotated collapses everything into one span.
    c.markRotated(B);
    expect(c.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([[0, 9, 'B']]);
    expect(c.uniformRegime()).toBe(B);
  });

  it('regimeAt out of range throws CacheError("out-of-range")', () => {
    const c = new CpuKvCache(LAYOUT);
    expectCacheError(() => c.regimeAt(0), 'out-of-range');
    append(c, 3, A);
    expect(c.regimeAt(0)).toBe(A);
    expect(c.regimeAt(2)).toBe(A);
    for (const bad of [-1, 3, 100]) expectCacheError(() => c.regimeAt(bad), 'out-of-range');
  });

  it('byteLength counts keys and values of the allocated capacity in float32', () => {
    const c = new CpuKvCache(LAYOUT, 4);
    const bytes = (cap: number) => 2 * LAYOUT.numLayers * LAYOUT.numKvHeads * cap * LAYOUT.headDim * 4;
    expect(c.byteLength).toBe(bytes(4));
    append(c, 5, A);
    expect(c.byteLength).toBe(bytes(8));
    c.crop(1);
    expect(c.byteLength).toBe(bytes(8)); // capacity is kept
    expect(c.keys(0).byteLength + c.values(0).byteLength).toBe(bytes(8) / LAYOUT.numLayers);
  });

  it('tokens() and positions() are copies', () => {
    const c = new CpuKvCache(LAYOUT);
    append(c, 3, A, 10);
    c.tokens()[0] = 12345;
    c.positions()[0] = 12345;
    expect(Array.from(c.tokens())).toEqual([1, 8, 15]);
    expect(Array.from(c.positions())).toEqual([10, 11, 12]);
  });
});

describe('rerotateCpuKeys', () => {
  /** Raw (pre-RoPE) key of (layer, head, index). */
  const raw = (layout: KvCacheLayout, l: number, h: number, i: number) =>
    Float32Array.from({ length: layout.headDim }, (_, d) => Math.sin(1 + 3 * l + 7 * h + 11 * i + 13 * d) * 2);

  const rotate = (x: Float32Array, pairing: RopePairing, r: RopeRegime, p: number) => {
    const out = x.slice();
    applyRotary(out, 0, 1, x.length, pairing, rotaryTables(r, [p]), 0);
    return out;
  };

  /** A cache whose span k holds raw keys rotated under `spans[k].regime` at their positions (value = raw key). */
  function mixedCache(layout: KvCacheLayout, pairing: RopePairing, spans: Array<{ n: number; regime: RopeRegime }>, positions: number[]) {
    const c = new CpuKvCache(layout, 2);
    let i = 0;
    for (const { n, regime: r } of spans) {
      c.reserve(n);
      for (let l = 0; l < layout.numLayers; l++) {
        for (let h = 0; h < layout.numKvHeads; h++) {
          for (let t = i; t < i + n; t++) {
            c.keys(l).set(rotate(raw(layout, l, h, t), pairing, r, positions[t]!), c.offset(h, t));
            c.values(l).set(raw(layout, l, h, t), c.offset(h, t));
          }
        }
      }
      c.commit(Array.from({ length: n }, () => 3), positions.slice(i, i + n), r);
      i += n;
    }
    return c;
  }

  for (const pairing of ['rotate-half', 'interleaved'] as const) {
    for (const [label, layout, half] of [
      ['full rotary', { numLayers: 2, numKvHeads: 2, headDim: 6 }, 3],
      ['partial rotary', { numLayers: 2, numKvHeads: 2, headDim: 8 }, 2],
    ] as const) {
      it(`moves each span of a mixed cache to the target regime (${pairing}, ${label})`, () => {
        const freqs = (scale: number) => Array.from({ length: half }, (_, i) => scale * Math.pow(100, -i / half));
        const short = regime('short', freqs(1), 1.1);
        const long = regime('long', freqs(0.3), 1.3);
        const positions = [0, 1, 2, 3, 4, 900, 901, 4100];
        const c = mixedCache(layout, pairing, [
          { n: 5, regime: short },
          { n: 3, regime: long },
        ], positions);
        expect(c.regimeSpans()).toHaveLength(2);
        const valuesBefore = snapshot(c).values;

        const other = regime('other', freqs(0.05), 0.9);
        // Mixed → long, then (now uniform) long → short, then short → a third regime.
        for (const to of [long, short, other]) {
          rerotateCpuKeys(c, to, pairing);
          expect(c.uniformRegime()).toBe(to);
          expect(c.regimeSpans().map((s) => [s.start, s.end])).toEqual([[0, 8]]);
          for (let l = 0; l < layout.numLayers; l++) {
            for (let h = 0; h < layout.numKvHeads; h++) {
              for (let t = 0; t < 8; t++) {
                const want = rotate(raw(layout, l, h, t), pairing, to, positions[t]!);
                const got = c.keys(l).subarray(c.offset(h, t), c.offset(h, t) + layout.headDim);
                let err = 0;
                let size = 0;
                for (let d = 0; d < layout.headDim; d++) {
                  err = Math.max(err, Math.abs(got[d]! - want[d]!));
                  size = Math.max(size, Math.abs(want[d]!));
                }
                expect(err / size, `layer ${l} head ${h} index ${t}`).toBeLessThanOrEqual(1e-5);
                // Dims past the rotary ones are untouched.
                for (let d = 2 * half; d < layout.headDim; d++) expect(got[d]).toBe(raw(layout, l, h, t)[d]);
              }
            }
          }
          expect(snapshot(c).values).toEqual(valuesBefore);
          expect(Array.from(c.positions())).toEqual(positions);
        }
      });
    }
  }

  it('moves every span of a three-regime cache from its own positions (rotate-half)', () => {
    const layout = { numLayers: 1, numKvHeads: 2, headDim: 4 };
    const r1 = regime('r1', [1, 0.1], 1);
    const r2 = regime('r2', [0.6, 0.03], 1.15);
    const r3 = regime('r3', [0.2, 0.002], 1.3);
    const positions = [0, 1, 2, 50, 51, 52, 3000, 3001];
    const c = mixedCache(layout, 'rotate-half', [
      { n: 3, regime: r1 },
      { n: 3, regime: r2 },
      { n: 2, regime: r1 },
    ], positions);
    expect(c.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([
      [0, 3, 'r1'],
      [3, 6, 'r2'],
      [6, 8, 'r1'],
    ]);
    rerotateCpuKeys(c, r3, 'rotate-half');
    expect(c.uniformRegime()).toBe(r3);
    for (let h = 0; h < 2; h++) {
      for (let t = 0; t < 8; t++) {
        const want = rotate(raw(layout, 0, h, t), 'rotate-half', r3, positions[t]!);
        const got = c.keys(0).subarray(c.offset(h, t), c.offset(h, t) + 4);
        for (let d = 0; d < 4; d++) expect(Math.abs(got[d]! - want[d]!), `head ${h} index ${t}`).toBeLessThanOrEqual(1e-5 * 4);
      }
    }
  });

  // Design §5: bad input never corrupts a cache. A target regime with more pairs than the cached
  // keys' regime (e.g. one from another model) reads past the source frequencies: NaN keys today.
  it('refuses a target regime of another rotary size and leaves the keys unchanged', () => {
    const layout = { numLayers: 1, numKvHeads: 1, headDim: 8 };
    const two = regime('two-pairs', [1, 0.1]);
    const four = regime('four-pairs', [1, 0.1, 0.01, 0.001]);
    const c = mixedCache(layout, 'rotate-half', [{ n: 2, regime: two }], [0, 5]);
    const before = snapshot(c);
    expect(() => rerotateCpuKeys(c, four, 'rotate-half')).toThrow();
    expect(snapshot(c)).toEqual(before);
    expect(c.uniformRegime()).toBe(two);
  });

  it('gives the same bits with memoised tables (cold, prepared ahead, or shared) as with fresh ones', () => {
    const layout = { numLayers: 3, numKvHeads: 3, headDim: 10 }; // 9 blocks: four at a time and one left
    const freqs = (scale: number) => Array.from({ length: 4 }, (_, i) => scale * Math.pow(100, -i / 4));
    const short = regime('short', freqs(1), 1.1);
    const long = regime('long', freqs(0.3), 1.3);
    const bitsOf = (c: CpuKvCache) =>
      Array.from({ length: layout.numLayers }, (_, l) => Array.from(new Uint32Array(c.keys(l).buffer, 0, c.keys(l).length)));
    for (const positions of [
      Array.from({ length: 40 }, (_, i) => i), // dense: memoised tables indexed by position
      [0, 1, 2, 3, 4, 900, 901, 4100], // a few far positions: fresh tables of just those
    ]) {
      const n = positions.length;
      const spans = [
        { n: n - 3, regime: short },
        { n: 3, regime: long },
      ];
      const fresh = mixedCache(layout, 'rotate-half', spans, positions);
      const cold = mixedCache(layout, 'rotate-half', spans, positions);
      const warm = mixedCache(layout, 'rotate-half', spans, positions);
      const memo = new RerotationTableCache();
      const prepared = new RerotationTableCache();
      prepared.prepare(short, long, 20); // a prefix only: the rotation grows it
      for (const to of [long, short, long]) {
        rerotateCpuKeys(fresh, to, 'rotate-half');
        rerotateCpuKeys(cold, to, 'rotate-half', 'float32', memo);
        rerotateCpuKeys(warm, to, 'rotate-half', 'float32', prepared);
        expect(bitsOf(cold)).toEqual(bitsOf(fresh));
        expect(bitsOf(warm)).toEqual(bitsOf(fresh));
      }
    }
  });

  it('leaves keys already in the target regime bit-identical', () => {
    const layout = { numLayers: 1, numKvHeads: 1, headDim: 4 };
    const r1 = regime('r1', [1, 0.1]);
    const r2 = regime('r2', [0.7, 0.05], 1.2);
    const c = mixedCache(layout, 'rotate-half', [
      { n: 2, regime: r1 },
      { n: 2, regime: r2 },
    ], [0, 1, 2, 3]);
    const tail = Array.from(c.keys(0).subarray(c.offset(0, 2), c.offset(0, 4)));
    rerotateCpuKeys(c, r2, 'rotate-half');
    expect(Array.from(c.keys(0).subarray(c.offset(0, 2), c.offset(0, 4)))).toEqual(tail);
    expect(c.uniformRegime()).toBe(r2);
  });
});

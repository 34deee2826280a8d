import { describe, expect, it } from 'vitest';
import { requireCpuCache } from '../backend/require-cpu-cache.js';
import { BackendError, CacheError } from '../errors.js';
import { type RopeRegime, makeRegime } from '../rope/regime.js';
import { f16BitsToF32, f32ToF16Bits } from '../weights/dtype.js';
import { CpuKvCache } from './cpu-kv-cache.js';
import { Float16KvCache } from './float16-kv-cache.js';
import { float16ToFloat32, float32ToFloat16 } from './float16-values.js';
import type { KvCacheLayout } from './kv-cache.js';
import { rerotateCpuKeys } from './rerotate-keys.js';
import { appendRows } from '@ropeswitch/testkit';

const LAYOUT: KvCacheLayout = { numLayers: 2, numKvHeads: 3, headDim: 8 };

const regime = (id: string, invFreq: number[], m = 1): RopeRegime =>
  makeRegime(id, 'static', Float32Array.from(invFreq), Float64Array.from(Float32Array.from(invFreq)), m);
const A = regime('A', [1, 0.3, 0.05, 0.01]);
const B = regime('B', [0.5, 0.1, 0.01, 0.001], 1.2);

/** A float32 value of (layer, kvHead, index, dim), keys and values apart; not exact in binary16. */
const valueOf = (l: number, h: number, i: number, d: number, key: boolean) => Math.fround((key ? 1 : -1) * Math.sin(1 + 3 * l + 7 * h + 11 * i + 13 * d) * 3.3);

/** Appends `n` rows to each cache as a backend does: the float32 values, rounded in a float16 cache. */
function append(caches: readonly (CpuKvCache | Float16KvCache)[], n: number, r: RopeRegime): void {
  for (const cache of caches) appendRows(cache, n, r, valueOf, (index) => index + 1);
}

/** The visible rows of every layer, keys then values, as float32 values. */
function visible(cache: CpuKvCache | Float16KvCache): number[] {
  const out: number[] = [];
  const { numLayers, numKvHeads, headDim } = cache.layout;
  for (const part of ['keys', 'values'] as const) {
    for (let l = 0; l < numLayers; l++) {
      const data = cache[part](l);
      for (let h = 0; h < numKvHeads; h++) {
        const o = cache.offset(h, 0);
        const rows = data.subarray(o, o + cache.length * headDim);
        out.push(...(rows instanceof Uint16Array ? float16ToFloat32(rows) : rows));
      }
    }
  }
  return out;
}

describe('float16 values', () => {
  it('round to nearest, ties to even, and read back exactly', () => {
    // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1); 1 + 3·2^-11 goes up.
    const x = Float32Array.of(1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, -2.5, 65504, 70000, 2 ** -24, 0.1);
    const bits = float32ToFloat16(x);
    expect(Array.from(bits)).toEqual(Array.from(x, (v) => f32ToF16Bits(v)));
    expect(Array.from(float16ToFloat32(bits))).toEqual([1, 1, 1 + 2 ** -9, -2.5, 65504, Infinity, 2 ** -24, f16BitsToF32(f32ToF16Bits(0.1))]);
  });
});

describe('Float16KvCache', () => {
  it('holds half the bytes of a CpuKvCache of the same layout and capacity', () => {
    const [f32, f16] = [new CpuKvCache(LAYOUT, 8), new Float16KvCache(LAYOUT, 8)];
    expect(f16.byteLength).toBe(f32.byteLength / 2);
    expect(f16.byteLength).toBe(2 * 2 * 3 * 8 * 8 * 2);
    expect(f16.dtype).toBe('float16');
    expect(f16.location).toBe('cpu');
    expect(f16.keys(0)).toBeInstanceOf(Uint16Array);
    f16.dispose();
    expect(f16.byteLength).toBe(0);
  });

  it('commit, reserve (grow), crop and clone keep the rounded rows', () => {
    const f32 = new CpuKvCache(LAYOUT, 2);
    const f16 = new Float16KvCache(LAYOUT, 2);
    append([f32, f16], 3, A);
    append([f32, f16], 6, A);
    expect(f16.capacity).toBe(f32.capacity); // the same growth rule as the float32 cache
    expect(f16.length).toBe(9);
    // Every visible element is the float32 cache's, rounded.
    expect(visible(f16)).toEqual(visible(f32).map((v) => f16BitsToF32(f32ToF16Bits(v))));
    const copy = f16.clone();
    expect(copy).toBeInstanceOf(Float16KvCache);
    f16.crop(4);
    expect(f16.length).toBe(4);
    expect(copy.length).toBe(9);
    expect(visible(copy).length).toBe(2 * 2 * 3 * 9 * 8);
    // The clone is independent: writing into the original's storage leaves it alone.
    f16.keys(0).fill(0);
    expect(visible(copy)).toEqual(visible(f32).map((v) => f16BitsToF32(f32ToF16Bits(v))));
    expect(copy.tokens()).toEqual(f32.tokens());
    copy.dispose();
    f16.dispose();
  });

  it('replaceWith takes over another float16 cache and refuses a float32 one with CacheError foreign-cache', () => {
    const live = new Float16KvCache(LAYOUT, 2);
    const rebuilt = new Float16KvCache(LAYOUT, 2);
    const f32 = new CpuKvCache(LAYOUT, 2);
    append([rebuilt, f32], 5, B);
    const want = visible(rebuilt);
    live.replaceWith(rebuilt);
    expect(rebuilt.disposed).toBe(true);
    expect(visible(live)).toEqual(want);
    expect(() => live.replaceWith(f32)).toThrow(CacheError);
    expect(() => live.replaceWith(f32)).toThrow(/float16 CPU cache with a float32 one/);
    expect(() => f32.replaceWith(live)).toThrow(/float32 CPU cache with a float16 one/);
    expect(live.length).toBe(5);
    expect(f32.length).toBe(5);
  });

  it('rerotateCpuKeys rotates a float16 cache in float32 and stores the rounded result: the float32 rotation of the same keys, rounded', () => {
    const layout = { numLayers: 3, numKvHeads: 3, headDim: 10 }; // 9 (layer, head) blocks: groups of 4, 4, 1; partial rotary (4 of 5 pairs)
    const f16 = new Float16KvCache(layout, 4);
    append([f16], 7, A);
    append([f16], 4, B);
    // The float32 reference: the float16 cache's own (rounded) keys, widened, rotated, rounded.
    const f32 = new CpuKvCache(layout, f16.capacity);
    for (let l = 0; l < layout.numLayers; l++) {
      f32.keys(l).set(float16ToFloat32(f16.keys(l)));
      f32.values(l).set(float16ToFloat32(f16.values(l)));
    }
    f32.commit(f16.tokens().subarray(0, 7), f16.positions().subarray(0, 7), A);
    f32.commit(f16.tokens().subarray(7), f16.positions().subarray(7), B);
    const valuesBefore = visible(f16).slice(visible(f16).length / 2);
    for (const pairing of ['rotate-half', 'interleaved'] as const) {
      for (const to of [B, A]) {
        rerotateCpuKeys(f16, to, pairing);
        rerotateCpuKeys(f32, to, pairing);
        expect(f16.uniformRegime()).toBe(to);
        for (let l = 0; l < layout.numLayers; l++) {
          expect(Array.from(f16.keys(l))).toEqual(Array.from(float32ToFloat16(f32.keys(l))));
          // Keep the two in step: the reference continues from the rounded keys, as the cache does.
          f32.keys(l).set(float16ToFloat32(f16.keys(l)));
        }
      }
    }
    expect(visible(f16).slice(visible(f16).length / 2)).toEqual(valuesBefore);
  });

  it('requireCpuCache tells the two element types apart with BackendError cache-type naming cacheDtype', () => {
    const f16 = new Float16KvCache(LAYOUT);
    const f32 = new CpuKvCache(LAYOUT);
    expect(requireCpuCache(f16, 'x', 'float16')).toBe(f16);
    expect(requireCpuCache(f32, 'x')).toBe(f32);
    for (const [cache, dtype] of [[f16, 'float32'], [f32, 'float16']] as const) {
      let error: unknown;
      try {
        requireCpuCache(cache, 'x', dtype);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(BackendError);
      expect(error).toMatchObject({ code: 'cache-type' });
      expect((error as Error).message).toMatch(new RegExp(`cacheDtype '${dtype}'`));
    }
  });
});

/** Rows appended to a host cache the way a backend appends them, for the cache tests. */
import { type CpuKvCache, type Float16KvCache, type RopeRegime, f32ToF16Bits } from '@ropeswitch/core';

/** The float32 value a test writes at (layer, kvHead, cache index, dim), for a key or a value. */
export type TestValue = (l: number, h: number, i: number, d: number, key: boolean) => number;

/**
 * Appends `n` rows the way a backend does: reserve, write past `length` (a float16 cache gets the
 * values rounded to nearest even), commit with token ids `token(index)` at positions `index`.
 */
export function appendRows(cache: CpuKvCache | Float16KvCache, n: number, r: RopeRegime, value: TestValue, token: (index: number) => number): void {
  const start = cache.length;
  cache.reserve(n);
  const { numLayers, numKvHeads, headDim } = cache.layout;
  const encode = cache.dtype === 'float16' ? f32ToF16Bits : (x: number) => x;
  for (let l = 0; l < numLayers; l++) {
    for (let h = 0; h < numKvHeads; h++) {
      for (let i = start; i < start + n; i++) {
        for (let d = 0; d < headDim; d++) {
          cache.keys(l)[cache.offset(h, i) + d] = encode(value(l, h, i, d, true));
          cache.values(l)[cache.offset(h, i) + d] = encode(value(l, h, i, d, false));
        }
      }
    }
  }
  cache.commit(
    Array.from({ length: n }, (_, t) => token(start + t)),
    Array.from({ length: n }, (_, t) => start + t),
    r,
  );
}

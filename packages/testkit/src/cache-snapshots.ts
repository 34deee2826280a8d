/** Plain-array views of a CPU cache's visible contents, for equality or tolerance checks. */
import type { CpuKvCache, KvCache } from '@ropeswitch/core';

/** The visible keys of `layer`, every kv head, `[kvHead][index][headDim]` packed. */
export function layerKeys(cache: KvCache, layer: number): Float32Array {
  const c = cache as CpuKvCache;
  const { numKvHeads, headDim } = c.layout;
  const out = new Float32Array(numKvHeads * c.length * headDim);
  for (let h = 0; h < numKvHeads; h++) {
    const from = c.offset(h, 0);
    out.set(c.keys(layer).subarray(from, from + c.length * headDim), h * c.length * headDim);
  }
  return out;
}

/**
 * Every visible part of a CPU cache, keys and values one array per layer (`[kvHead][index][headDim]`
 * each), for equality or per-layer tolerance checks.
 */
export function snapshotByLayer(cache: KvCache) {
  const c = cache as CpuKvCache;
  const { numLayers, numKvHeads, headDim } = c.layout;
  const keys: number[][] = [];
  const values: number[][] = [];
  for (let l = 0; l < numLayers; l++) {
    const k: number[] = [];
    const v: number[] = [];
    for (let h = 0; h < numKvHeads; h++) {
      const from = c.offset(h, 0);
      k.push(...c.keys(l).subarray(from, from + c.length * headDim));
      v.push(...c.values(l).subarray(from, from + c.length * headDim));
    }
    keys.push(k);
    values.push(v);
  }
  return {
    length: c.length,
    tokens: Array.from(c.tokens()),
    positions: Array.from(c.positions()),
    spans: c.regimeSpans().map((s) => [s.start, s.end, s.regime.id]),
    keys,
    values,
  };
}

/** Every visible part of a CPU cache, for equality checks: keys and values of all layers in one array each. */
export function snapshot(cache: KvCache) {
  const s = snapshotByLayer(cache);
  return { ...s, keys: s.keys.flat(), values: s.values.flat() };
}

/** The ids of regimes a cache's keys were rotated under, in cache order. */
export const spanIds = (cache: KvCache): string[] => cache.regimeSpans().map((s) => s.regime.id);

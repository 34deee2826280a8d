import { type Backend, CpuKvCache, Float16KvCache, type HostKvCache, type RopeSchedule, SeededRandom, float32ToFloat16, rerotateCpuKeys } from '@ropeswitch/core';
import { median } from './statistics.js';

/** Rotating a cache's keys into the next regime, set against copying those keys once. */
export interface RerotationCost {
  /** Tokens in the cache. */
  readonly tokens: number;
  /** Median time of one rotation of every cached key (a fresh clone each time). */
  readonly rotateMs: number;
  /** The first rotation, which may also build tables the later ones reuse. */
  readonly firstRotateMs: number;
  /** Median time of copying every layer's key storage into preallocated arrays (`TypedArray.set`). */
  readonly copyMs: number;
  readonly rotations: number;
}

const ROTATIONS = 7;
const COPIES_PER_SAMPLE = 8;

/**
 * On a cache of `tokens` positions (L, all under the regime below the threshold) made by `backend`:
 * the median of several rotations into the regime past the threshold (the backend's
 * `rerotateKeys`, else the core CPU rotation, each on a fresh clone made outside the timer) and the
 * median of several copies of the keys. The cache is filled with seeded random keys and values, not
 * prefilled: a rotation's cost does not depend on what the keys hold, and a prefill of L tokens is
 * minutes at the Phi-3 shape on a slow backend. float16 caches (onnxruntime's `cacheDtype`) are
 * measured the same way, their copy moving half the bytes. `undefined` when the backend's caches
 * are not on the CPU (no key arrays to copy).
 */
export async function measureRerotation(backend: Backend, schedule: RopeSchedule, tokens: number, seed: number): Promise<RerotationCost | undefined> {
  const cache = backend.createCache();
  try {
    if (!(cache instanceof CpuKvCache || cache instanceof Float16KvCache)) return undefined;
    fillRandom(cache, tokens, schedule, seed);
    const to = schedule.regimeFor(tokens + 1);
    const rotate = async (c: HostKvCache) =>
      backend.rerotateKeys ? backend.rerotateKeys(c, to) : rerotateCpuKeys(c, to, schedule.pairing, backend.capabilities.anglePrecision);
    const rotations: number[] = [];
    for (let k = 0; k < ROTATIONS; k++) {
      const copy = cache.clone();
      const t0 = performance.now();
      await rotate(copy);
      rotations.push(performance.now() - t0);
      copy.dispose();
    }
    const { numLayers } = cache.layout;
    const sources = Array.from({ length: numLayers }, (_, l) => cache.keys(l));
    const targets = sources.map((keys) => (keys instanceof Float32Array ? new Float32Array(keys.length) : new Uint16Array(keys.length)));
    const copies: number[] = [];
    for (let k = 0; k < ROTATIONS; k++) {
      const t0 = performance.now();
      for (let r = 0; r < COPIES_PER_SAMPLE; r++) for (let l = 0; l < numLayers; l++) targets[l]!.set(sources[l]!);
      copies.push((performance.now() - t0) / COPIES_PER_SAMPLE);
    }
    return { tokens, rotateMs: median(rotations), firstRotateMs: rotations[0]!, copyMs: median(copies), rotations: ROTATIONS };
  } finally {
    cache.dispose();
  }
}

/** `tokens` positions of seeded uniform keys and values, committed under the regime of length `tokens`. */
function fillRandom(cache: HostKvCache, tokens: number, schedule: RopeSchedule, seed: number): void {
  cache.reserve(tokens);
  const random = new SeededRandom(seed);
  const { numLayers, numKvHeads, headDim } = cache.layout;
  for (let l = 0; l < numLayers; l++) {
    for (const data of [cache.keys(l), cache.values(l)]) {
      for (let g = 0; g < numKvHeads; g++) {
        const from = cache.offset(g, 0);
        const run = Float32Array.from({ length: tokens * headDim }, () => random.uniform(-2, 2));
        if (data instanceof Float32Array) data.set(run, from);
        else data.set(float32ToFloat16(run), from);
      }
    }
  }
  // Token ids play no part in a rotation.
  cache.commit(new Int32Array(tokens), Int32Array.from({ length: tokens }, (_, i) => i), schedule.regimeFor(tokens));
}

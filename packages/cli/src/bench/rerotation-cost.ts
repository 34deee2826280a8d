import { type Backend, CpuKvCache, type RopeSchedule, Session, rerotateCpuKeys } from '@ropeswitch/core';
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
 * On a cache of `prompt.length` tokens (L, all under the regime below the threshold) prefilled on
 * `backend`: the median of several rotations into the regime past the threshold (the backend's
 * `rerotateKeys`, else the core CPU rotation, each on a fresh clone made outside the timer) and the
 * median of several copies of the keys. `undefined` when the backend's caches are not on the CPU
 * (no key arrays to copy).
 */
export async function measureRerotation(backend: Backend, schedule: RopeSchedule, prompt: readonly number[]): Promise<RerotationCost | undefined> {
  const session = new Session(backend);
  try {
    await session.prefill(prompt);
    const cache = session.cache;
    if (!(cache instanceof CpuKvCache)) return undefined;
    const to = schedule.regimeFor(prompt.length + 1);
    const rotate = async (c: CpuKvCache) =>
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
    const targets = sources.map((keys) => new Float32Array(keys.length));
    const copies: number[] = [];
    for (let k = 0; k < ROTATIONS; k++) {
      const t0 = performance.now();
      for (let r = 0; r < COPIES_PER_SAMPLE; r++) for (let l = 0; l < numLayers; l++) targets[l]!.set(sources[l]!);
      copies.push((performance.now() - t0) / COPIES_PER_SAMPLE);
    }
    return { tokens: prompt.length, rotateMs: median(rotations), firstRotateMs: rotations[0]!, copyMs: median(copies), rotations: ROTATIONS };
  } finally {
    session.dispose();
  }
}

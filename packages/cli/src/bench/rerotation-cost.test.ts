import { type Backend, CpuKvCache, Float16KvCache, type KvCache, type KvCacheLayout, createRopeSchedule, parseModelConfig } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { tinyModelConfig } from '../random-models/make-tiny-model.js';
import { measureRerotation } from './rerotation-cost.js';

const config = parseModelConfig(tinyModelConfig());
const schedule = createRopeSchedule(config.rope);
const layout: KvCacheLayout = { numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim };

/** Just what measureRerotation reads of a backend: its caches and capabilities (core's CPU rotation then runs). */
function backendMaking(make: () => KvCache): Backend {
  return { config, capabilities: { anglePrecision: 'float64' }, createCache: make } as unknown as Backend;
}

describe('the rerotation cost', () => {
  it('is measured on float32 and float16 CPU caches, every cache it made disposed afterwards', async () => {
    for (const make of [() => new CpuKvCache(layout), () => new Float16KvCache(layout)]) {
      const made: KvCache[] = [];
      const cost = await measureRerotation(backendMaking(() => { const c = make(); made.push(c); return c; }), schedule, 64, 7);
      expect(cost?.tokens).toBe(64);
      expect(cost?.rotations).toBe(7);
      expect(cost!.rotateMs).toBeGreaterThanOrEqual(0);
      expect(cost!.copyMs).toBeGreaterThanOrEqual(0);
      expect(made.every((c) => c.disposed)).toBe(true);
    }
  });

  it('is undefined for caches off the CPU', async () => {
    const gpuLike = { disposed: false, dispose(this: { disposed: boolean }) { this.disposed = true; } } as unknown as KvCache;
    expect(await measureRerotation(backendMaking(() => gpuLike), schedule, 64, 7)).toBeUndefined();
    expect(gpuLike.disposed).toBe(true);
  });
});

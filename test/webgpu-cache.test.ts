import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { GpuKvCache, WebGpuBackend, readLayerKeys, readLayerValues } from '@ropeswitch/backend-webgpu';
import { createNodeWebGpuBackend, requestNodeGpuDevice } from '@ropeswitch/backend-webgpu/node';
import {
  BackendError,
  CacheError,
  CpuKvCache,
  type KvCache,
  LongRopeSchedule,
  WeightsError,
  createRopeSchedule,
  loadCheckpoint,
  rerotateCpuKeys,
} from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCpuLayerKeys } from './conformance/policy-runs.js';
import { hfDir, maxAbsDiff, readExpected } from './support/fixtures.js';

// GPU cache semantics, rerotation and lifetime of the WebGPU backend, on the software adapter,
// checked against the reference backend on the GQA fixture (2 layers, 2 KV heads, head dim 16).
const CASE = 'seed1-gqa';
const e = readExpected(CASE);
const prompt = e.prompt;
const positions = (n: number, from = 0) => Int32Array.from({ length: n }, (_, i) => from + i);

let gpu: WebGpuBackend;
let ref: ReferenceBackend;
let schedule: LongRopeSchedule;

beforeAll(async () => {
  const { config, weights } = await loadCheckpoint(`${hfDir}${CASE}`);
  gpu = await createNodeWebGpuBackend(config, weights, { adapter: 'software' });
  ref = new ReferenceBackend(config, weights);
  await weights.close();
  const s = createRopeSchedule(config.rope);
  if (!(s instanceof LongRopeSchedule)) throw new Error(`${CASE} should be a LongRoPE fixture`);
  schedule = s;
});
afterAll(async () => {
  await gpu?.dispose();
  await ref?.dispose();
});

async function prefill(backend: WebGpuBackend | ReferenceBackend, ids: readonly number[], regime = schedule.short, cache: KvCache = backend.createCache()) {
  const result = await backend.forward({ rows: [{ tokens: ids, positions: positions(ids.length, cache.length), cache, regime }] });
  return { cache, logits: result.rows[0]!.data };
}

async function allKeys(cache: KvCache): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let l = 0; l < cache.layout.numLayers; l++) out.push(await readLayerKeys(cache, l));
  return out;
}

describe('GpuKvCache', () => {
  it('lives on the GPU, grows by copy on the device, and holds the reference backend’s keys and values', async () => {
    const cache = gpu.createCache();
    expect(cache).toBeInstanceOf(GpuKvCache);
    expect(cache.location).toBe('gpu');
    expect(cache.capacity).toBe(16);
    const { cache: theirs } = await prefill(ref, prompt);
    await prefill(gpu, prompt.slice(0, 10), schedule.short, cache);
    await prefill(gpu, prompt.slice(10), schedule.short, cache); // 28 tokens: grown past 16
    expect(cache.capacity).toBeGreaterThanOrEqual(prompt.length);
    expect(cache.length).toBe(prompt.length);
    expect(Array.from(cache.tokens())).toEqual(prompt);
    expect(cache.byteLength).toBe(2 * 2 * 2 * cache.capacity * 16 * 4);
    for (let l = 0; l < 2; l++) {
      expect(maxAbsDiff(await readLayerKeys(cache, l), readCpuLayerKeys(theirs, l)), `layer ${l} keys`).toBeLessThanOrEqual(1e-4);
      const refValues = (theirs as CpuKvCache).values(l);
      const values = await readLayerValues(cache, l);
      // The reference stores [kvHead][capacity][dim]; compare head by head.
      for (let h = 0; h < 2; h++) {
        const want = refValues.subarray((theirs as CpuKvCache).offset(h, 0), (theirs as CpuKvCache).offset(h, prompt.length));
        expect(maxAbsDiff(values.subarray(h * prompt.length * 16, (h + 1) * prompt.length * 16), want)).toBeLessThanOrEqual(1e-4);
      }
    }
    const before = await allKeys(cache);
    cache.reserve(1000);
    expect(cache.capacity).toBeGreaterThanOrEqual(prompt.length + 1000);
    expect(await allKeys(cache)).toEqual(before);
    cache.dispose();
    theirs.dispose();
  });

  it('clone is independent; crop then forward equals a fresh prefill; replaceWith takes over and disposes the other', async () => {
    const { cache } = await prefill(gpu, prompt);
    const keys = await allKeys(cache);
    const copy = cache.clone();
    expect(copy.location).toBe('gpu');
    expect(await allKeys(copy)).toEqual(keys);
    await prefill(gpu, [5, 6, 7], schedule.long, copy);
    expect(copy.length).toBe(prompt.length + 3);
    expect(cache.length).toBe(prompt.length);
    expect(await allKeys(cache)).toEqual(keys);
    expect(copy.regimeSpans().map((s) => `${s.start}..${s.end} ${s.regime.id}`)).toEqual([`0..${prompt.length} ${schedule.short.id}`, `${prompt.length}..${prompt.length + 3} ${schedule.long.id}`]);

    copy.crop(10);
    const next = await prefill(gpu, prompt.slice(10), schedule.short, copy);
    const fresh = await prefill(gpu, prompt);
    expect(maxAbsDiff(next.logits, fresh.logits)).toBeLessThanOrEqual(1e-5);

    cache.replaceWith(copy);
    expect(copy.disposed).toBe(true);
    expect(cache.length).toBe(prompt.length);
    expect(maxAbsDiff((await allKeys(cache))[1]!, (await allKeys(fresh.cache))[1]!)).toBeLessThanOrEqual(1e-5);
    expect(() => cache.replaceWith(new CpuKvCache(cache.layout))).toThrow(CacheError);
    cache.dispose();
    fresh.cache.dispose();
  });

  it('dispose frees the buffers: later use throws CacheError, a forward on it BackendError', async () => {
    const cache = gpu.createCache();
    await prefill(gpu, prompt.slice(0, 4), schedule.short, cache);
    cache.dispose();
    expect(cache.disposed).toBe(true);
    expect(cache.byteLength).toBe(0);
    expect(() => cache.keys(0)).toThrow(CacheError);
    expect(() => cache.tokens()).toThrow(CacheError);
    await expect(prefill(gpu, [1], schedule.short, cache)).rejects.toThrow(BackendError);
    cache.dispose(); // idempotent
  });

  it('a forward aborted after submission leaves the cache as it was', async () => {
    const { cache } = await prefill(gpu, prompt.slice(0, 12));
    const keys = await allKeys(cache);
    const controller = new AbortController();
    const pending = gpu.forward({ rows: [{ tokens: prompt.slice(12), positions: positions(prompt.length - 12, 12), cache, regime: schedule.short }], signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toThrow();
    expect(cache.length).toBe(12);
    expect(await allKeys(cache)).toEqual(keys);
    // And the next forward is exact.
    const rest = await prefill(gpu, prompt.slice(12), schedule.short, cache);
    const { cache: fresh, logits } = await prefill(gpu, prompt);
    expect(maxAbsDiff(rest.logits, logits)).toBeLessThanOrEqual(1e-5);
    cache.dispose();
    fresh.dispose();
  });

  it('cuts a layer into head blocks past the storage binding limit, and refuses a head that does not fit one, keeping what it holds', async () => {
    const layout = { numLayers: 1, numKvHeads: 2, headDim: 16 };
    // 64 bytes per index and head: a 4 KiB binding holds both heads of 32 indices, or one head of 64.
    const host = { device: gpu.device, maxBindingBytes: 4096 };
    const cache = new GpuKvCache(host, layout, 16);
    const heads = () => cache.keys(0).map((b) => `${b.firstHead}+${b.heads}`);
    expect(heads()).toEqual(['0+2']);
    cache.reserve(20); // doubling to 32 fits one block
    expect([cache.capacity, heads()]).toEqual([32, ['0+2']]);
    cache.reserve(40); // 64 indices: a block per head
    expect([cache.capacity, heads()]).toEqual([64, ['0+1', '1+1']]);
    expect(cache.values(0).map((b) => b.heads)).toEqual([1, 1]);
    expect(() => cache.reserve(70)).toThrow(expect.objectContaining({ code: 'too-large' }));
    expect([cache.capacity, heads()]).toEqual([64, ['0+1', '1+1']]);
    expect(() => new GpuKvCache(host, layout, 65)).toThrow(CacheError);
    cache.dispose();
  });

  it('rejects caches of another backend or device', async () => {
    const { device } = await requestNodeGpuDevice({ adapter: 'software' });
    const other = new GpuKvCache({ device, maxBindingBytes: 1 << 20 }, gpu.createCache().layout);
    await expect(prefill(gpu, [1], schedule.short, other)).rejects.toMatchObject({ code: 'cache-type' });
    await expect(prefill(gpu, [1], schedule.short, new CpuKvCache(other.layout))).rejects.toThrow(BackendError);
    other.dispose();
    device.destroy();
  });
});

describe('on-device rerotation', () => {
  it('rotates every span of a mixed-regime cache like the CPU rerotation, with no readback of the cache', async () => {
    // A stale cache: the prompt under the short regime, then 3 steps under the long one.
    const steps = [11, 12, 13];
    const mine = (await prefill(gpu, prompt)).cache;
    const theirs = (await prefill(ref, prompt)).cache as CpuKvCache;
    await prefill(gpu, steps, schedule.long, mine);
    await prefill(ref, steps, schedule.long, theirs);
    expect(mine.regimeSpans()).toHaveLength(2);
    await gpu.rerotateKeys(mine, schedule.long);
    rerotateCpuKeys(theirs, schedule.long, 'rotate-half');
    expect(mine.uniformRegime()).toBe(schedule.long);
    for (let l = 0; l < 2; l++) expect(maxAbsDiff(await readLayerKeys(mine, l), readCpuLayerKeys(theirs, l)), `layer ${l}`).toBeLessThanOrEqual(1e-4);
    // and back, through tables prepared ahead
    await gpu.prepareRerotation(schedule.long, schedule.short, 64);
    expect(gpu.preparedRerotationRows(schedule.long, schedule.short)).toBe(64);
    await gpu.rerotateKeys(mine, schedule.short);
    rerotateCpuKeys(theirs, schedule.short, 'rotate-half');
    expect(gpu.preparedRerotationRows(schedule.long, schedule.short)).toBe(64); // reused, not regrown
    for (let l = 0; l < 2; l++) expect(maxAbsDiff(await readLayerKeys(mine, l), readCpuLayerKeys(theirs, l)), `layer ${l}`).toBeLessThanOrEqual(1e-4);
    mine.dispose();
    theirs.dispose();
  });

  it('far, sparse positions get fresh tables; a regime of the wrong size is refused before any key moves', async () => {
    const cache = gpu.createCache();
    const theirs = ref.createCache();
    const far = Int32Array.from([150, 151, 230]); // past 2·length + 64: not a dense prefix
    for (const [b, c] of [[gpu, cache], [ref, theirs]] as const) {
      await b.forward({ rows: [{ tokens: [1, 2, 3], positions: far, cache: c, regime: schedule.short }] });
    }
    await gpu.rerotateKeys(cache, schedule.long);
    rerotateCpuKeys(theirs, schedule.long, 'rotate-half');
    expect(maxAbsDiff(await readLayerKeys(cache, 0), readCpuLayerKeys(theirs, 0))).toBeLessThanOrEqual(1e-4);
    const keys = await allKeys(cache);
    const bad = { ...schedule.long, id: 'bad', invFreq: new Float32Array(3) };
    await expect(gpu.rerotateKeys(cache, bad)).rejects.toThrow(BackendError);
    expect(await allKeys(cache)).toEqual(keys);
    await expect(gpu.prepareRerotation(schedule.short, schedule.long, -1)).rejects.toThrow(BackendError);
    cache.dispose();
    theirs.dispose();
  });
});

describe('WebGpuBackend', () => {
  it('names its adapter and kernels; the tiled kernels give the register-blocked logits and rotations', async () => {
    expect(gpu.deviceDescription).toMatch(/\[software\].*register-blocked kernels$/);
    expect(gpu.capabilities).toMatchObject({ cacheLocation: 'gpu', rerotateKeys: true, anglePrecision: 'float32' });
    const { config, weights } = await loadCheckpoint(`${hfDir}${CASE}`);
    const tiled = await WebGpuBackend.create(config, weights, { device: gpu.device, kernels: 'tiled' });
    await weights.close();
    expect(tiled.deviceDescription).toMatch(/tiled kernels$/);
    const a = await prefill(gpu, prompt);
    const b = await prefill(tiled, prompt);
    expect(maxAbsDiff(a.logits, b.logits)).toBeLessThanOrEqual(1e-5);
    // The tiled set's rotation (one pair per invocation) lands where the register-blocked one does.
    await gpu.rerotateKeys(a.cache, schedule.long);
    await tiled.rerotateKeys(b.cache, schedule.long);
    for (let l = 0; l < 2; l++) expect(maxAbsDiff(await readLayerKeys(a.cache, l), await readLayerKeys(b.cache, l)), `layer ${l}`).toBeLessThanOrEqual(1e-4);
    a.cache.dispose();
    b.cache.dispose();
    await tiled.dispose();
    // The shared device outlives a backend that did not create it.
    expect((await prefill(gpu, [1, 2])).logits).toHaveLength(config.vocabSize);
  });

  it('reports missing tensors as WeightsError and a disposed backend as BackendError', async () => {
    const { config, weights } = await loadCheckpoint(`${hfDir}${CASE}`);
    const partial = { has: (n: string) => n !== 'model.norm.weight' && weights.has(n), get: (n: string, s?: readonly number[]) => (n === 'model.norm.weight' ? weights.get('missing') : weights.get(n, s)) };
    await expect(WebGpuBackend.create(config, partial, { device: gpu.device })).rejects.toThrow(WeightsError);
    const b = await WebGpuBackend.create(config, weights, { device: gpu.device });
    await weights.close();
    await b.dispose();
    await expect(prefill(b, [1])).rejects.toMatchObject({ code: 'disposed' });
    expect(() => b.createCache()).toThrow(BackendError);
  });
});

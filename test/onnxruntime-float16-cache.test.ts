/**
 * float16 KV caches (`cacheDtype: 'float16'`) on both onnxruntime backends: core `Float16KvCache`s
 * handed to the graph as float16 tensors (no copy), cast to float32 inside for attention, new rows
 * rounded to float16 by the graph. Checked against the same backend with float32 caches over a
 * teacher-forced stream, through every policy, and against the no-cache oracle.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MODEL_FILE, OnnxRuntimeBackend, exportKey, readValueInfo } from '@ropeswitch/backend-onnxruntime';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import {
  type Backend,
  BackendError,
  CpuKvCache,
  Float16KvCache,
  type KvCache,
  type ModelConfig,
  type RopeSchedule,
  Session,
  type WeightStore,
  createRopeSchedule,
  float16ToFloat32,
  float32ToFloat16,
  generate,
  greedyNoCache,
  loadCheckpoint,
  wrapBackend,
} from '@ropeswitch/core';
import { rePrefill, rerotate, shadowPrefill, stale } from '@ropeswitch/policies';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { GenaiOnnxBackend, writeGenaiModel } from '../packages/backends/onnxruntime/src/genai/index.js';
import { onnx } from '../packages/backends/onnxruntime/src/onnx/onnx-namespace.js';
import { readCpuLayerKeys } from './conformance/policy-runs.js';
import { hfDir, maxAbsDiff } from './support/fixtures.js';
import { scratchDirs } from './support/onnxruntime.js';

/**
 * Max |Δ logit| of float16 against float32 caches, float32 weights. Measured over a teacher-forced
 * stream of 20 + 24 tokens across the crossing (every prompt position and decode step): 2.7e-2 on
 * seed1-gqa, 1.9e-2 to 3.9e-2 on the four LongRoPE fixtures, whose logits have a standard deviation
 * of 2.1: about 1 % of it, binary16's relative rounding (2^-11) on every cached key and value, large
 * in these fixtures (weights drawn at 0.25), carried through the score products of two layers.
 * 0.06 leaves 2× over seed1-gqa and is still an order below what a policy error costs here (the
 * test checks that a stale cache past the crossing is further than 10× this from the oracle).
 */
const F16_TOL = 0.06;
/**
 * The same for int4 genai models (`MatMulNBits` at accuracy level 4 rounds the activations to int8
 * per block, so a perturbation of the cache flips some of those roundings): measured 0.19 (q4f16)
 * and 0.25 (q4) against the same model with float32 caches; int4 itself moves these logits by 7.2.
 */
const Q4_TOL = 0.5;
/**
 * Same float16 graph, different cut (a prefill in one run or in 5-token pieces, a re-prefill against
 * the no-cache oracle): float32 summation-order differences of ~1e-7 that flip a key's rounding by
 * one binary16 step. Measured 4.8e-4 (seed1-gqa; 5e-6 to 1.1e-4 on the other fixtures).
 */
const F16_CUT_TOL = 2e-3;

const tempDir = scratchDirs('ropeswitch-ort-f16-');

/** Token `i` of a fixed stream (teacher forcing: both runs see the same prefix at every step). */
const streamToken = (i: number, vocab: number) => (i * 37 + 11) % vocab;

/** The visible rows of `layer`'s keys as float32 values, for either cache type. */
function layerKeys(cache: KvCache, layer: number): Float32Array {
  if (cache instanceof CpuKvCache) return readCpuLayerKeys(cache, layer);
  if (!(cache instanceof Float16KvCache)) throw new Error(`not a host cache: ${cache.location}`);
  const { numKvHeads, headDim } = cache.layout;
  const n = cache.length * headDim;
  const out = new Float32Array(numKvHeads * n);
  for (let h = 0; h < numKvHeads; h++) float16ToFloat32(cache.keys(layer).subarray(cache.offset(h, 0), cache.offset(h, 0) + n), out.subarray(h * n, (h + 1) * n));
  return out;
}

/** Runs a prompt of `prompt` tokens, then `steps` teacher-forced decode steps, on each backend (regime by total length, one cache each); per step, the logits of each. */
async function teacherForced(backends: readonly Backend[], schedule: RopeSchedule, prompt: number, steps: number, vocab: number): Promise<{ logits: Float32Array[][]; caches: KvCache[] }> {
  const caches = backends.map((b) => b.createCache());
  const logits: Float32Array[][] = backends.map(() => []);
  let at = 0;
  for (const n of [prompt, ...Array.from({ length: steps }, () => 1)]) {
    const tokens = Array.from({ length: n }, (_, j) => streamToken(at + j, vocab));
    const positions = tokens.map((_, j) => at + j);
    const regime = schedule.regimeFor(at + n);
    for (const [k, b] of backends.entries()) {
      logits[k]!.push((await b.forward({ rows: [{ tokens, positions, cache: caches[k]!, regime }] })).rows[0]!.data);
    }
    at += n;
  }
  return { logits, caches };
}

const worstOf = (a: readonly Float32Array[], b: readonly Float32Array[]) => Math.max(...a.map((x, i) => maxAbsDiff(x, b[i]!)));

async function errorOf(run: () => unknown): Promise<unknown> {
  try {
    await run();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

describe('onnxruntime backend with float16 KV caches (seed1-gqa: L = 32, GQA 4/2)', () => {
  let config: ModelConfig;
  let weights: WeightStore;
  let schedule: RopeSchedule;
  let f32: OnnxRuntimeBackend;
  let f16: OnnxRuntimeBackend;
  beforeAll(async () => {
    ({ config, weights } = await loadCheckpoint(`${hfDir}seed1-gqa`));
    schedule = createRopeSchedule(config.rope);
    const cacheDir = tempDir();
    f32 = await OnnxRuntimeBackend.open(config, weights, { cacheDir, threads: 1 });
    f16 = await OnnxRuntimeBackend.open(config, weights, { cacheDir, threads: 1, cacheDtype: 'float16' });
  });
  afterAll(async () => {
    await f32?.dispose();
    await f16?.dispose();
    await weights?.close();
  });

  it('makes Float16KvCaches of half the bytes, from an export of its own whose cache inputs and new rows are float16', () => {
    const [a, b] = [f32.createCache(), f16.createCache()];
    expect(a).toBeInstanceOf(CpuKvCache);
    expect(b).toBeInstanceOf(Float16KvCache);
    a.reserve(100);
    b.reserve(100);
    expect(b.byteLength).toBe(a.byteLength / 2);
    expect(f16.cacheDtype).toBe('float16');
    expect(f16.exported.dir).not.toBe(f32.exported.dir);
    expect(f16.exported.manifest.cacheDtype).toBe('float16');
    expect(f32.exported.manifest.cacheDtype).toBeUndefined();
    // A float32 export keeps the key it had before float16 caches existed (no re-export on upgrade).
    const settings = { config, slots: 4 };
    expect(exportKey({ ...settings, cacheDtype: 'float32' }, 'w')).toBe(exportKey(settings, 'w'));
    expect(exportKey({ ...settings, cacheDtype: 'float16' }, 'w')).not.toBe(exportKey(settings, 'w'));
    const graph = onnx.ModelProto.decode(readFileSync(join(f16.exported.dir, MODEL_FILE))).graph!;
    const elemType = (name: string, list: typeof graph.input) => readValueInfo(list!.find((v) => v.name === name)!).elemType;
    expect(elemType('past_key.0.0', graph.input)).toBe(onnx.TensorProto.DataType.FLOAT16);
    expect(elemType('new_value.1', graph.output)).toBe(onnx.TensorProto.DataType.FLOAT16);
    expect(elemType('logits', graph.output)).toBe(onnx.TensorProto.DataType.FLOAT);
    a.dispose();
    b.dispose();
  });

  it(`teacher-forced logits stay within ${F16_TOL} of float32 caches across the crossing; layer-0 keys are the float32 keys rounded to nearest even`, async () => {
    const { logits, caches } = await teacherForced([f32, f16], schedule, 20, 24, config.vocabSize);
    const worst = worstOf(logits[1]!, logits[0]!);
    expect(worst).toBeLessThanOrEqual(F16_TOL);
    expect(worst).toBeGreaterThan(0); // the float16 cache is really in use
    // Layer 0's keys come from the embeddings alone: the same float32 values in both graphs, so the
    // graph's Cast must round them exactly as core's float32ToFloat16 does.
    const keys32 = layerKeys(caches[0]!, 0);
    const keys16 = (caches[1] as Float16KvCache).keys(0);
    const { numKvHeads, headDim } = config;
    const n = caches[1]!.length * headDim;
    const stored = new Uint16Array(numKvHeads * n);
    for (let h = 0; h < numKvHeads; h++) stored.set(keys16.subarray((caches[1] as Float16KvCache).offset(h, 0), (caches[1] as Float16KvCache).offset(h, 0) + n), h * n);
    expect(Array.from(stored)).toEqual(Array.from(float32ToFloat16(keys32)));
    caches.forEach((c) => c.dispose());
  });

  it(`a prefill gives the same results however it is cut into runs, within ${F16_CUT_TOL} (a run attends to its own rows rounded, as later runs do)`, async () => {
    const chunked = await OnnxRuntimeBackend.open(config, weights, { cacheDir: f16.exported.dir.replace(/\/[^/]+$/, ''), threads: 1, cacheDtype: 'float16', prefillChunk: 5 });
    try {
      expect(chunked.exported.dir).toBe(f16.exported.dir);
      const { logits, caches } = await teacherForced([f16, chunked], schedule, 23, 3, config.vocabSize);
      expect(worstOf(logits[1]!, logits[0]!)).toBeLessThanOrEqual(F16_CUT_TOL);
      // Keys agree but for a few single binary16 steps (≤ 2^-10 relative).
      for (let l = 0; l < config.numLayers; l++) {
        const [x, y] = [layerKeys(caches[0]!, l), layerKeys(caches[1]!, l)];
        for (let i = 0; i < x.length; i++) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -10);
      }
      caches.forEach((c) => c.dispose());
    } finally {
      await chunked.dispose();
    }
  });

  describe('every policy on float16 caches', () => {
    const prompt = Array.from({ length: 24 }, (_, i) => streamToken(i, 128));
    const maxNewTokens = 16; // crosses L = 32 at step 9
    const policies = { stale, rePrefill, rerotate, shadowPrefill } as const;

    for (const [name, make] of Object.entries(policies)) {
      it(`${name}: the same tokens as on float32 caches, logits within ${F16_TOL}; the caches stay float16`, async () => {
        const run = async (backend: Backend) => {
          const session = new Session(wrapBackend(backend, make()));
          const result = await generate(session, prompt, { maxNewTokens });
          return { session, result };
        };
        const [a, b] = [await run(f32), await run(f16)];
        expect(b.result.tokens).toEqual(a.result.tokens);
        expect(worstOf(b.result.logits, a.result.logits)).toBeLessThanOrEqual(F16_TOL);
        expect(b.session.cache).toBeInstanceOf(Float16KvCache);
        expect(b.session.cache.length).toBe(prompt.length + maxNewTokens - 1);
        expect(b.session.cache.uniformRegime()?.id).toBe(name === 'stale' ? undefined : schedule.regimeFor(100).id);
        a.session.dispose();
        b.session.dispose();
      });
    }

    for (const [name, make] of [['rePrefill', rePrefill], ['shadowPrefill', shadowPrefill]] as const) {
      it(`${name} (exact) matches the no-cache oracle: within ${F16_CUT_TOL} on the same float16 backend, within ${F16_TOL} of the float32 oracle; a stale cache does not`, async () => {
        const session = new Session(wrapBackend(f16, make()));
        const result = await generate(session, prompt, { maxNewTokens });
        const oracle16 = await greedyNoCache(f16, prompt, { maxNewTokens });
        const oracle32 = await greedyNoCache(f32, prompt, { maxNewTokens });
        expect(result.tokens).toEqual(oracle16.tokens);
        expect(result.tokens).toEqual(oracle32.tokens);
        expect(worstOf(result.logits, oracle16.logits)).toBeLessThanOrEqual(F16_CUT_TOL);
        expect(worstOf(result.logits, oracle32.logits)).toBeLessThanOrEqual(F16_TOL);
        session.dispose();
        // The tolerance tells a policy's error from rounding: a stale cache past the crossing, on the
        // same float16 backend, is far outside it.
        const staleSession = new Session(wrapBackend(f16, stale()));
        const staleResult = await generate(staleSession, prompt, { maxNewTokens, teacherTokens: oracle16.tokens });
        expect(worstOf(staleResult.logits, oracle16.logits)).toBeGreaterThan(10 * F16_TOL);
        staleSession.dispose();
      });
    }
  });

  it('rerotateKeys on a float16 cache: the float32 rotation of its keys, rounded', async () => {
    const { caches } = await teacherForced([f16], schedule, 20, 0, config.vocabSize);
    const cache = caches[0] as Float16KvCache;
    const long = schedule.regimeFor(100);
    const copy = new CpuKvCache(cache.layout, cache.capacity);
    for (let l = 0; l < config.numLayers; l++) copy.keys(l).set(float16ToFloat32(cache.keys(l)));
    copy.commit(cache.tokens(), cache.positions(), cache.regimeAt(0));
    await f16.rerotateKeys(cache, long);
    await f32.rerotateKeys(copy, long);
    expect(cache.uniformRegime()).toBe(long);
    for (let l = 0; l < config.numLayers; l++) expect(Array.from(cache.keys(l))).toEqual(Array.from(float32ToFloat16(copy.keys(l))));
    cache.dispose();
  });

  it('a failed forward leaves a float16 cache as it was', async () => {
    const cache = f16.createCache();
    const regime = schedule.regimeFor(8);
    await f16.forward({ rows: [{ tokens: [1, 2, 3], positions: [0, 1, 2], cache, regime }] });
    const before = { keys: cache.keys(0).slice(), values: cache.values(1).slice(), revision: cache.revision };
    const spy = vi.spyOn(f16['session']!, 'run').mockRejectedValueOnce(new Error('boom'));
    await expect(f16.forward({ rows: [{ tokens: [4, 5], positions: [3, 4], cache, regime }] })).rejects.toMatchObject({ name: 'BackendError', code: 'run' });
    spy.mockRestore();
    expect(cache.length).toBe(3);
    expect(cache.revision).toBe(before.revision);
    expect(cache.keys(0).subarray(0, before.keys.length)).toEqual(before.keys);
    expect(cache.values(1).subarray(0, before.values.length)).toEqual(before.values);
    cache.dispose();
  });

  it('a cache of the other element type fails with BackendError cache-type naming cacheDtype; the reference backend refuses float16 caches; a bad cacheDtype is a bad option', async () => {
    const regime = schedule.regimeFor(4);
    const row = (cache: KvCache) => ({ rows: [{ tokens: [1], positions: [0], cache, regime }] });
    const a = f32.createCache();
    const b = f16.createCache();
    expect(await errorOf(() => f16.forward(row(a)))).toMatchObject({ name: 'BackendError', code: 'cache-type', message: expect.stringMatching(/cacheDtype 'float16'.*float32/) });
    expect(await errorOf(() => f32.forward(row(b)))).toMatchObject({ name: 'BackendError', code: 'cache-type', message: expect.stringMatching(/cacheDtype 'float32'.*float16/) });
    expect(await errorOf(() => f32.rerotateKeys(b, schedule.regimeFor(100)))).toMatchObject({ code: 'cache-type' });
    const reference = new ReferenceBackend(config, weights, { kernels: 'typescript' });
    expect(await errorOf(() => reference.forward(row(b)))).toBeInstanceOf(BackendError);
    expect(await errorOf(() => reference.forward(row(b)))).toMatchObject({ code: 'cache-type' });
    await reference.dispose();
    expect(b.length).toBe(0);
    expect(await errorOf(() => OnnxRuntimeBackend.open(config, weights, { cacheDtype: 'bfloat16' as 'float16' }))).toMatchObject({
      name: 'BackendError',
      code: 'bad-option',
      message: expect.stringMatching(/cacheDtype/),
    });
    a.dispose();
    b.dispose();
  });
});

describe('GenaiOnnxBackend with float16 KV caches (the writer\'s fp16 and q4f16 variants of seed1-gqa)', () => {
  let config: ModelConfig;
  let schedule: RopeSchedule;
  const dirs = new Map<string, string>();
  beforeAll(async () => {
    let weights: WeightStore;
    ({ config, weights } = await loadCheckpoint(`${hfDir}seed1-gqa`));
    schedule = createRopeSchedule(config.rope);
    try {
      for (const [variant, options] of [['fp16', { precision: 'fp16' }], ['q4f16', { precision: 'fp16', quantize: 'int4' }]] as const) {
        const dir = join(tempDir(), variant);
        await writeGenaiModel(dir, config, weights, options);
        dirs.set(variant, dir);
      }
    } finally {
      await weights.close();
    }
  });

  for (const [variant, tol] of [['fp16', F16_TOL], ['q4f16', Q4_TOL]] as const) {
    it(`${variant}: float16 caches give the float32 caches' logits within ${tol} over a teacher-forced stream, and every policy runs on them`, async () => {
      const open = (cacheDtype: 'float32' | 'float16') =>
        GenaiOnnxBackend.open(dirs.get(variant)!, { hfConfigDir: `${hfDir}seed1-gqa`, sessionOptions: { intraOpNumThreads: 1 }, cacheDtype });
      const [a, b] = [await open('float32'), await open('float16')];
      try {
        expect(b.rewrite.elemType).toBe(onnx.TensorProto.DataType.FLOAT16);
        const { logits, caches } = await teacherForced([a, b], schedule, 20, 16, config.vocabSize);
        expect(caches[1]).toBeInstanceOf(Float16KvCache);
        expect(caches[1]!.byteLength).toBe(caches[0]!.byteLength / 2);
        const worst = worstOf(logits[1]!, logits[0]!);
        expect(worst).toBeLessThanOrEqual(tol);
        expect(worst).toBeGreaterThan(0);
        caches.forEach((c) => c.dispose());
        for (const make of [stale, rePrefill, rerotate, shadowPrefill]) {
          const session = new Session(wrapBackend(b, make()));
          const result = await generate(session, Array.from({ length: 24 }, (_, i) => streamToken(i, 128)), { maxNewTokens: 12 });
          expect(result.tokens).toHaveLength(12);
          expect(session.cache).toBeInstanceOf(Float16KvCache);
          session.dispose();
        }
      } finally {
        await a.dispose();
        await b.dispose();
      }
    });
  }
});

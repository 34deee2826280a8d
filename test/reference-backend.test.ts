import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BackendError,
  CpuKvCache,
  type ForwardRow,
  type KvCache,
  type ModelConfig,
  type RopeRegime,
  type RopeSchedule,
  WeightsError,
  Session,
  createRopeSchedule,
  greedyDecode,
  greedyNoCache,
  loadCheckpoint,
  noCacheForward,
  positionLimit,
} from '@ropeswitch/core';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeededRandom, writeRandomCheckpoint } from '../packages/cli/src/index.js';
import { TINY_BASE_JSON, TINY_LONGROPE_JSON, snapshotByLayer } from '@ropeswitch/testkit';
import { maxAbsDiff } from './support/fixtures.js';

/** A seeded uniform [0, 1) source. */
function seeded(seed: number): () => number {
  const rng = new SeededRandom(seed);
  return () => rng.next();
}

// ---------------------------------------------------------------------------------------------
// Tiny seeded models

/** Phi-3 with LongRoPE (fused projections, separate lm_head, L = 16, M = 64): the policy tests' tiny model. */
const PHI3 = TINY_LONGROPE_JSON;

/** Llama with split projections, tied embeddings, q/k/v biases (qwen2-style) and MLP biases; dynamic NTK past 32. */
const LLAMA = {
  ...TINY_BASE_JSON,
  model_type: 'llama',
  max_position_embeddings: 32,
  tie_word_embeddings: true,
  attention_bias: true,
  mlp_bias: true,
  rope_scaling: { type: 'dynamic', factor: 2.0 },
};

/** Phi-3 with partial rotary: r = 4 of head_dim 8 (two factors each). */
const PARTIAL = {
  ...PHI3,
  partial_rotary_factor: 0.5,
  rope_scaling: { type: 'longrope', short_factor: [1.0, 1.7], long_factor: [3.0, 9.0], short_mscale: 1.05, long_mscale: 1.2 },
};

/** GPT-J style pairing with a static (linear) schedule. */
const INTERLEAVED = {
  ...TINY_BASE_JSON,
  model_type: 'llama',
  max_position_embeddings: 64,
  rope_interleaved: true,
  rope_scaling: { type: 'linear', factor: 2.0 },
};

interface Model {
  readonly name: string;
  readonly config: ModelConfig;
  readonly backend: ReferenceBackend;
  readonly schedule: RopeSchedule;
  /** Distinct regimes of the schedule (a few lengths on both sides of its threshold). */
  readonly regimes: readonly RopeRegime[];
  /** The regime before the threshold and one after it (the same for static schedules). */
  readonly before: RopeRegime;
  readonly after: RopeRegime;
}

const MODEL_JSON: Record<string, Record<string, unknown>> = {
  phi3: PHI3,
  llama: LLAMA,
  partial: PARTIAL,
  interleaved: INTERLEAVED,
};

let root: string;
const models = new Map<string, Model>();

async function openModel(dir: string): Promise<{ config: ModelConfig; backend: ReferenceBackend }> {
  const { config, weights } = await loadCheckpoint(dir);
  try {
    return { config, backend: new ReferenceBackend(config, weights) };
  } finally {
    await weights.close();
  }
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ropeswitch-ref-'));
  let seed = 101;
  for (const [name, json] of Object.entries(MODEL_JSON)) {
    const dir = join(root, name);
    await mkdir(dir);
    await writeRandomCheckpoint(dir, json, { seed: seed++ });
    const { config, backend } = await openModel(dir);
    const schedule = createRopeSchedule(config.rope);
    const t = schedule.threshold ?? 16;
    const byId = new Map<string, RopeRegime>();
    for (const S of [1, t, t + 1, t + 5, t + 13]) byId.set(schedule.regimeFor(S).id, schedule.regimeFor(S));
    models.set(name, {
      name,
      config,
      backend,
      schedule,
      regimes: [...byId.values()],
      before: schedule.regimeFor(t),
      after: schedule.regimeFor(t + 1),
    });
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const model = (name: string): Model => models.get(name)!;
const MODEL_NAMES = Object.keys(MODEL_JSON);

// ---------------------------------------------------------------------------------------------
// Helpers

const randInt = (rand: () => number, lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const randomTokens = (rand: () => number, n: number, vocab: number) => Array.from({ length: n }, () => randInt(rand, 0, vocab - 1));
const range = (from: number, n: number) => Int32Array.from({ length: n }, (_, i) => from + i);

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Runs one row; returns its logits. */
async function run(m: Model, cache: KvCache, tokens: ArrayLike<number>, regime: RopeRegime, logits?: number): Promise<Float32Array> {
  const positions = range(cache.length, tokens.length);
  const row: ForwardRow = logits === undefined ? { tokens, positions, cache, regime } : { tokens, positions, cache, regime, logits };
  const result = await m.backend.forward({ rows: [row] });
  expect(result.rows).toHaveLength(1);
  return result.rows[0]!.data;
}

/** Layer `layer`'s visible keys of one kv head. */
function headKeys(cache: KvCache, layer: number, head: number): Float32Array {
  const c = cache as CpuKvCache;
  const from = c.offset(head, 0);
  return c.keys(layer).slice(from, from + c.length * c.layout.headDim);
}

async function expectRejects(promise: Promise<unknown>, errorClass: new (...args: never[]) => Error, code?: string): Promise<unknown> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(errorClass);
  if (code !== undefined) expect((caught as { code: string }).code).toBe(code);
  return caught;
}

// ---------------------------------------------------------------------------------------------
// Properties

describe.each(MODEL_NAMES)('reference backend, %s model', (name) => {
  it('loads the tiny model the config describes', () => {
    const m = model(name);
    expect(m.backend.capabilities.cacheLocation).toBe('cpu');
    expect(m.backend.capabilities.rerotateKeys).toBe(true);
    const cache = m.backend.createCache();
    expect(cache.layout).toEqual({ numLayers: 2, numKvHeads: 2, headDim: 8 });
    if (name === 'partial') expect(m.config.rope.rotaryDim).toBe(4);
    if (name !== 'interleaved') expect(m.regimes.length).toBeGreaterThanOrEqual(2);
  });

  it('cached chunked decoding under one fixed regime equals one forward without cache under it', async () => {
    const m = model(name);
    const rand = seeded(0xc0ffee + name.length);
    const limit = positionLimit(m.config);
    for (let k = 0; k < 30; k++) {
      const n = randInt(rand, 2, Math.min(40, limit));
      const ids = randomTokens(rand, n, m.config.vocabSize);
      const regime = pick(rand, m.regimes);

      const full = m.backend.createCache();
      const expected = await run(m, full, ids, regime, n);
      expect(expected.length).toBe(n * m.config.vocabSize);

      const cache = m.backend.createCache();
      const prefill = randInt(rand, 1, n - 1);
      const parts = [await run(m, cache, ids.slice(0, prefill), regime, prefill)];
      const oneAtATime = rand() < 0.5;
      for (let at = prefill; at < n; ) {
        const size = oneAtATime ? 1 : Math.min(randInt(rand, 1, 5), n - at);
        parts.push(await run(m, cache, ids.slice(at, at + size), regime, size));
        at += size;
      }
      expect(maxAbsDiff(concat(parts), expected), `case ${k}: n = ${n}, prefill = ${prefill}, ${regime.id}`).toBeLessThanOrEqual(1e-4);

      // Both caches hold the same tokens, positions, regime and keys/values.
      const a = snapshotByLayer(cache);
      const b = snapshotByLayer(full);
      expect(a.tokens).toEqual(ids);
      expect(a.positions).toEqual(Array.from(range(0, n)));
      expect(a.spans).toEqual([[0, n, regime.id]]);
      expect(b.spans).toEqual(a.spans);
      for (let l = 0; l < m.config.numLayers; l++) {
        expect(maxAbsDiff(a.keys[l]!, b.keys[l]!)).toBeLessThanOrEqual(1e-5);
        expect(maxAbsDiff(a.values[l]!, b.values[l]!)).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('batched rows give the same logits and caches as each row alone', async () => {
    const m = model(name);
    const rand = seeded(0xba7c4 + name.length);
    const vocab = m.config.vocabSize;
    for (let k = 0; k < 30; k++) {
      const count = randInt(rand, 2, 4);
      const caches: KvCache[] = [];
      const rows: ForwardRow[] = [];
      for (let r = 0; r < count; r++) {
        const cache = m.backend.createCache();
        // A past of 0–12 tokens, possibly under two regimes (a stale cache).
        for (let chunk = randInt(rand, 0, 2); chunk > 0; chunk--) {
          await run(m, cache, randomTokens(rand, randInt(rand, 1, 6), vocab), pick(rand, m.regimes), 0);
        }
        const n = randInt(rand, 1, 6);
        const logits = randInt(rand, 0, n);
        caches.push(cache);
        rows.push({ tokens: randomTokens(rand, n, vocab), positions: range(cache.length, n), cache, regime: pick(rand, m.regimes), logits });
      }
      const alone = caches.map((c) => c.clone());
      const batched = await m.backend.forward({ rows });
      expect(batched.rows).toHaveLength(count);
      for (let r = 0; r < count; r++) {
        const row = rows[r]!;
        const single = await m.backend.forward({ rows: [{ ...row, cache: alone[r]! }] });
        const got = batched.rows[r]!;
        const want = single.rows[0]!;
        expect(got.count).toBe(row.logits);
        expect(got.vocabSize).toBe(vocab);
        expect(got.data.length).toBe(row.logits! * vocab);
        expect(maxAbsDiff(got.data, want.data), `case ${k} row ${r}`).toBeLessThanOrEqual(1e-6);
        expect(snapshotByLayer(caches[r]!)).toEqual(snapshotByLayer(alone[r]!));
      }
    }
  });

  it('rerotateKeys to the long regime gives layer-0 keys equal to a fresh long prefill', async () => {
    const m = model(name);
    const rand = seeded(0x7e707 + name.length);
    const t = m.schedule.threshold ?? 16;
    for (let k = 0; k < 10; k++) {
      const n = randInt(rand, 2, t);
      const ids = randomTokens(rand, n, m.config.vocabSize);
      const cache = m.backend.createCache();
      // Mixed half the time: a short prefix, then the rest under the long regime.
      const split = rand() < 0.5 ? n : randInt(rand, 1, n - 1);
      await run(m, cache, ids.slice(0, split), m.before, 0);
      if (split < n) await run(m, cache, ids.slice(split), m.after, 0);
      const valuesBefore = snapshotByLayer(cache).values;
      // To long, then (the mixed case's long tail included) back to short: both must land on a fresh prefill.
      for (const to of [m.after, m.before]) {
        await m.backend.rerotateKeys(cache, to);
        expect(cache.uniformRegime()).toBe(to);
        expect(snapshotByLayer(cache).values).toEqual(valuesBefore);
        expect(Array.from(cache.positions())).toEqual(Array.from(range(0, n)));

        const fresh = m.backend.createCache();
        await run(m, fresh, ids, to, 0);
        for (let h = 0; h < m.config.numKvHeads; h++) {
          const got = headKeys(cache, 0, h);
          const want = headKeys(fresh, 0, h);
          const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
          expect(maxAbsDiff(got, want) / scale, `case ${k} head ${h} → ${to.id}`).toBeLessThanOrEqual(1e-5);
        }
      }
    }
  });

  it('rerotating a mixed cache back to the short regime moves its long tail (layer 0 = fresh short prefill)', async () => {
    const m = model(name);
    const t = m.schedule.threshold ?? 16;
    const ids = randomTokens(seeded(77), t, m.config.vocabSize);
    const cache = m.backend.createCache();
    await run(m, cache, ids.slice(0, 4), m.before, 0);
    await run(m, cache, ids.slice(4), m.after, 0);
    await m.backend.rerotateKeys(cache, m.before);
    const fresh = m.backend.createCache();
    await run(m, fresh, ids, m.before, 0);
    for (let h = 0; h < m.config.numKvHeads; h++) {
      const want = headKeys(fresh, 0, h);
      const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
      expect(maxAbsDiff(headKeys(cache, 0, h), want) / scale).toBeLessThanOrEqual(1e-5);
    }
  });
});

describe('reference backend: rerotation sanity', () => {
  it('rerotation really moves keys between distinct regimes (phi3 short → long)', async () => {
    const m = model('phi3');
    expect(m.before.id).not.toBe(m.after.id);
    const ids = [3, 14, 15, 9, 26, 5, 35, 8];
    const cache = m.backend.createCache();
    await run(m, cache, ids, m.before, 0);
    const shortKeys = headKeys(cache, 0, 1);
    await m.backend.rerotateKeys(cache, m.after);
    // Position 0 is not rotated by either regime (same attention factor), later ones move.
    expect(maxAbsDiff(headKeys(cache, 0, 1).subarray(0, 8), shortKeys.subarray(0, 8))).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(headKeys(cache, 0, 1), shortKeys)).toBeGreaterThan(1e-3);
  });

  it('rerotation lands where a fresh forward does at p ≈ 4100, for float32 and float64 angles', async () => {
    // A Phi-3-mini-like threshold: L = 4096. Layer-0 keys depend only on token and position, so a
    // few tokens placed at positions 4090… stand for a long prompt.
    const dir = join(root, 'phi3-4k');
    await mkdir(dir);
    await writeRandomCheckpoint(dir, { ...PHI3, max_position_embeddings: 8192, original_max_position_embeddings: 4096 }, { seed: 31 });
    const ids = [3, 1, 4, 1, 5, 9, 2, 6];
    const positions = range(4090, ids.length);
    for (const anglePrecision of ['float32', 'float64'] as const) {
      const { config, weights } = await loadCheckpoint(dir);
      const backend = new ReferenceBackend(config, weights, { anglePrecision });
      await weights.close();
      expect(backend.capabilities.anglePrecision).toBe(anglePrecision);
      const schedule = createRopeSchedule(config.rope);
      const [short, long] = [schedule.regimeFor(4096), schedule.regimeFor(4097)];
      const cache = backend.createCache();
      await backend.forward({ rows: [{ tokens: ids, positions, cache, regime: short, logits: 0 }] });
      await backend.rerotateKeys(cache, long);
      const fresh = backend.createCache();
      await backend.forward({ rows: [{ tokens: ids, positions, cache: fresh, regime: long, logits: 0 }] });
      for (let h = 0; h < config.numKvHeads; h++) {
        const want = headKeys(fresh, 0, h);
        const scale = want.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
        expect(maxAbsDiff(headKeys(cache, 0, h), want) / scale, `${anglePrecision} head ${h}`).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  // Design §5: bad input never corrupts a cache. forward() rejects a regime of another rotary size
  // ('regime-size'); rerotateKeys does not, and writes NaN into the rotated dims of every key.
  it('rerotateKeys refuses a regime of another rotary size and leaves the cache unchanged', async () => {
    const m = model('partial'); // r = 4: two pairs
    const cache = m.backend.createCache();
    await run(m, cache, [1, 2, 3, 4], m.before, 0);
    const before = snapshotByLayer(cache);
    const wrong = model('phi3').after; // four pairs
    await expectRejects(m.backend.rerotateKeys(cache, wrong), BackendError);
    expect(snapshotByLayer(cache)).toEqual(before);
    expect(snapshotByLayer(cache).keys.flat().every(Number.isFinite)).toBe(true);
  });

  it('prepareRerotation ahead of the crossing changes no key bits: the rotation equals a cold one', async () => {
    const m = model('phi3');
    const ids = randomTokens(seeded(5), 14, m.config.vocabSize);
    const cold = m.backend.createCache();
    await run(m, cold, ids, m.before, 0);
    const warm = m.backend.createCache();
    await run(m, warm, ids, m.before, 0);
    // A separate backend instance (its own tables), prepared in two pieces, one a prefix.
    const { config, weights } = await loadCheckpoint(join(root, 'phi3'));
    const prepared = new ReferenceBackend(config, weights);
    await weights.close();
    await prepared.prepareRerotation(m.before, m.after, 6);
    await prepared.prepareRerotation(m.before, m.after, 16);
    await m.backend.rerotateKeys(cold, m.after);
    await prepared.rerotateKeys(warm, m.after);
    expect(snapshotByLayer(warm)).toEqual(snapshotByLayer(cold));
    expect(warm.uniformRegime()).toBe(m.after);
    await prepared.dispose();
  });

  it('prepareRerotation refuses regimes of another rotary size and position counts past the model limit', async () => {
    const m = model('partial');
    const wrong = model('phi3').after;
    await expectRejects(m.backend.prepareRerotation(m.before, wrong, 4), BackendError, 'regime-size');
    await expectRejects(m.backend.prepareRerotation(wrong, m.before, 4), BackendError, 'regime-size');
    for (const bad of [-1, 1.5, positionLimit(m.config) + 1, Number.NaN]) {
      await expectRejects(m.backend.prepareRerotation(m.before, m.after, bad), BackendError, 'bad-positions');
    }
  });

  it('rerotateKeys refuses a cache that is not a CpuKvCache', async () => {
    const m = model('phi3');
    const foreign = fakeCache(m.backend.createCache().layout);
    await expectRejects(m.backend.rerotateKeys(foreign, m.after), BackendError, 'cache-type');
  });
});

// ---------------------------------------------------------------------------------------------
// Failures leave caches alone

/** A cache of the right location and layout that the reference backend did not make. */
function fakeCache(layout: CpuKvCache['layout']): KvCache {
  const inner = new CpuKvCache(layout);
  return {
    location: 'cpu',
    layout,
    get length() {
      return inner.length;
    },
    disposed: false,
    byteLength: 0,
    tokens: () => inner.tokens(),
    positions: () => inner.positions(),
    regimeAt: (i) => inner.regimeAt(i),
    regimeSpans: () => inner.regimeSpans(),
    uniformRegime: () => inner.uniformRegime(),
    clone: () => inner.clone(),
    replaceWith: (other) => inner.replaceWith(other),
    reserve: (n) => inner.reserve(n),
    crop: (n) => inner.crop(n),
    dispose: () => inner.dispose(),
  };
}

describe('reference backend: a failed forward changes no cache', () => {
  /** Two caches with some history: one exactly at its capacity (16) so a reserve must grow it. */
  async function twoCaches(m: Model): Promise<KvCache[]> {
    const a = m.backend.createCache();
    await run(m, a, randomTokens(seeded(1), 16, 40), m.before, 0);
    expect((a as CpuKvCache).capacity).toBe(16);
    const b = m.backend.createCache();
    await run(m, b, randomTokens(seeded(2), 5, 40), m.after, 0);
    return [a, b];
  }

  const rowsFor = (m: Model, caches: KvCache[], tokens: number[][] = [[1, 2, 3], [4]]): ForwardRow[] =>
    caches.map((cache, i) => ({ tokens: tokens[i]!, positions: range(cache.length, tokens[i]!.length), cache, regime: i === 0 ? m.after : m.before }));

  /** After the failure, each cache must behave exactly as an untouched clone of it does. */
  async function expectUntouched(m: Model, caches: KvCache[], clones: KvCache[], before: ReturnType<typeof snapshotByLayer>[]) {
    caches.forEach((c, i) => expect(snapshotByLayer(c), `cache ${i}`).toEqual(before[i]));
    for (let i = 0; i < caches.length; i++) {
      const got = await run(m, caches[i]!, [7, 8], m.after, 2);
      const want = await run(m, clones[i]!, [7, 8], m.after, 2);
      expect(maxAbsDiff(got, want)).toBe(0);
      expect(snapshotByLayer(caches[i]!)).toEqual(snapshotByLayer(clones[i]!));
    }
  }

  for (const name of ['phi3', 'llama']) {
    it(`an already aborted signal (${name})`, async () => {
      const m = model(name);
      const caches = await twoCaches(m);
      const clones = caches.map((c) => c.clone());
      const before = caches.map(snapshotByLayer);
      const controller = new AbortController();
      controller.abort();
      let caught: unknown;
      try {
        await m.backend.forward({ rows: rowsFor(m, caches), signal: controller.signal });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeDefined();
      expect((caught as Error).name).toBe('AbortError');
      await expectUntouched(m, caches, clones, before);
    });

    it(`a signal that aborts at any later check, e.g. after layer 0 wrote its keys (${name})`, async () => {
      const m = model(name);
      let failures = 0;
      // Abort at the 1st, 2nd, … check the backend makes, until a forward gets through.
      for (let stopAt = 1; stopAt < 20; stopAt++) {
        const caches = await twoCaches(m);
        const clones = caches.map((c) => c.clone());
        const before = caches.map(snapshotByLayer);
        let checks = 0;
        const signal = {
          aborted: false,
          throwIfAborted() {
            if (++checks === stopAt) throw new Error(`stop at check ${stopAt}`);
          },
        } as unknown as AbortSignal;
        let threw = false;
        try {
          await m.backend.forward({ rows: rowsFor(m, caches), signal });
        } catch (err) {
          threw = true;
          expect((err as Error).message).toBe(`stop at check ${stopAt}`);
        }
        if (!threw) {
          expect(caches[0]!.length).toBe(before[0]!.length + 3);
          break;
        }
        failures++;
        await expectUntouched(m, caches, clones, before);
      }
      // At least one check per layer fired before success.
      expect(failures).toBeGreaterThanOrEqual(m.config.numLayers);
    });

    it(`a bad last row (${name})`, async () => {
      const m = model(name);
      const caches = await twoCaches(m);
      const clones = caches.map((c) => c.clone());
      const before = caches.map(snapshotByLayer);
      await expectRejects(m.backend.forward({ rows: rowsFor(m, caches, [[1, 2, 3], [40]]) }), BackendError, 'token-out-of-range');
      // A cache of a foreign type in the last row fails after the first row's cache was reserved (grown).
      const foreign = fakeCache(caches[0]!.layout);
      const rows = [...rowsFor(m, caches), { tokens: [1], positions: [0], cache: foreign, regime: m.before }];
      await expectRejects(m.backend.forward({ rows }), BackendError, 'cache-type');
      expect(foreign.length).toBe(0);
      await expectUntouched(m, caches, clones, before);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Logits count

describe('reference backend: logits option', () => {
  it('returns 0, 1 (default) or n trailing positions, and always extends the cache', async () => {
    const m = model('phi3');
    const ids = [5, 6, 7, 8, 9];
    const base = m.backend.createCache();
    await run(m, base, [1, 2, 3], m.before, 0);
    const V = m.config.vocabSize;

    const c0 = base.clone();
    const r0 = await m.backend.forward({ rows: [{ tokens: ids, positions: range(3, 5), cache: c0, regime: m.before, logits: 0 }] });
    expect(r0.rows[0]!.count).toBe(0);
    expect(r0.rows[0]!.data.length).toBe(0);
    expect(c0.length).toBe(8);

    const cDefault = base.clone();
    const rDefault = await m.backend.forward({ rows: [{ tokens: ids, positions: range(3, 5), cache: cDefault, regime: m.before }] });
    expect(rDefault.rows[0]!.count).toBe(1);
    expect(rDefault.rows[0]!.data.length).toBe(V);

    const c1 = base.clone();
    const r1 = await m.backend.forward({ rows: [{ tokens: ids, positions: range(3, 5), cache: c1, regime: m.before, logits: 1 }] });
    expect(Array.from(r1.rows[0]!.data)).toEqual(Array.from(rDefault.rows[0]!.data));

    const cn = base.clone();
    const rn = await m.backend.forward({ rows: [{ tokens: ids, positions: range(3, 5), cache: cn, regime: m.before, logits: 5 }] });
    expect(rn.rows[0]!.count).toBe(5);
    expect(rn.rows[0]!.data.length).toBe(5 * V);
    expect(maxAbsDiff(rn.rows[0]!.data.subarray(4 * V), r1.rows[0]!.data)).toBeLessThanOrEqual(1e-6);
    // Logits of position 3 of 5 equal the last logits after feeding only the first four.
    const c4 = base.clone();
    const r4 = await run(m, c4, ids.slice(0, 4), m.before, 1);
    expect(maxAbsDiff(rn.rows[0]!.data.subarray(3 * V, 4 * V), r4)).toBeLessThanOrEqual(1e-5);

    for (const c of [c0, cDefault, c1, cn]) expect(snapshotByLayer(c)).toEqual(snapshotByLayer(cn));
  });

  // A batch of rows asking for 0, 1, some or all positions' logits, shadow-chunk first as
  // shadowPrefill sends it: the logits of the positions asked for and every cache, bit for bit, as
  // when every row asks for all of them (kept activation views reused across shapes must not leak).
  for (const name of MODEL_NAMES) {
    it(`rows asking for fewer logits get the same logits and caches, bit for bit (${name})`, async () => {
      const m = model(name);
      const rand = seeded(0x1a57 + name.length);
      const vocab = m.config.vocabSize;
      for (let k = 0; k < 12; k++) {
        const rows: ForwardRow[] = [];
        // A shadow-like chunk (no logits) first, as shadowPrefill sends it, then rows asking for 1, some or all positions.
        for (const want of [0, 1, 'some', 'all', 1] as const) {
          const cache = m.backend.createCache();
          const past = randInt(rand, 0, 5);
          if (past > 0) await run(m, cache, randomTokens(rand, past, vocab), m.before, 0);
          const n = randInt(rand, 1, 6);
          const logits = want === 'all' ? n : want === 'some' ? randInt(rand, 0, n) : Math.min(want, n);
          rows.push({ tokens: randomTokens(rand, n, vocab), positions: range(cache.length, n), cache, regime: pick(rand, m.regimes), logits });
        }
        const order = rand() < 0.5 ? rows : rows.slice().reverse();
        const every = order.map((row) => ({ ...row, cache: row.cache.clone(), logits: row.tokens.length }));
        const got = await m.backend.forward({ rows: order });
        const full = await m.backend.forward({ rows: every });
        order.forEach((row, r) => {
          const count = row.logits!;
          const tail = full.rows[r]!.data.subarray((row.tokens.length - count) * vocab);
          expect(got.rows[r]!.count).toBe(count);
          expect(Array.from(got.rows[r]!.data), `case ${k} row ${r}`).toEqual(Array.from(tail));
          expect(snapshotByLayer(row.cache)).toEqual(snapshotByLayer(every[r]!.cache));
        });
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Memory taken back

describe('reference backend: cache memory taken back is not zeroed, and never read', () => {
  // A cache's storage comes back as it was left (a shadow copy then starts without a pass over
  // megabytes): poison a cache's whole capacity with NaN, free it, and the next cache, over those
  // very bytes, must still give the logits and rows of another cache, bit for bit.
  for (const name of MODEL_NAMES) {
    it(`a cache over freed NaN-filled memory computes as a fresh one (${name})`, async () => {
      const m = model(name);
      const rand = seeded(0x9a17 + name.length);
      const ids = randomTokens(rand, 9, m.config.vocabSize);
      const poisoned = m.backend.createCache();
      poisoned.reserve(64);
      for (let l = 0; l < m.config.numLayers; l++) {
        poisoned.keys(l).fill(Number.NaN);
        poisoned.values(l).fill(Number.NaN);
      }
      poisoned.dispose();
      const reused = m.backend.createCache();
      reused.reserve(64);
      // The new cache holds the poisoned bytes (not zeroed on the way back).
      expect(Number.isNaN(reused.keys(0)[0]!)).toBe(true);
      const fresh = model(name).backend.createCache();
      const a = await run(m, reused, ids.slice(0, 6), m.before, 6);
      const b = await run(m, fresh, ids.slice(0, 6), m.before, 6);
      expect(Array.from(a)).toEqual(Array.from(b));
      for (const t of ids.slice(6)) {
        const x = await run(m, reused, [t], m.after, 1);
        const y = await run(m, fresh, [t], m.after, 1);
        expect(Array.from(x)).toEqual(Array.from(y));
        expect(x.every(Number.isFinite)).toBe(true);
      }
      expect(snapshotByLayer(reused)).toEqual(snapshotByLayer(fresh));
      reused.dispose();
      fresh.dispose();
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Bad input

describe('reference backend: bad input is a BackendError with a code, and changes nothing', () => {
  const cases: Array<[string, string, (m: Model, cache: KvCache) => ForwardRow[] | 'empty']> = [
    ['token id = vocab', 'token-out-of-range', (m, cache) => [{ tokens: [1, m.config.vocabSize], positions: [0, 1], cache, regime: m.before }]],
    ['negative token id', 'token-out-of-range', (m, cache) => [{ tokens: [-1], positions: [0], cache, regime: m.before }]],
    ['non-integer token id', 'token-out-of-range', (m, cache) => [{ tokens: [2.5], positions: [0], cache, regime: m.before }]],
    ['NaN token id', 'token-out-of-range', (m, cache) => [{ tokens: [Number.NaN], positions: [0], cache, regime: m.before }]],
    ['position = max_position_embeddings', 'position-out-of-range', (m, cache) => [{ tokens: [1], positions: [m.config.maxPositionEmbeddings], cache, regime: m.after }]],
    ['negative position', 'position-out-of-range', (m, cache) => [{ tokens: [1], positions: [-1], cache, regime: m.before }]],
    ['non-integer position', 'position-out-of-range', (m, cache) => [{ tokens: [1], positions: [0.5], cache, regime: m.before }]],
    ['tokens / positions length mismatch', 'length-mismatch', (m, cache) => [{ tokens: [1, 2], positions: [0], cache, regime: m.before }]],
    ['same cache in two rows', 'shared-cache', (m, cache) => [
      { tokens: [1], positions: [0], cache, regime: m.before },
      { tokens: [2], positions: [0], cache, regime: m.before },
    ]],
    ['disposed cache', 'cache-disposed', (m, cache) => {
      const dead = m.backend.createCache();
      dead.dispose();
      return [
        { tokens: [1], positions: [0], cache, regime: m.before },
        { tokens: [1], positions: [0], cache: dead, regime: m.before },
      ];
    }],
    ['cache of another layout', 'cache-layout', (m, cache) => [
      { tokens: [1], positions: [0], cache, regime: m.before },
      { tokens: [1], positions: [0], cache: new CpuKvCache({ numLayers: 2, numKvHeads: 4, headDim: 8 }), regime: m.before },
    ]],
    ['no rows', 'empty-request', () => 'empty'],
    ['a row without tokens', 'empty-row', (m, cache) => [{ tokens: [], positions: [], cache, regime: m.before }]],
    ['logits count > tokens', 'bad-logits-count', (m, cache) => [{ tokens: [1, 2], positions: [0, 1], cache, regime: m.before, logits: 3 }]],
    ['negative logits count', 'bad-logits-count', (m, cache) => [{ tokens: [1, 2], positions: [0, 1], cache, regime: m.before, logits: -1 }]],
    ['regime of another rotary size', 'regime-size', (m, cache) => [{ tokens: [1], positions: [0], cache, regime: model('partial').before }]],
  ];

  it.each(cases)('%s → %s', async (_label, code, build) => {
    const m = model('phi3');
    const cache = m.backend.createCache();
    const rows = build(m, cache);
    await expectRejects(m.backend.forward({ rows: rows === 'empty' ? [] : rows }), BackendError, code);
    expect(cache.length).toBe(0);
    expect(cache.regimeSpans()).toEqual([]);
  });

  it('positions up to the limit are accepted: max_position_embeddings − 1, and factor × M for dynamic NTK', async () => {
    const phi3 = model('phi3');
    await run(phi3, phi3.backend.createCache(), [1], phi3.after, 1);
    const cache = phi3.backend.createCache();
    const last = phi3.config.maxPositionEmbeddings - 1;
    const r = await phi3.backend.forward({ rows: [{ tokens: [1], positions: [last], cache, regime: phi3.after }] });
    expect(r.rows[0]!.data.every(Number.isFinite)).toBe(true);

    const llama = model('llama');
    const limit = positionLimit(llama.config);
    expect(limit).toBe(64); // dynamic NTK: factor 2 × max_position_embeddings 32
    const ok = llama.backend.createCache();
    await llama.backend.forward({ rows: [{ tokens: [1], positions: [limit - 1], cache: ok, regime: llama.schedule.regimeFor(limit) }] });
    expect(ok.length).toBe(1);
    await expectRejects(
      llama.backend.forward({ rows: [{ tokens: [1], positions: [limit], cache: llama.backend.createCache(), regime: llama.after }] }),
      BackendError,
      'position-out-of-range',
    );
  });

  it('a disposed backend refuses to run', async () => {
    const dir = join(root, 'disposable');
    await mkdir(dir);
    await writeRandomCheckpoint(dir, PHI3, { seed: 5 });
    const { backend } = await openModel(dir);
    const regime = createRopeSchedule(backend.config.rope).regimeFor(1);
    await backend.dispose();
    await expectRejects(backend.forward({ rows: [{ tokens: [1], positions: [0], cache: backend.createCache(), regime }] }), BackendError, 'disposed');
  });
});

// ---------------------------------------------------------------------------------------------
// Weights errors

describe('reference backend: bad checkpoints are WeightsErrors', () => {
  it("a tensor of the wrong shape → 'shape-mismatch'", async () => {
    const dir = join(root, 'bad-shape');
    await mkdir(dir);
    const name = 'model.layers.1.post_attention_layernorm.weight';
    await writeRandomCheckpoint(dir, PHI3, {
      seed: 9,
      edit: (tensors) => tensors.map((t) => (t.name === name ? { ...t, shape: [33], data: new Float32Array(33) } : t)),
    });
    const err = await expectRejects(openModel(dir), WeightsError, 'shape-mismatch');
    expect((err as WeightsError).tensor).toBe(name);
  });

  it("a transposed projection → 'shape-mismatch'", async () => {
    const dir = join(root, 'transposed');
    await mkdir(dir);
    const name = 'model.layers.0.mlp.down_proj.weight';
    await writeRandomCheckpoint(dir, LLAMA, { seed: 9, edit: (tensors) => tensors.map((t) => (t.name === name ? { ...t, shape: [48, 32] } : t)) });
    const err = await expectRejects(openModel(dir), WeightsError, 'shape-mismatch');
    expect((err as WeightsError).tensor).toBe(name);
  });

  it("an untied model without lm_head → 'missing-tensor'", async () => {
    const dir = join(root, 'no-head');
    await mkdir(dir);
    await writeRandomCheckpoint(dir, PHI3, { seed: 9, edit: (tensors) => tensors.filter((t) => t.name !== 'lm_head.weight') });
    const err = await expectRejects(openModel(dir), WeightsError, 'missing-tensor');
    expect((err as WeightsError).tensor).toBe('lm_head.weight');
  });

  it('a tied model needs no lm_head and uses the embedding as the output matrix', async () => {
    const m = model('llama');
    expect(m.config.tieWordEmbeddings).toBe(true);
    const dir = join(root, 'llama');
    const { weights } = await loadCheckpoint(dir);
    try {
      expect(weights.has('lm_head.weight')).toBe(false);
      expect(weights.has('model.layers.0.self_attn.q_proj.bias')).toBe(true);
    } finally {
      await weights.close();
    }
    const logits = await run(m, m.backend.createCache(), [1, 2, 3], m.before, 1);
    expect(logits.every(Number.isFinite)).toBe(true);
  });

  it("a missing bias of an attention_bias model → 'missing-tensor'", async () => {
    const dir = join(root, 'no-bias');
    await mkdir(dir);
    await writeRandomCheckpoint(dir, LLAMA, { seed: 9, edit: (tensors) => tensors.filter((t) => t.name !== 'model.layers.1.self_attn.k_proj.bias') });
    const err = await expectRejects(openModel(dir), WeightsError, 'missing-tensor');
    expect((err as WeightsError).tensor).toBe('model.layers.1.self_attn.k_proj.bias');
  });
});

// ---------------------------------------------------------------------------------------------
// Session and the no-cache oracle on the reference backend

describe('Session on the reference backend', () => {
  it('rotates each forward under the regime of its total length, so crossing L leaves a stale prefix', async () => {
    const m = model('phi3');
    const session = new Session(m.backend);
    const ids = randomTokens(seeded(3), 20, m.config.vocabSize);
    await session.forward(ids.slice(0, 16)); // S = 16 = L: short
    expect(session.cache.uniformRegime()?.id).toBe(m.before.id);
    await session.forward(ids.slice(16, 17)); // S = 17: long
    await session.forward(ids.slice(17));
    expect(session.length).toBe(20);
    expect(session.cache.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([
      [0, 16, m.before.id],
      [16, 20, m.after.id],
    ]);
    session.dispose();
    expect(session.cache.disposed).toBe(true);
  });

  it('below the threshold a cached greedy run equals the no-cache oracle; past it the stale cache drifts', async () => {
    const m = model('phi3');
    const prompt = randomTokens(seeded(4), 10, m.config.vocabSize);
    const cached = await greedyDecode(new Session(m.backend), prompt, { maxNewTokens: 6 }); // S ≤ 16 throughout
    const oracle = await greedyNoCache(m.backend, prompt, { maxNewTokens: 6 });
    expect(cached.tokens).toEqual(oracle.tokens);
    cached.logits.forEach((l, i) => expect(maxAbsDiff(l, oracle.logits[i]!), `step ${i}`).toBeLessThanOrEqual(1e-4));

    // Teacher-forced past L: the first long step's logits differ from the oracle (stale short keys).
    const ids = randomTokens(seeded(5), 17, m.config.vocabSize);
    const session = new Session(m.backend);
    await session.forward(ids.slice(0, 16));
    const stale = await session.forward(ids.slice(16));
    const truth = await noCacheForward(m.backend, ids);
    expect(maxAbsDiff(stale, truth)).toBeGreaterThan(1e-3);
    // The oracle is a long-regime forward over the whole sequence.
    expect(maxAbsDiff(truth, await run(m, m.backend.createCache(), ids, m.after, 1))).toBe(0);
  });

  it('greedyDecode stops on an aborted signal before any forward', async () => {
    const m = model('llama');
    const controller = new AbortController();
    controller.abort();
    const session = new Session(m.backend);
    await expect(greedyDecode(session, [1, 2], { maxNewTokens: 3, signal: controller.signal })).rejects.toThrow();
    expect(session.length).toBe(0);
  });
});

describe('reference backend: sliding-window models', () => {
  it('runs up to the window and refuses a longer sequence with a BackendError, cache unchanged', async () => {
    const dir = join(root, 'mistral-window');
    await mkdir(dir);
    await writeRandomCheckpoint(dir, { ...LLAMA, model_type: 'mistral', tie_word_embeddings: false, sliding_window: 8 }, { seed: 12 });
    const { config, backend } = await openModel(dir);
    expect(config.slidingWindow).toBe(8);
    const schedule = createRopeSchedule(config.rope);
    const cache = backend.createCache();
    const row = (tokens: number[], start: number): ForwardRow => ({
      tokens,
      positions: tokens.map((_, i) => start + i),
      cache,
      regime: schedule.regimeFor(start + tokens.length),
    });
    await backend.forward({ rows: [row([1, 2, 3, 4, 5, 6, 7, 8], 0)] });
    expect(cache.length).toBe(8);
    const err = await backend.forward({ rows: [row([9], 8)] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).code).toBe('sliding-window');
    expect(cache.length).toBe(8);
  });
});

/**
 * Test fixtures for policy and session unit tests (not part of any package's public API): seeded
 * tiny models with small thresholds, built once per test file, and backend wrappers that record,
 * hide a capability, inject faults or pretend their caches live on a GPU.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Backend,
  CpuKvCache,
  type ForwardRequest,
  type ForwardResult,
  type KvCache,
  type ModelConfig,
  type RopeRegime,
  type RopeSchedule,
  SeededRandom,
  type Session,
  createRopeSchedule,
  loadCheckpoint,
  noCacheForward,
} from '@ropeswitch/core';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { writeRandomCheckpoint } from '../../../cli/src/random-models/random-checkpoint.js';

export { pinnedSchedule } from './pinned-schedule.js';

/** The shape both tiny models share (and the root reference-backend tests build on). */
export const TINY_BASE_JSON: Record<string, unknown> = {
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  rope_theta: 10000,
  rms_norm_eps: 1e-5,
};

/** Phi-3 with LongRoPE: threshold L = 16 (S = 16 short, S = 17 long), M = 64. */
export const TINY_LONGROPE_JSON: Record<string, unknown> = {
  ...TINY_BASE_JSON,
  model_type: 'phi3',
  max_position_embeddings: 64,
  original_max_position_embeddings: 16,
  tie_word_embeddings: false,
  rope_scaling: { type: 'longrope', short_factor: [1.0, 1.2, 1.5, 2.0], long_factor: [2.0, 4.0, 7.0, 11.0] },
};

/** Llama with dynamic NTK: new frequencies at every S > 16, positions up to 32. */
export const TINY_DYNAMIC_JSON: Record<string, unknown> = {
  ...TINY_BASE_JSON,
  model_type: 'llama',
  max_position_embeddings: 16,
  tie_word_embeddings: true,
  rope_scaling: { type: 'dynamic', factor: 2.0 },
};

export interface TinyModel {
  readonly config: ModelConfig;
  readonly backend: ReferenceBackend;
  readonly schedule: RopeSchedule;
  /** The schedule's threshold (16 for both tiny models). */
  readonly threshold: number;
  readonly vocab: number;
}

/** Writes a seeded checkpoint for `json` to a temp dir, loads it into a reference backend, removes the dir. */
export async function loadTinyModel(json: Record<string, unknown>, seed: number): Promise<TinyModel> {
  const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-tiny-'));
  try {
    await writeRandomCheckpoint(dir, json, { seed });
    const { config, weights } = await loadCheckpoint(dir);
    try {
      const backend = new ReferenceBackend(config, weights);
      const schedule = createRopeSchedule(config.rope);
      return { config, backend, schedule, threshold: schedule.threshold!, vocab: config.vocabSize };
    } finally {
      await weights.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const tinyLongRope = (seed = 7): Promise<TinyModel> => loadTinyModel(TINY_LONGROPE_JSON, seed);
export const tinyDynamicNtk = (seed = 11): Promise<TinyModel> => loadTinyModel(TINY_DYNAMIC_JSON, seed);

/** `n` seeded token ids in `[0, vocab)`. */
export function randomIds(seed: number, n: number, vocab: number): number[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: n }, () => rng.int(vocab));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
  }
  return worst;
}

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

// ---------------------------------------------------------------------------------------------
// Backend wrappers

/** One row of a forward call as the backend under the chain received it. */
export interface RecordedRow {
  readonly tokens: number[];
  readonly positions: number[];
  readonly regime: string;
  readonly cache: KvCache;
  /** The cache's length when the call started. */
  readonly cacheLength: number;
  readonly logits: number;
}

export interface RecordingBackend extends Backend {
  readonly inner: Backend;
  /** Every forward call, in order, each as its rows. */
  readonly calls: RecordedRow[][];
  /** Every call of `rerotateKeys`. */
  readonly rerotations: { cache: KvCache; to: string }[];
  /** Every cache handed out by `createCache`, in order. */
  readonly created: KvCache[];
}

export interface RecordingOptions {
  /** Hide the inner backend's `rerotateKeys` (capability `false`, method absent). */
  readonly hideRerotate?: boolean;
  readonly maxRows?: number;
}

/** Wraps `inner`, recording forward calls, rerotations and created caches. */
export function recording(inner: Backend, options: RecordingOptions = {}): RecordingBackend {
  const calls: RecordedRow[][] = [];
  const rerotations: { cache: KvCache; to: string }[] = [];
  const created: KvCache[] = [];
  const canRotate = !options.hideRerotate && inner.capabilities.rerotateKeys && inner.rerotateKeys !== undefined;
  const backend: RecordingBackend = {
    name: `recording(${inner.name})`,
    config: inner.config,
    capabilities: { ...inner.capabilities, rerotateKeys: canRotate, maxRows: options.maxRows ?? inner.capabilities.maxRows },
    inner,
    calls,
    rerotations,
    created,
    createCache() {
      const c = inner.createCache();
      created.push(c);
      return c;
    },
    forward(request: ForwardRequest): Promise<ForwardResult> {
      calls.push(
        request.rows.map((r) => ({
          tokens: Array.from(r.tokens),
          positions: Array.from(r.positions),
          regime: r.regime.id,
          cache: r.cache,
          cacheLength: r.cache.length,
          logits: r.logits ?? 1,
        })),
      );
      return inner.forward(request);
    },
    dispose: () => inner.dispose(),
  };
  if (canRotate) {
    return {
      ...backend,
      async rerotateKeys(cache: KvCache, to: RopeRegime) {
        rerotations.push({ cache, to: to.id });
        await inner.rerotateKeys!(cache, to);
      },
    };
  }
  return backend;
}

export interface FaultyBackend extends Backend {
  /** Forward calls seen so far (failed ones included). */
  readonly calls: number;
}

/**
 * Wraps `inner`; before each forward call asks `fault(request, call)` (call counts from 0) and, when
 * it returns something, throws it without running the call, so no cache moves.
 */
export function faulty(inner: Backend, fault: (request: ForwardRequest, call: number) => unknown): FaultyBackend {
  let calls = 0;
  const backend: FaultyBackend = {
    name: `faulty(${inner.name})`,
    config: inner.config,
    capabilities: inner.capabilities,
    get calls() {
      return calls;
    },
    createCache: () => inner.createCache(),
    async forward(request: ForwardRequest): Promise<ForwardResult> {
      const error = fault(request, calls++);
      if (error !== undefined) throw error;
      return inner.forward(request);
    },
    dispose: () => inner.dispose(),
  };
  if (inner.rerotateKeys) backend.rerotateKeys = inner.rerotateKeys.bind(inner);
  return backend;
}

/** A CPU cache behind a KvCache that says it lives on a GPU (and is no `CpuKvCache`). */
export class GpuLikeCache implements KvCache {
  readonly location = 'gpu' as const;
  constructor(readonly inner: CpuKvCache) {}
  get layout() {
    return this.inner.layout;
  }
  get length() {
    return this.inner.length;
  }
  get disposed() {
    return this.inner.disposed;
  }
  get byteLength() {
    return this.inner.byteLength;
  }
  tokens = () => this.inner.tokens();
  positions = () => this.inner.positions();
  regimeAt = (i: number) => this.inner.regimeAt(i);
  regimeSpans = () => this.inner.regimeSpans();
  uniformRegime = () => this.inner.uniformRegime();
  clone = () => new GpuLikeCache(this.inner.clone());
  replaceWith = (other: KvCache) => this.inner.replaceWith((other as GpuLikeCache).inner);
  reserve = (n: number) => this.inner.reserve(n);
  crop = (n: number) => this.inner.crop(n);
  dispose = () => this.inner.dispose();
}

/** A backend whose caches claim to live on a GPU and that declares no key rotation. */
export function gpuLike(inner: Backend): Backend {
  return {
    name: `gpu-like(${inner.name})`,
    config: inner.config,
    capabilities: { ...inner.capabilities, cacheLocation: 'gpu', rerotateKeys: false },
    createCache: () => new GpuLikeCache(inner.createCache() as CpuKvCache),
    forward: (request) => inner.forward({ ...request, rows: request.rows.map((r) => ({ ...r, cache: (r.cache as GpuLikeCache).inner })) }),
    dispose: () => inner.dispose(),
  };
}

// ---------------------------------------------------------------------------------------------
// Runs

/** One decoding step: the total length after it and the logits of its last position. */
export interface Step {
  readonly length: number;
  readonly logits: Float32Array;
}

/**
 * Teacher-forced run of `ids` through `session`: a prefill of the first `prompt` ids, then one
 * forward per remaining id. Returns the logits after the prompt and after each step.
 */
export async function teacherForce(session: Session, ids: readonly number[], prompt: number, plannedLength?: number): Promise<Step[]> {
  const steps: Step[] = [];
  const opts = plannedLength === undefined ? {} : { plannedLength };
  steps.push({ length: prompt, logits: await session.prefill(ids.slice(0, prompt), opts) });
  for (let i = prompt; i < ids.length; i++) steps.push({ length: i + 1, logits: await session.forward([ids[i]!]) });
  return steps;
}

/** For each step, max |Δlogit| against the oracle (`noCacheForward` over the first `length` ids). */
export async function oracleDiffs(model: TinyModel, ids: readonly number[], steps: readonly Step[]): Promise<number[]> {
  const out: number[] = [];
  for (const s of steps) out.push(maxAbsDiff(s.logits, await noCacheForward(model.backend, ids.slice(0, s.length))));
  return out;
}

/** Rejection of `promise`, checked to be an `errorClass` (with `code` when given). */
export async function expectRejection<E extends Error>(
  promise: Promise<unknown>,
  errorClass: abstract new (...args: never[]) => E,
  code?: string,
): Promise<E> {
  let caught: unknown;
  let settled = false;
  try {
    await promise;
    settled = true;
  } catch (err) {
    caught = err;
  }
  if (settled) throw new Error(`expected a ${errorClass.name}, but the promise resolved`);
  if (!(caught instanceof errorClass)) throw new Error(`expected a ${errorClass.name}, got ${String(caught)}`, { cause: caught });
  if (code !== undefined && (caught as unknown as { code?: string }).code !== code) {
    throw new Error(`expected code ${code}, got ${(caught as unknown as { code?: string }).code}: ${caught.message}`, { cause: caught });
  }
  return caught;
}

/**
 * Building blocks of the policy conformance suite: step-by-step greedy sequences (alone, through
 * a shared backend, or batched as rows of one request), cache snapshots, fresh prefills and pinned
 * schedules for oracles. Backend-neutral: everything goes through the `Backend` contract.
 */
import {
  type Backend,
  CpuKvCache,
  type KvCache,
  type PolicyEvent,
  type PolicyBackend,
  type PolicyRequest,
  type PolicyResult,
  type PolicyRow,
  type RopeRegime,
  type RopeSchedule,
  Session,
  argmax,
} from '@ropeswitch/core';
import type { HfExpected } from '../support/fixtures.js';

export { pinnedSchedule } from '@ropeswitch/testkit';

/** Reads the keys of one layer of a cache, `[kvHead][index][headDim]` for its `length` indices. */
export type LayerKeyReader = (cache: KvCache, layer: number) => Float32Array | Promise<Float32Array>;

/** The default {@link LayerKeyReader}: copies a {@link CpuKvCache}'s keys out of its capacity-strided storage. */
export function readCpuLayerKeys(cache: KvCache, layer: number): Float32Array {
  if (!(cache instanceof CpuKvCache)) {
    throw new Error(`the conformance suite reads cached keys of CPU caches only; pass readLayerKeys for ${cache.location} caches`);
  }
  const { numKvHeads, headDim } = cache.layout;
  const n = cache.length;
  const all = cache.keys(layer);
  const out = new Float32Array(numKvHeads * n * headDim);
  for (let h = 0; h < numKvHeads; h++) {
    const from = cache.offset(h, 0);
    out.set(all.subarray(from, from + n * headDim), h * n * headDim);
  }
  return out;
}

/** 0-based step of `greedy_hf` whose forward first uses the new regime (total length > threshold), if any. */
export function crossingStepOf(e: HfExpected): number | undefined {
  return e.greedy_hf.crossing_step ?? e.greedy_hf.threshold_step ?? undefined;
}

/** Runs `ids` from position 0 into a new cache under `regime` (one forward, no policy). The caller disposes it. */
export async function freshPrefill(backend: Backend, ids: ArrayLike<number>, regime: RopeRegime): Promise<KvCache> {
  const cache = backend.createCache();
  const positions = Int32Array.from({ length: ids.length }, (_, i) => i);
  await backend.forward({ rows: [{ tokens: ids, positions, cache, regime, logits: 1 }] });
  return cache;
}

/** What a test can observe of a cache: length, tokens, positions, regime spans, and every layer's keys. */
export interface CacheSnapshot {
  readonly disposed: boolean;
  readonly length: number;
  readonly tokens: number[];
  readonly positions: number[];
  readonly spans: string[];
  readonly keys: Float32Array[];
}

export async function snapshotCache(cache: KvCache, readLayerKeys: LayerKeyReader): Promise<CacheSnapshot> {
  const keys: Float32Array[] = [];
  if (cache.length > 0) for (let l = 0; l < cache.layout.numLayers; l++) keys.push(Float32Array.from(await readLayerKeys(cache, l)));
  return {
    disposed: cache.disposed,
    length: cache.length,
    tokens: Array.from(cache.tokens()),
    positions: Array.from(cache.positions()),
    spans: cache.regimeSpans().map((s) => `${s.start}..${s.end} ${s.regime.id}`),
    keys,
  };
}

/** What a greedy sequence produced: the token chosen at each step and the logits it was chosen from. */
export interface GreedyTrace {
  readonly tokens: number[];
  readonly logits: Float32Array[];
  readonly events: PolicyEvent[];
}

/**
 * A greedy sequence driven one step at a time through a {@link Session}, so that several can be
 * interleaved on one backend: step 0 prefills the prompt (planned length prompt + maxNewTokens),
 * step i feeds the token chosen at step i − 1. `maxNewTokens` steps in all, like `generate`.
 */
export class SteppedSequence implements GreedyTrace {
  readonly tokens: number[] = [];
  readonly logits: Float32Array[] = [];
  readonly session: Session;

  constructor(
    backend: Backend,
    readonly prompt: readonly number[],
    readonly maxNewTokens: number,
  ) {
    this.session = new Session(backend);
  }

  get events(): PolicyEvent[] {
    return this.session.events.slice();
  }

  get done(): boolean {
    return this.tokens.length >= this.maxNewTokens;
  }

  async step(): Promise<void> {
    const logits =
      this.tokens.length === 0
        ? await this.session.prefill(this.prompt, { plannedLength: this.prompt.length + this.maxNewTokens })
        : await this.session.forward([this.tokens[this.tokens.length - 1]!]);
    this.logits.push(logits);
    this.tokens.push(argmax(logits));
  }

  async run(): Promise<this> {
    while (!this.done) await this.step();
    return this;
  }
}

/**
 * Greedy decoding of several sequences as rows of one request per step, straight through a
 * policy-wrapped backend (what a batching server does): each row carries what `Session` would
 * send — positions after its cache, the regime of its total length, the planned length, and
 * `prefill` on prompt rows.
 */
export async function batchedGreedy(
  backend: PolicyBackend,
  schedule: RopeSchedule,
  prompts: readonly (readonly number[])[],
  maxNewTokens: number,
): Promise<GreedyTrace[]> {
  const traces = prompts.map((): GreedyTrace => ({ tokens: [], logits: [], events: [] }));
  const caches = prompts.map(() => backend.createCache());
  try {
    for (let step = 0; step < maxNewTokens; step++) {
      const rows = prompts.map((prompt, i): PolicyRow => {
        const cache = caches[i]!;
        const tokens = step === 0 ? prompt : [traces[i]!.tokens[step - 1]!];
        return {
          tokens,
          positions: Int32Array.from({ length: tokens.length }, (_, k) => cache.length + k),
          cache,
          regime: schedule.regimeFor(cache.length + tokens.length),
          logits: 1,
          plannedLength: prompt.length + maxNewTokens,
          ...(step === 0 ? { prefill: true } : {}),
        };
      });
      const request: PolicyRequest = { rows };
      const result = await backend.forward(request);
      result.rows.forEach((row, i) => {
        const trace = traces[i]!;
        trace.logits.push(row.data);
        trace.tokens.push(argmax(row.data));
        trace.events.push(...(row.events ?? []));
      });
    }
  } finally {
    for (const cache of caches) {
      backend.releaseSequence(cache);
      cache.dispose();
    }
  }
  return traces;
}

/** Largest per-step max |Δ| between two logit sequences (Infinity when a step is missing or shapes differ). */
export function worstStepDiff(a: readonly ArrayLike<number>[], b: readonly ArrayLike<number>[]): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.length !== y.length) return Infinity;
    for (let k = 0; k < x.length; k++) {
      const d = Math.abs(x[k]! - y[k]!);
      if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
    }
  }
  return worst;
}

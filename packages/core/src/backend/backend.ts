import type { CacheLocation, KvCache } from '../cache/kv-cache.js';
import type { ModelConfig } from '../config/model-config.js';
import type { AnglePrecision, RopeRegime } from '../rope/regime.js';

/**
 * One sequence's part of a forward call: its new tokens, their position ids, the cache they extend
 * and the regime that rotates their queries and keys. The backend never chooses a regime.
 */
export interface ForwardRow {
  /** New token ids (at least one). */
  readonly tokens: ArrayLike<number>;
  /** Position id of each new token (same length as `tokens`). */
  readonly positions: ArrayLike<number>;
  /** The cache the new tokens attend to and are appended to (on success only). */
  readonly cache: KvCache;
  /** The rotation for the new tokens. Cached keys keep whatever rotation they have. */
  readonly regime: RopeRegime;
  /** How many trailing positions' logits to return: default 1; 0 for none (e.g. a shadow chunk). */
  readonly logits?: number;
}

/**
 * A forward call: a batch of rows that share one pass over the weights. Rows never influence each
 * other: each has its own cache and regime, and must use a distinct cache.
 */
export interface ForwardRequest {
  readonly rows: readonly ForwardRow[];
  /** Checked between layers; an aborted forward throws and leaves every cache unchanged. */
  readonly signal?: AbortSignal;
}

/** Logits of one row: `count` positions × vocab, row-major (`[position][vocab]`). */
export interface RowLogits {
  readonly count: number;
  readonly vocabSize: number;
  readonly data: Float32Array;
}

export interface ForwardResult {
  /** One entry per request row, in order. */
  readonly rows: readonly RowLogits[];
}

/** What a backend can do, so policies pick a strategy without knowing the backend. */
export interface BackendCapabilities {
  /** Where caches from {@link Backend.createCache} live. */
  readonly cacheLocation: CacheLocation;
  /** Rows per forward call (`Infinity` when unbounded). */
  readonly maxRows: number;
  /** Whether {@link Backend.rerotateKeys} is implemented (on the backend's own cache, no readback). */
  readonly rerotateKeys: boolean;
  /** How the backend computes rotary angles. */
  readonly anglePrecision: AnglePrecision;
  /**
   * Whether tokens whose logits were not asked for stop at the last layer's key/value projection:
   * that layer's attention, output projection and MLP run only for the tokens with logits (as
   * llama.cpp's output ids do). The cache is the same either way; a shadow chunk or a prompt's body
   * then costs `(layers − 1) / layers` of its attention, which cost models (shadowPrefill's pacing) use.
   */
  readonly prunesLastLayer?: boolean;
}

/**
 * A model that runs forward calls over KV caches it creates. Argument checking common to every
 * backend lives in {@link validateForwardRequest}; backends call it first, so a bare backend in a
 * custom loop rejects bad input too. Policies, the schedule, result checks and per-sequence state
 * sit above it, in the one wrapper {@link wrapBackend} makes.
 */
export interface Backend {
  readonly name: string;
  readonly config: ModelConfig;
  readonly capabilities: BackendCapabilities;
  /** An empty cache in this backend's storage. */
  createCache(): KvCache;
  /** Runs every row, appends the new keys/values to each row's cache, returns the requested logits. */
  forward(request: ForwardRequest): Promise<ForwardResult>;
  /** Rotates every cached key of `cache` into `to`, in place (present when `capabilities.rerotateKeys`). */
  rerotateKeys?(cache: KvCache, to: RopeRegime): Promise<void>;
  /**
   * A hint, optional even where `rerotateKeys` exists: compute now whatever rotating keys at positions
   * [0, `positions`) from `from` to `to` will need (the cos/sin tables), so that the rotation at the
   * crossing is one pass over the keys. Touches no cache. Called with growing `positions` to spread
   * the work over several steps; rows already prepared are kept.
   */
  prepareRerotation?(from: RopeRegime, to: RopeRegime, positions: number): Promise<void>;
  /** Frees weights and device resources. */
  dispose(): Promise<void>;
}

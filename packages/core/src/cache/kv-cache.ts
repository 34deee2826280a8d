import type { RopeRegime } from '../rope/regime.js';

/** Where a cache's tensors live. GPU backends keep theirs on the device and must be disposed. */
export type CacheLocation = 'cpu' | 'gpu';

/** What {@link KvCache.clone} copies, and the room it leaves. */
export interface CloneOptions {
  /** Tokens kept from the start (default: all of them). */
  readonly length?: number;
  /** Tokens the copy's storage holds at least (default: its length): a planned length, reserved in the same copy. */
  readonly capacity?: number;
}

/** The shape every cache of a model shares. */
export interface KvCacheLayout {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

/** A run of cached positions whose keys were rotated under one regime. */
export interface RegimeSpan {
  /** First cache index of the run. */
  readonly start: number;
  /** One past its last index. */
  readonly end: number;
  readonly regime: RopeRegime;
}

/**
 * One sequence's KV cache: post-RoPE keys and values per layer, the token ids it encodes, their
 * position ids, and the regime that rotated each key. A stale cache holds several regimes
 * (`regimeSpans()` tells which); a fresh prefill holds one.
 *
 * Backends append to a cache only on success (see {@link CpuKvCache.commit}), so a failed forward
 * never leaves it half-written.
 */
export interface KvCache {
  readonly location: CacheLocation;
  readonly layout: KvCacheLayout;
  /** Number of cached tokens. */
  readonly length: number;
  readonly disposed: boolean;
  /** Bytes held by keys and values (allocated capacity). */
  readonly byteLength: number;
  /**
   * Changes whenever what is cached changes (a commit, crop, rerotation or `replaceWith`) and never
   * takes a value twice, so a policy keeping state beside a cache can tell, without reading it,
   * that nobody touched it since (optional: caches without it are compared token by token).
   */
  readonly revision?: number;
  /** A copy of the cached token ids, in cache order. */
  tokens(): Int32Array;
  /** A copy of the cached position ids, in cache order. */
  positions(): Int32Array;
  /** The regime that rotated the key at cache index `index`. */
  regimeAt(index: number): RopeRegime;
  /** Runs of equal regime, in cache order (empty when the cache is empty). */
  regimeSpans(): readonly RegimeSpan[];
  /** The one regime of every cached key, or `undefined` if the cache is empty or mixed. */
  uniformRegime(): RopeRegime | undefined;
  /**
   * Makes room for `extra` more tokens without changing what is visible. A hint: a sequence that
   * knows its planned length reserves it once, so no decode step pays for growing the cache.
   */
  reserve(extra: number): void;
  /**
   * An independent copy (same location), of the first `options.length` tokens (default all), with
   * room for `options.capacity` tokens (default its length): one copy, where a clone followed by
   * `crop` and `reserve` would copy the rows it keeps twice.
   *
   * @throws CacheError `'bad-crop'` for a length that is not an integer in [0, length];
   * `'bad-reserve'` for a capacity that is not a non-negative integer.
   */
  clone(options?: CloneOptions): KvCache;
  /**
   * Takes over the contents of `other` (a cache of the same backend and layout), which ends up
   * disposed. This is how a policy swaps in a rebuilt cache: everyone holding this cache object
   * (a session, a custom loop) keeps a valid reference to the sequence.
   */
  replaceWith(other: KvCache): void;
  /** Keeps the first `length` tokens. */
  crop(length: number): void;
  /** Frees the storage; any later use throws `CacheError`. */
  dispose(): void;
}

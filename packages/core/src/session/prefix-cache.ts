import type { Backend } from '../backend/backend.js';
import type { KvCache, KvCacheLayout, RegimeSpan } from '../cache/kv-cache.js';
import { SessionError } from '../errors.js';
import type { RopeRegime } from '../rope/regime.js';

/** What {@link PrefixCache} takes. */
export interface PrefixCacheOptions {
  /**
   * Most bytes its entries may hold together (the sum of their `byteLength`): a positive integer.
   * Least recently used entries are evicted to stay within it.
   */
  readonly maxBytes: number;
}

/** What {@link PrefixCache.take} looks for. */
export interface PrefixTakeOptions {
  /**
   * The regime the new tokens will be rotated by (a session: the regime of the whole prompt's
   * length). An entry whose reused keys were all rotated by it is usable as it is.
   */
  readonly regime: RopeRegime;
  /**
   * Whether a prefix whose keys (some or all) were rotated by another regime may be taken: only
   * when a policy will handle the stale keys (`rePrefill` rebuilds them, `shadowPrefill` rebuilds
   * or swaps). Over a bare backend they would stay stale, so the default is `false` (a miss).
   */
  readonly otherRegimes?: boolean;
  /**
   * Most tokens to reuse (default `ids.length - 1`): a session passes
   * `ids.length - max(1, logits wanted)`, so the tokens whose logits it returns still run.
   */
  readonly maxLength?: number;
  /**
   * Tokens the returned cache has room for (default: the prefix's length): the caller's planned
   * length, so the copy is made once at that size instead of grown (copied again) after.
   */
  readonly capacity?: number;
}

/** Counters and sizes of a {@link PrefixCache}, as of the moment they are read. */
export interface PrefixCacheStats {
  /** Takes that returned a prefix. */
  readonly hits: number;
  /** Takes that found no usable prefix. */
  readonly misses: number;
  /** Tokens the hits reused (summed over hits): tokens no forward had to run. */
  readonly hitTokens: number;
  /** Entries held now. */
  readonly entries: number;
  /** Bytes the entries hold now (sum of their `byteLength`). */
  readonly bytes: number;
  /** Entries evicted to stay within `maxBytes`. */
  readonly evictions: number;
  /** Puts not stored because the cache alone is larger than `maxBytes`. */
  readonly oversized: number;
}

/** One stored sequence: a private clone of a cache, and the token ids it encodes. */
interface Entry {
  readonly cache: KvCache;
  readonly tokens: Int32Array;
}

/** What every cache a prefix cache holds must share, so that any entry can replace any session's cache. */
interface CacheKind {
  readonly location: KvCache['location'];
  readonly layout: KvCacheLayout;
  readonly constructorOf: unknown;
}

/**
 * KV caches of earlier sequences, reused by sequences that start with the same tokens (a shared
 * system prompt, the earlier turns of a chat). Each entry is a private clone keyed by its token
 * ids; its keys keep the regime spans that rotated them, so a prefix cached under one regime is
 * never handed to a forward under another unless a policy will rebuild it (the bug class of prompt
 * caches reused across the LongRoPE threshold).
 *
 * Entries are evicted least recently used first to keep their bytes within `maxBytes`. A prefix
 * cache belongs to one backend (its caches replace that backend's session caches): a session on
 * another backend, or a cache of another kind, is refused. Pass it to {@link Session} through
 * `SessionOptions.prefixCache`, or use {@link take} and {@link put} directly.
 *
 * A take scans every entry (a token comparison each, linear in the entries' lengths): cheap beside
 * the forward it saves; the byte budget bounds the entries.
 *
 * ```ts
 * const prefixes = new PrefixCache({ maxBytes: 512 * 2 ** 20 });
 * const a = new Session(backend, { prefixCache: prefixes });
 * await a.prefill([...systemPrompt, ...question1]); // stored after the prefill
 * const b = new Session(backend, { prefixCache: prefixes });
 * await b.prefill([...systemPrompt, ...question2]); // runs only question2's tokens
 * ```
 */
export class PrefixCache {
  /** The budget the entries' bytes stay within. */
  readonly maxBytes: number;
  /** Least recently used first: a touched entry moves to the end. */
  private readonly entries = new Set<Entry>();
  private bytes = 0;
  private kind: CacheKind | undefined;
  private owner: Backend | undefined;
  private isDisposed = false;
  private counts = { hits: 0, misses: 0, hitTokens: 0, evictions: 0, oversized: 0 };

  /** @throws SessionError `bad-option` when `maxBytes` is not a positive integer. */
  constructor(options: PrefixCacheOptions) {
    const maxBytes = options?.maxBytes;
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
      throw new SessionError('bad-option', `PrefixCache maxBytes must be a positive integer; got ${String(maxBytes)}`);
    }
    this.maxBytes = maxBytes;
  }

  /** The counters and sizes now (a fresh object). */
  get stats(): PrefixCacheStats {
    return { ...this.counts, entries: this.entries.size, bytes: this.bytes };
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.isDisposed;
  }

  /**
   * Ties this prefix cache to the backend whose caches it holds (`Session` does it with its bare
   * backend, under any policy wrappers). The same backend again is fine.
   *
   * @throws SessionError `foreign-cache` when it is tied to another backend already: the entries of
   * one model's caches are no prefix of another's.
   */
  attach(backend: Backend): void {
    if (this.owner === undefined) this.owner = backend;
    else if (this.owner !== backend) {
      throw new SessionError('foreign-cache', `this PrefixCache holds caches of backend ${this.owner.name}; a session on another backend (${backend.name}) needs its own`);
    }
  }

  /**
   * The longest cached prefix of `ids` that may be used (see {@link PrefixTakeOptions}), as a
   * fresh cache of its first `k` tokens that the caller owns (`k ≥ 1`, at most `maxLength`), or
   * `undefined` on a miss. Among prefixes of equal length, one rotated under `options.regime`
   * wins, then the most recently used. The entry becomes the most recently used; it is never
   * handed out itself, so whatever the caller does to the clone leaves it as it was.
   *
   * @throws SessionError `bad-option` for a `maxLength` that is not a non-negative integer.
   */
  take(ids: ArrayLike<number>, options: PrefixTakeOptions): KvCache | undefined {
    const maxLength = options.maxLength ?? Math.max(0, ids.length - 1);
    if (!Number.isInteger(maxLength) || maxLength < 0) {
      throw new SessionError('bad-option', `take maxLength must be a non-negative integer; got ${String(maxLength)}`);
    }
    const best = this.isDisposed ? undefined : this.bestPrefix(ids, options.regime.id, options.otherRegimes === true, Math.min(maxLength, ids.length));
    if (best === undefined) {
      this.counts.misses++;
      return undefined;
    }
    this.touch(best.entry);
    const copy = best.entry.cache.clone({ length: best.length, ...(options.capacity !== undefined ? { capacity: options.capacity } : {}) });
    this.counts.hits++;
    this.counts.hitTokens += best.length;
    return copy;
  }

  /**
   * Stores a clone of `cache` under its token ids and regime spans (the caller keeps `cache`). It
   * replaces an entry with the same tokens under the same regimes, and drops the entries it makes useless: those holding a prefix of its
   * tokens under the same regime spans (a chat's earlier turns). Then the least recently used
   * entries are evicted until the bytes fit `maxBytes`. Nothing is stored (or cloned) when an
   * entry already holds `cache`'s tokens as its prefix under the same regimes (that entry becomes
   * the most recent); nor when the clone alone is larger than `maxBytes` (counted in `oversized`);
   * nor for an empty cache, or once the prefix cache is disposed.
   *
   * @throws SessionError `foreign-cache` for a cache of another location, layout or kind than the
   * first one stored: any entry must be able to replace the cache of any session that takes it.
   */
  put(cache: KvCache): void {
    if (this.isDisposed || cache.length === 0) return;
    this.checkKind(cache);
    const tokens = cache.tokens();
    const spans = cache.regimeSpans();
    const covering = [...this.entries].find((e) => e.tokens.length > tokens.length && covers(e.tokens, e.cache.regimeSpans(), tokens, spans));
    if (covering) {
      // An entry already answers every take this one would: keep it, as the most recent.
      this.touch(covering);
      return;
    }
    const copy = cache.clone();
    if (copy.byteLength > this.maxBytes) {
      copy.dispose();
      this.counts.oversized++;
      return;
    }
    for (const old of this.entries) {
      // The same tokens, or a prefix of them (a chat's earlier turn), under the same regimes: useless
      // now. The same tokens under other regimes (a shadow copy's long keys beside the short ones) stay.
      if (covers(tokens, spans, old.tokens, old.cache.regimeSpans())) this.remove(old);
    }
    for (const old of this.entries) {
      if (this.bytes + copy.byteLength <= this.maxBytes) break;
      this.remove(old);
      this.counts.evictions++;
    }
    this.entries.add({ cache: copy, tokens });
    this.bytes += copy.byteLength;
  }

  /** Disposes every entry; the counters, the budget and the backend it is tied to stay. */
  clear(): void {
    for (const entry of this.entries) this.remove(entry);
  }

  /**
   * Disposes every entry. Sessions may still hold it: from then on every take misses and every put
   * stores nothing, so a session never fails because its prefix cache is gone.
   */
  dispose(): void {
    this.clear();
    this.isDisposed = true;
  }

  private bestPrefix(ids: ArrayLike<number>, regime: string, otherRegimes: boolean, maxLength: number): { entry: Entry; length: number } | undefined {
    let best: { entry: Entry; length: number; inRegime: boolean } | undefined;
    // Oldest first, so a later entry of equal standing (more recently used) wins the tie.
    for (const entry of this.entries) {
      const length = commonPrefix(entry.tokens, ids, maxLength);
      if (length === 0) continue;
      const inRegime = rotatedBy(entry.cache.regimeSpans(), regime, length);
      if (!inRegime && !otherRegimes) continue;
      if (best === undefined || length > best.length || (length === best.length && (inRegime || !best.inRegime))) {
        best = { entry, length, inRegime };
      }
    }
    return best;
  }

  private checkKind(cache: KvCache): void {
    const kind: CacheKind = { location: cache.location, layout: cache.layout, constructorOf: Object.getPrototypeOf(cache) };
    if (this.kind === undefined) {
      this.kind = kind;
      return;
    }
    const a = this.kind.layout;
    const b = kind.layout;
    const sameLayout = a.numLayers === b.numLayers && a.numKvHeads === b.numKvHeads && a.headDim === b.headDim;
    if (kind.location !== this.kind.location || !sameLayout || kind.constructorOf !== this.kind.constructorOf) {
      throw new SessionError(
        'foreign-cache',
        `this PrefixCache holds ${this.kind.location} caches of layout ${a.numLayers}×${a.numKvHeads}×${a.headDim}; cannot store a ${kind.location} cache of layout ${b.numLayers}×${b.numKvHeads}×${b.headDim}${sameLayout && kind.location === this.kind.location ? ' of another kind' : ''}`,
      );
    }
  }

  private touch(entry: Entry): void {
    this.entries.delete(entry);
    this.entries.add(entry);
  }

  private remove(entry: Entry): void {
    this.entries.delete(entry);
    this.bytes -= entry.cache.byteLength;
    entry.cache.dispose();
  }
}

/** Length of the common prefix of `tokens` and `ids`, at most `max`. */
function commonPrefix(tokens: Int32Array, ids: ArrayLike<number>, max: number): number {
  const n = Math.min(tokens.length, max);
  let i = 0;
  while (i < n && tokens[i] === ids[i]) i++;
  return i;
}

function isPrefixOf(a: Int32Array, b: Int32Array): boolean {
  return a.length <= b.length && commonPrefix(a, b, a.length) === a.length;
}

/** Whether every key of the first `length` cache indices was rotated by the regime with id `regime`. */
function rotatedBy(spans: readonly RegimeSpan[], regime: string, length: number): boolean {
  for (const span of spans) {
    if (span.start >= length) break;
    if (span.regime.id !== regime) return false;
  }
  return true;
}

/**
 * Whether the sequence (`tokens`, `spans`) holds the shorter one (`prefix`, `prefixSpans`) as its
 * start, under the same regimes: cropped to it, it answers every take the shorter one would.
 */
function covers(tokens: Int32Array, spans: readonly RegimeSpan[], prefix: Int32Array, prefixSpans: readonly RegimeSpan[]): boolean {
  if (!isPrefixOf(prefix, tokens)) return false;
  // Spans are run-length (adjacent runs never share a regime), so equal regimes per index means equal runs.
  const cut = spans.filter((s) => s.start < prefix.length);
  return cut.length === prefixSpans.length && cut.every((s, i) => s.start === prefixSpans[i]!.start && Math.min(s.end, prefix.length) === prefixSpans[i]!.end && s.regime.id === prefixSpans[i]!.regime.id);
}

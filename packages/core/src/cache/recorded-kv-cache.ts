import { CacheError } from '../errors.js';
import type { RopeRegime } from '../rope/regime.js';
import { CacheRecord } from './cache-record.js';
import type { CacheLocation, CloneOptions, KvCache, KvCacheLayout, RegimeSpan } from './kv-cache.js';

/**
 * The part of a {@link KvCache} that is only bookkeeping, answered from its {@link CacheRecord}:
 * length, capacity, the cached token ids, positions and regimes, commit, crop, and the order of
 * {@link replaceWith} and {@link dispose}. {@link CpuKvCache} and a GPU backend's cache extend it
 * and add only their storage (allocation, growth, copy, hand-over, freeing), so the two never
 * repeat the record's logic.
 */
export abstract class RecordedKvCache implements KvCache {
  abstract readonly location: CacheLocation;
  abstract readonly byteLength: number;
  /** The cache's bookkeeping; a subclass replaces it when it clones or takes over another cache. */
  protected record: CacheRecord;

  constructor(
    readonly layout: KvCacheLayout,
    initialCapacity: number,
  ) {
    this.record = new CacheRecord(layout, initialCapacity);
  }

  abstract reserve(extra: number): void;
  abstract clone(options?: CloneOptions): KvCache;

  /**
   * Takes over `other`'s contents and storage without a copy, keeping this object (see
   * {@link KvCache.replaceWith}); `other` is disposed. Nothing changes when it throws.
   *
   * @throws CacheError `'disposed'` when this cache was disposed; `'foreign-cache'` when `other`
   * cannot hand this cache its storage ({@link refusal}); `'cache-layout'` for another layout.
   */
  replaceWith(other: KvCache): void {
    this.record.assertLive();
    if (other === this) return;
    const refused = this.refusal(other);
    if (refused !== undefined) throw new CacheError('foreign-cache', refused);
    // `refusal` accepted it: `other` is a cache of this one's kind.
    const donor = other as this;
    this.record.takeOver(donor.record);
    this.freeStorage();
    this.adoptStorage(donor);
    donor.dispose();
  }

  /** Frees the storage (idempotent); every later use throws `CacheError('disposed')`. */
  dispose(): void {
    if (this.disposed) return;
    this.record.dispose();
    this.freeStorage();
  }

  /**
   * Why `other` cannot hand this cache its storage (the `'foreign-cache'` message: another kind,
   * element type or device), or `undefined` when it can.
   */
  protected abstract refusal(other: KvCache): string | undefined;

  /** Frees this cache's storage and leaves it holding none. */
  protected abstract freeStorage(): void;

  /**
   * Takes `other`'s storage (this cache holds none at this point) and leaves `other` holding none,
   * so disposing it frees nothing this cache now uses.
   */
  protected abstract adoptStorage(other: this): void;

  get length(): number {
    return this.record.length;
  }

  /** Indices per head the storage holds. */
  get capacity(): number {
    return this.record.capacity;
  }

  get disposed(): boolean {
    return this.record.disposed;
  }

  get revision(): number {
    return this.record.revision;
  }

  /** Makes the `tokens.length` rows written past `length` visible, rotated under `regime`. */
  commit(tokens: ArrayLike<number>, positions: ArrayLike<number>, regime: RopeRegime): void {
    this.record.commit(tokens, positions, regime);
  }

  /** Records that every cached key is now rotated under `regime` (after an in-place rerotation). */
  markRotated(regime: RopeRegime): void {
    this.record.markRotated(regime);
  }

  tokens(): Int32Array {
    return this.record.tokens();
  }

  positions(): Int32Array {
    return this.record.positions();
  }

  regimeAt(index: number): RopeRegime {
    return this.record.regimeAt(index);
  }

  regimeSpans(): readonly RegimeSpan[] {
    return this.record.regimeSpans();
  }

  uniformRegime(): RopeRegime | undefined {
    return this.record.uniformRegime();
  }

  crop(length: number): void {
    this.record.crop(length);
  }
}

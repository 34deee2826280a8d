import { CacheError } from '../errors.js';
import type { RopeRegime } from '../rope/regime.js';
import type { CloneOptions, KvCacheLayout, RegimeSpan } from './kv-cache.js';
import { RegimeSpans } from './regime-spans.js';

/** Source of {@link CacheRecord.revision}s: unique across every record, so a replaced record never repeats one. */
let lastRevision = 0;

/**
 * What a KV cache records beside its keys and values: the token id, position id and rotating
 * regime of each cached index, its length and capacity (indices per head its storage holds), and
 * whether it was disposed. {@link RecordedKvCache} holds one for {@link CpuKvCache} and a GPU
 * backend's cache, so both answer `tokens()`, `regimeAt()`, `crop()`, … by the same code.
 *
 * A cache grows its storage first and the record after ({@link grownCapacity}, then {@link grow}),
 * so a failed allocation leaves both as they were.
 */
export class CacheRecord {
  private tokenIds: Int32Array;
  private positionIds: Int32Array;
  private spans = new RegimeSpans();
  private size = 0;
  private cap: number;
  private freed = false;
  private changed = ++lastRevision;

  constructor(
    readonly layout: KvCacheLayout,
    capacity: number,
  ) {
    this.cap = Math.max(1, capacity);
    this.tokenIds = new Int32Array(this.cap);
    this.positionIds = new Int32Array(this.cap);
  }

  /** Number of cached tokens. */
  get length(): number {
    return this.size;
  }

  /** Indices per head the cache's storage holds. */
  get capacity(): number {
    return this.cap;
  }

  /** Changes whenever what is cached changes (commit, crop, rerotation, take-over); never repeats. */
  get revision(): number {
    return this.changed;
  }

  get disposed(): boolean {
    return this.freed;
  }

  /** Throws `CacheError('disposed')` once the cache was disposed. */
  assertLive(): void {
    if (this.freed) throw new CacheError('disposed', 'this KV cache was disposed');
  }

  /**
   * The capacity to grow to for `extra` more rows, or `undefined` when they fit: double the
   * current one, or exactly what is asked when that is more (a planned length reserved up front).
   * Exact because a reservation is a plan: doubling it would hold up to twice the memory (a
   * 32-layer Phi-3-mini cache planned at 4112 tokens: 3.2 GB, not 6.4) and, on backends whose
   * attention reads the cache's whole capacity masked (onnxruntime), cost every step that much
   * more. Changes nothing: the cache grows its storage to (at least) this, then calls {@link grow}.
   */
  grownCapacity(extra: number): number | undefined {
    this.assertLive();
    if (!Number.isSafeInteger(extra) || extra < 0) throw new CacheError('bad-reserve', `cannot reserve ${extra} rows: a non-negative integer is needed`);
    const need = this.size + extra;
    if (need <= this.cap) return undefined;
    return Math.max(need, 2 * this.cap);
  }

  /** Takes the capacity the storage now has (at least the current one). */
  grow(capacity: number): void {
    const tokens = new Int32Array(capacity);
    tokens.set(this.tokenIds.subarray(0, this.size));
    const positions = new Int32Array(capacity);
    positions.set(this.positionIds.subarray(0, this.size));
    this.tokenIds = tokens;
    this.positionIds = positions;
    this.cap = capacity;
  }

  /** Records the `tokens.length` rows written past `length` as cached, rotated under `regime`. */
  commit(tokens: ArrayLike<number>, positions: ArrayLike<number>, regime: RopeRegime): void {
    this.assertLive();
    const n = tokens.length;
    if (positions.length !== n || this.size + n > this.cap) {
      throw new CacheError('bad-commit', `commit of ${n} rows does not fit the reserved cache (length ${this.size}, capacity ${this.cap})`);
    }
    for (let i = 0; i < n; i++) {
      this.tokenIds[this.size + i] = tokens[i]!;
      this.positionIds[this.size + i] = positions[i]!;
    }
    this.spans.append(this.size, n, regime);
    this.size += n;
    this.changed = ++lastRevision;
  }

  /** Records that every cached key is now rotated under `regime` (after an in-place rerotation). */
  markRotated(regime: RopeRegime): void {
    this.assertLive();
    this.spans.reset(this.size, regime);
    this.changed = ++lastRevision;
  }

  tokens(): Int32Array {
    this.assertLive();
    return this.tokenIds.slice(0, this.size);
  }

  positions(): Int32Array {
    this.assertLive();
    return this.positionIds.slice(0, this.size);
  }

  regimeAt(index: number): RopeRegime {
    this.assertLive();
    const r = Number.isInteger(index) && index >= 0 && index < this.size ? this.spans.at(index) : undefined;
    if (!r) throw new CacheError('out-of-range', `cache index ${index} is outside [0, ${this.size})`);
    return r;
  }

  regimeSpans(): readonly RegimeSpan[] {
    this.assertLive();
    return this.spans.all;
  }

  uniformRegime(): RopeRegime | undefined {
    const all = this.regimeSpans();
    return all.length === 1 ? all[0]!.regime : undefined;
  }

  crop(length: number): void {
    this.assertLive();
    if (!Number.isInteger(length) || length < 0 || length > this.size) {
      throw new CacheError('bad-crop', `cannot crop a cache of ${this.size} tokens to ${length}`);
    }
    this.size = length;
    this.spans.crop(length);
    this.changed = ++lastRevision;
  }

  /**
   * An independent copy of the first `options.length` indices (default all) with capacity
   * `max(length, options.capacity, 1)`: the capacity a clone's storage gets (see {@link KvCache.clone}).
   *
   * @throws CacheError `'bad-crop'` / `'bad-reserve'` for a length or capacity out of range.
   */
  copy(options: CloneOptions = {}): CacheRecord {
    this.assertLive();
    const length = options.length ?? this.size;
    if (!Number.isInteger(length) || length < 0 || length > this.size) throw new CacheError('bad-crop', `cannot clone ${length} tokens of a cache of ${this.size}`);
    const room = options.capacity ?? 0;
    if (!Number.isSafeInteger(room) || room < 0) throw new CacheError('bad-reserve', `cannot clone with a capacity of ${room} rows: a non-negative integer is needed`);
    const c = new CacheRecord(this.layout, Math.max(length, room));
    c.tokenIds.set(this.tokenIds.subarray(0, length));
    c.positionIds.set(this.positionIds.subarray(0, length));
    c.spans = this.spans.copy();
    c.spans.crop(length);
    c.size = length;
    return c;
  }

  /**
   * Takes over the record of a cache whose storage this one's cache is about to take over (see
   * {@link KvCache.replaceWith}); `other` must be live and of the same layout. Throws before
   * changing anything, so the caller may free its old storage after.
   */
  takeOver(other: CacheRecord): void {
    other.assertLive();
    const a = this.layout;
    const b = other.layout;
    if (a.numLayers !== b.numLayers || a.numKvHeads !== b.numKvHeads || a.headDim !== b.headDim) {
      throw new CacheError('cache-layout', `cannot replace a ${a.numLayers}×${a.numKvHeads}×${a.headDim} cache with a ${b.numLayers}×${b.numKvHeads}×${b.headDim} one`);
    }
    this.tokenIds = other.tokenIds;
    this.positionIds = other.positionIds;
    this.spans = other.spans;
    this.size = other.size;
    this.cap = other.cap;
    this.changed = ++lastRevision;
  }

  /** Marks the cache disposed: every later use throws. */
  dispose(): void {
    this.freed = true;
  }
}

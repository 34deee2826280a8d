import { CacheError } from '../errors.js';
import type { RopeRegime } from '../rope/regime.js';
import type { KvCache, KvCacheLayout, RegimeSpan } from './kv-cache.js';
import { RegimeSpans } from './regime-spans.js';

/** A run of `length` floats a {@link CpuKvStorage} handed out. */
export interface CpuKvBlock {
  /**
   * The floats, as a view derived on each read: storage that can move or grow (WebAssembly memory,
   * whose growth detaches earlier views) returns a fresh view of the same floats.
   */
  readonly view: Float32Array;
  /** Gives the floats back; the block is not used afterwards. */
  free(): void;
}

/**
 * Where a {@link CpuKvCache} keeps its keys and values. The default is one `Float32Array` per
 * block on the JS heap; a backend whose kernels compute in WebAssembly passes an allocator over its
 * linear memory, so its caches need no copy in or out of it.
 */
export interface CpuKvStorage {
  /** `length` zeroed floats. */
  allocate(length: number): CpuKvBlock;
}

/** The default storage: a fresh `Float32Array` per block, freed by the garbage collector. */
const heapKvStorage: CpuKvStorage = {
  allocate: (length) => {
    const view = new Float32Array(length);
    return { view, free: () => undefined };
  },
};

/**
 * A KV cache in `Float32Array`s.
 *
 * Memory layout, per layer, for keys and values alike: `[kvHead][index][headDim]` with room for
 * `capacity` indices per head, so attention for one head scans one contiguous block. Keys are
 * stored after RoPE (and the attention factor), as HF transformers caches them. Capacity grows by
 * doubling; a grow copies each head's rows once.
 *
 * Backends write a forward's new rows past `length` (after {@link reserve}) and then call
 * {@link commit}: until the commit the cache's visible contents are unchanged, so a forward that
 * fails half-way leaves it as it was.
 */
export class CpuKvCache implements KvCache {
  readonly location = 'cpu' as const;
  private keyData: CpuKvBlock[];
  private valueData: CpuKvBlock[];
  private tokenIds: Int32Array;
  private positionIds: Int32Array;
  private spans = new RegimeSpans();
  private size = 0;
  private cap: number;
  private freed = false;

  /**
   * @param storage Where the key and value storage lives (default: the JS heap). A cache's clones
   * use the same storage.
   */
  constructor(
    readonly layout: KvCacheLayout,
    initialCapacity = 16,
    private storage: CpuKvStorage = heapKvStorage,
  ) {
    this.cap = Math.max(1, initialCapacity);
    this.keyData = this.allocLayers(this.cap);
    this.valueData = this.allocLayers(this.cap);
    this.tokenIds = new Int32Array(this.cap);
    this.positionIds = new Int32Array(this.cap);
  }

  get length(): number {
    return this.size;
  }

  get capacity(): number {
    return this.cap;
  }

  get disposed(): boolean {
    return this.freed;
  }

  /** Where this cache's keys and values live. */
  get kvStorage(): CpuKvStorage {
    return this.storage;
  }

  get byteLength(): number {
    const { numLayers, numKvHeads, headDim } = this.layout;
    return this.freed ? 0 : 2 * numLayers * numKvHeads * this.cap * headDim * 4;
  }

  /**
   * The key storage of `layer` (`[kvHead][index][headDim]`, `capacity` indices per head). Valid
   * until the next `reserve`, and, for storage that can grow, until its next allocation.
   */
  keys(layer: number): Float32Array {
    this.assertLive();
    return this.keyData[layer]!.view;
  }

  /** The value storage of `layer`, laid out like {@link keys}. */
  values(layer: number): Float32Array {
    this.assertLive();
    return this.valueData[layer]!.view;
  }

  /** Offset of cache index `index` of `kvHead` in a layer's key or value storage. */
  offset(kvHead: number, index: number): number {
    return (kvHead * this.cap + index) * this.layout.headDim;
  }

  /** Makes room for `extra` more rows without changing what is visible. */
  reserve(extra: number): void {
    this.assertLive();
    if (!Number.isSafeInteger(extra) || extra < 0) throw new CacheError('bad-reserve', `cannot reserve ${extra} rows: a non-negative integer is needed`);
    const need = this.size + extra;
    if (need <= this.cap) return;
    let cap = this.cap;
    while (cap < need) cap *= 2;
    // The old blocks are freed only once every new one is in place: a failed allocation (a storage
    // at its limit) leaves the cache as it was.
    const old = [...this.keyData, ...this.valueData];
    const grown: CpuKvBlock[] = [];
    try {
      for (const b of old) grown.push(this.regrow(b, cap));
    } catch (e) {
      for (const b of grown) b.free();
      throw e;
    }
    for (const b of old) b.free();
    const layers = this.keyData.length;
    this.keyData = grown.slice(0, layers);
    this.valueData = grown.slice(layers);
    const tokens = new Int32Array(cap);
    tokens.set(this.tokenIds.subarray(0, this.size));
    const positions = new Int32Array(cap);
    positions.set(this.positionIds.subarray(0, this.size));
    this.tokenIds = tokens;
    this.positionIds = positions;
    this.cap = cap;
  }

  /** Makes the `tokens.length` rows written past `length` visible, rotated under `regime`. */
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
  }

  /** Records that every cached key is now rotated under `regime` (after an in-place rerotation). */
  markRotated(regime: RopeRegime): void {
    this.assertLive();
    this.spans.reset(this.size, regime);
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

  clone(): CpuKvCache {
    this.assertLive();
    const c = new CpuKvCache(this.layout, Math.max(this.size, 1), this.storage);
    const { numKvHeads, headDim } = this.layout;
    for (let l = 0; l < this.layout.numLayers; l++) {
      for (let h = 0; h < numKvHeads; h++) {
        const from = this.offset(h, 0);
        const to = c.offset(h, 0);
        c.keyData[l]!.view.set(this.keyData[l]!.view.subarray(from, from + this.size * headDim), to);
        c.valueData[l]!.view.set(this.valueData[l]!.view.subarray(from, from + this.size * headDim), to);
      }
    }
    c.tokenIds.set(this.tokenIds.subarray(0, this.size));
    c.positionIds.set(this.positionIds.subarray(0, this.size));
    c.spans = this.spans.copy();
    c.size = this.size;
    return c;
  }

  replaceWith(other: KvCache): void {
    this.assertLive();
    if (other === this) return;
    if (!(other instanceof CpuKvCache)) {
      throw new CacheError('foreign-cache', `cannot replace a CPU cache with a ${other.location} cache of another kind`);
    }
    other.assertLive();
    const a = this.layout;
    const b = other.layout;
    if (a.numLayers !== b.numLayers || a.numKvHeads !== b.numKvHeads || a.headDim !== b.headDim) {
      throw new CacheError('cache-layout', `cannot replace a ${a.numLayers}×${a.numKvHeads}×${a.headDim} cache with a ${b.numLayers}×${b.numKvHeads}×${b.headDim} one`);
    }
    this.freeBlocks();
    this.storage = other.storage;
    this.keyData = other.keyData;
    this.valueData = other.valueData;
    // The blocks now belong to this cache: disposing `other` must not free them.
    other.keyData = [];
    other.valueData = [];
    this.tokenIds = other.tokenIds;
    this.positionIds = other.positionIds;
    this.spans = other.spans;
    this.size = other.size;
    this.cap = other.cap;
    other.dispose();
  }

  crop(length: number): void {
    this.assertLive();
    if (!Number.isInteger(length) || length < 0 || length > this.size) {
      throw new CacheError('bad-crop', `cannot crop a cache of ${this.size} tokens to ${length}`);
    }
    this.size = length;
    this.spans.crop(length);
  }

  dispose(): void {
    this.freed = true;
    this.freeBlocks();
  }

  private freeBlocks(): void {
    for (const b of this.keyData) b.free();
    for (const b of this.valueData) b.free();
    this.keyData = [];
    this.valueData = [];
  }

  private allocLayers(cap: number): CpuKvBlock[] {
    const { numLayers, numKvHeads, headDim } = this.layout;
    return Array.from({ length: numLayers }, () => this.storage.allocate(numKvHeads * cap * headDim));
  }

  private regrow(old: CpuKvBlock, cap: number): CpuKvBlock {
    const { numKvHeads, headDim } = this.layout;
    const block = this.storage.allocate(numKvHeads * cap * headDim);
    // Views after the allocation: growing the storage may have moved or detached older ones.
    const next = block.view;
    const from0 = old.view;
    for (let h = 0; h < numKvHeads; h++) {
      const from = h * this.cap * headDim;
      next.set(from0.subarray(from, from + this.size * headDim), h * cap * headDim);
    }
    return block;
  }

  private assertLive(): void {
    if (this.freed) throw new CacheError('disposed', 'this KV cache was disposed');
  }
}

import { CacheError } from '../errors.js';
import type { KvCache, KvCacheLayout } from './kv-cache.js';
import { RecordedKvCache } from './recorded-kv-cache.js';

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
  /**
   * `length` zeroed floats. A cache passes the layer the block holds, so storage that keeps layers
   * apart (one WebAssembly memory per group of layers) can place it; other storage ignores it.
   */
  allocate(length: number, layer?: number): CpuKvBlock;
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
 * fails half-way leaves it as it was. Token ids, positions and regimes are kept by a
 * {@link RecordedKvCache}'s record, as in the GPU backend's cache.
 */
export class CpuKvCache extends RecordedKvCache {
  readonly location = 'cpu' as const;
  private keyData: CpuKvBlock[];
  private valueData: CpuKvBlock[];

  /**
   * @param storage Where the key and value storage lives (default: the JS heap). A cache's clones
   * use the same storage.
   */
  constructor(
    layout: KvCacheLayout,
    initialCapacity = 16,
    private storage: CpuKvStorage = heapKvStorage,
  ) {
    super(layout, initialCapacity);
    this.keyData = this.allocLayers(this.record.capacity);
    this.valueData = this.allocLayers(this.record.capacity);
  }

  /** Where this cache's keys and values live. */
  get kvStorage(): CpuKvStorage {
    return this.storage;
  }

  get byteLength(): number {
    const { numLayers, numKvHeads, headDim } = this.layout;
    return this.disposed ? 0 : 2 * numLayers * numKvHeads * this.capacity * headDim * 4;
  }

  /**
   * The key storage of `layer` (`[kvHead][index][headDim]`, `capacity` indices per head). Valid
   * until the next `reserve`, and, for storage that can grow, until its next allocation.
   */
  keys(layer: number): Float32Array {
    this.record.assertLive();
    return this.keyData[layer]!.view;
  }

  /** The value storage of `layer`, laid out like {@link keys}. */
  values(layer: number): Float32Array {
    this.record.assertLive();
    return this.valueData[layer]!.view;
  }

  /** Offset of cache index `index` of `kvHead` in a layer's key or value storage. */
  offset(kvHead: number, index: number): number {
    return (kvHead * this.capacity + index) * this.layout.headDim;
  }

  /** Makes room for `extra` more rows without changing what is visible. */
  reserve(extra: number): void {
    const cap = this.record.grownCapacity(extra);
    if (cap === undefined) return;
    // The old blocks are freed only once every new one is in place: a failed allocation (a storage
    // at its limit) leaves the cache as it was.
    const old = [...this.keyData, ...this.valueData];
    const layers = this.keyData.length;
    const grown: CpuKvBlock[] = [];
    try {
      for (const [i, b] of old.entries()) grown.push(this.regrow(b, cap, i % layers));
    } catch (e) {
      for (const b of grown) b.free();
      throw e;
    }
    for (const b of old) b.free();
    this.keyData = grown.slice(0, layers);
    this.valueData = grown.slice(layers);
    this.record.grow(cap);
  }

  clone(): CpuKvCache {
    const record = this.record.copy();
    const c = new CpuKvCache(this.layout, record.capacity, this.storage);
    const { numKvHeads, headDim } = this.layout;
    const rows = this.length * headDim;
    for (let l = 0; l < this.layout.numLayers; l++) {
      for (let h = 0; h < numKvHeads; h++) {
        const from = this.offset(h, 0);
        const to = c.offset(h, 0);
        c.keyData[l]!.view.set(this.keyData[l]!.view.subarray(from, from + rows), to);
        c.valueData[l]!.view.set(this.valueData[l]!.view.subarray(from, from + rows), to);
      }
    }
    c.record = record;
    return c;
  }

  replaceWith(other: KvCache): void {
    this.record.assertLive();
    if (other === this) return;
    if (!(other instanceof CpuKvCache)) {
      throw new CacheError('foreign-cache', `cannot replace a CPU cache with a ${other.location} cache of another kind`);
    }
    this.record.takeOver(other.record);
    this.freeBlocks();
    this.storage = other.storage;
    this.keyData = other.keyData;
    this.valueData = other.valueData;
    // The blocks now belong to this cache: disposing `other` must not free them.
    other.keyData = [];
    other.valueData = [];
    other.dispose();
  }

  dispose(): void {
    this.record.dispose();
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
    return Array.from({ length: numLayers }, (_, layer) => this.storage.allocate(numKvHeads * cap * headDim, layer));
  }

  private regrow(old: CpuKvBlock, cap: number, layer: number): CpuKvBlock {
    const { numKvHeads, headDim } = this.layout;
    const block = this.storage.allocate(numKvHeads * cap * headDim, layer);
    // Views after the allocation: growing the storage may have moved or detached older ones.
    const next = block.view;
    const from0 = old.view;
    for (let h = 0; h < numKvHeads; h++) {
      const from = h * this.capacity * headDim;
      next.set(from0.subarray(from, from + this.length * headDim), h * cap * headDim);
    }
    return block;
  }
}

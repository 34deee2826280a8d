import type { CloneOptions, KvCache, KvCacheLayout } from './kv-cache.js';
import { RecordedKvCache } from './recorded-kv-cache.js';

/** Element type of a host KV cache's storage. */
export type KvCacheDtype = 'float32' | 'float16';

/** A host cache's elements: float32 values (`float32`), or IEEE binary16 bit patterns (`float16`). */
export type KvElements = Float32Array | Uint16Array;

/** A run of `length` elements a {@link KvBlockStorage} handed out. */
export interface KvBlock<A extends KvElements> {
  /**
   * The elements, as a view derived on each read: storage that can move or grow (WebAssembly
   * memory, whose growth detaches earlier views) returns a fresh view of the same elements.
   */
  readonly view: A;
  /**
   * `true` when the block holds another cache's old values that must not be met past the rows
   * the cache writes (a `KvBlockPool`'s reused block, whose next reader may be a graph that
   * reads the whole capacity, masked): the cache then zeroes every row it does not copy in.
   */
  readonly dirty?: boolean;
  /** Gives the elements back; the block is not used afterwards. */
  free(): void;
}

/** Where an {@link ArrayKvCache} keeps its keys and values. */
export interface KvBlockStorage<A extends KvElements> {
  /**
   * `length` elements, zeroed or not (storage may hand back memory it took back as it is: a cache
   * writes every row before its own kernels read it; a block marked {@link KvBlock.dirty} is also
   * zeroed past the rows the cache copies in). A cache passes the layer the block holds, so
   * storage that keeps layers apart (one WebAssembly memory per group of layers) can place it;
   * other storage ignores it. `written` is how many of the elements the cache copies in at once
   * (default all): a pool hands a block mostly left unwritten fresh memory instead (see `KvBlockPool`).
   */
  allocate(length: number, layer?: number, written?: number): KvBlock<A>;
}

/** Storage of fresh typed arrays on the JS heap, freed by the garbage collector. */
export function heapKvStorage<A extends KvElements>(make: (length: number) => A): KvBlockStorage<A> {
  return {
    allocate: (length) => {
      const view = make(length);
      return { view, free: () => undefined };
    },
  };
}

/**
 * A KV cache in host typed arrays, whatever their element type: the storage half of
 * {@link CpuKvCache} (`Float32Array`) and {@link Float16KvCache} (`Uint16Array` of binary16 bits),
 * which add only their element type, so allocation, growth, copy and hand-over are written once.
 *
 * Memory layout, per layer, for keys and values alike: `[kvHead][index][headDim]` with room for
 * `capacity` indices per head, so attention for one head scans one contiguous block. Keys are
 * stored after RoPE (and the attention factor), as HF transformers caches them. Capacity grows by
 * doubling, or to exactly a reservation past double (a planned length); a grow copies each head's
 * rows once.
 *
 * Backends write a forward's new rows past `length` (after {@link reserve}) and then call
 * {@link commit}: until the commit the cache's visible contents are unchanged, so a forward that
 * fails half-way leaves it as it was. Token ids, positions and regimes are kept by a
 * {@link RecordedKvCache}'s record, as in the GPU backend's cache.
 */
export abstract class ArrayKvCache<A extends KvElements> extends RecordedKvCache {
  readonly location = 'cpu' as const;
  /** What the storage holds: float32 values or binary16 bits. */
  abstract readonly dtype: KvCacheDtype;
  protected keyData: KvBlock<A>[];
  protected valueData: KvBlock<A>[];

  /** @param storage Where the key and value storage lives. A cache's clones use the same storage. */
  constructor(
    layout: KvCacheLayout,
    initialCapacity: number,
    protected storage: KvBlockStorage<A>,
  ) {
    super(layout, initialCapacity);
    this.keyData = this.allocLayers(this.record.capacity, 0);
    this.valueData = this.allocLayers(this.record.capacity, 0);
  }

  get byteLength(): number {
    const { numLayers, numKvHeads, headDim } = this.layout;
    const bytes = this.dtype === 'float16' ? 2 : 4;
    return this.disposed ? 0 : 2 * numLayers * numKvHeads * this.capacity * headDim * bytes;
  }

  /**
   * The key storage of `layer` (`[kvHead][index][headDim]`, `capacity` indices per head). Valid
   * until the next `reserve`, and, for storage that can grow, until its next allocation.
   */
  keys(layer: number): A {
    this.record.assertLive();
    return this.keyData[layer]!.view;
  }

  /** The value storage of `layer`, laid out like {@link keys}. */
  values(layer: number): A {
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
    const grown: KvBlock<A>[] = [];
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

  /** Whether `other` holds the same element type (and so can hand this cache its blocks). */
  protected abstract isSameKind(other: KvCache): other is ArrayKvCache<A>;

  protected refusal(other: KvCache): string | undefined {
    if (this.isSameKind(other)) return undefined;
    const what = other instanceof ArrayKvCache ? `a ${other.dtype} one` : `a ${other.location} cache of another kind`;
    return `cannot replace a ${this.dtype} CPU cache with ${what}`;
  }

  protected freeStorage(): void {
    for (const b of this.keyData) b.free();
    for (const b of this.valueData) b.free();
    this.keyData = [];
    this.valueData = [];
  }

  protected adoptStorage(other: this): void {
    this.storage = other.storage;
    this.keyData = other.keyData;
    this.valueData = other.valueData;
    other.keyData = [];
    other.valueData = [];
  }

  /**
   * A copy of this cache (see {@link KvCache.clone}): `make(capacity)` a fresh cache of the same
   * kind with the capacity of the record's copy (which may be smaller than this cache's), then the
   * kept rows and the record.
   */
  protected copyInto<C extends ArrayKvCache<A>>(make: (capacity: number) => C, options?: CloneOptions): C {
    const record = this.record.copy(options);
    // Made at the smallest capacity, then given blocks of the copy's capacity that are zeroed only past the copied rows.
    const c = make(1);
    c.freeStorage();
    try {
      c.keyData = c.allocLayers(record.capacity, record.length);
      c.valueData = c.allocLayers(record.capacity, record.length);
    } catch (e) {
      // A storage at its limit: nothing of the copy is kept.
      c.dispose();
      throw e;
    }
    // The record before the copy: `offset` reads its capacity.
    c.record = record;
    const { numKvHeads, headDim } = this.layout;
    const rows = record.length * headDim;
    for (let l = 0; l < this.layout.numLayers; l++) {
      for (let h = 0; h < numKvHeads; h++) {
        const from = this.offset(h, 0);
        const to = c.offset(h, 0);
        c.keyData[l]!.view.set(this.keyData[l]!.view.subarray(from, from + rows), to);
        c.valueData[l]!.view.set(this.valueData[l]!.view.subarray(from, from + rows), to);
      }
    }
    return c;
  }

  /** Blocks of `cap` rows per head for every layer, each head's rows from `written` on zeroed (the caller writes the ones before). */
  private allocLayers(cap: number, written: number): KvBlock<A>[] {
    const { numLayers, numKvHeads, headDim } = this.layout;
    const blocks: KvBlock<A>[] = [];
    try {
      for (let layer = 0; layer < numLayers; layer++) blocks.push(this.zeroPast(this.storage.allocate(numKvHeads * cap * headDim, layer, numKvHeads * written * headDim), cap, written));
    } catch (e) {
      // The blocks made before a failed allocation go back: nothing is held for a cache that does not exist.
      for (const b of blocks) b.free();
      throw e;
    }
    return blocks;
  }

  private regrow(old: KvBlock<A>, cap: number, layer: number): KvBlock<A> {
    const { numKvHeads, headDim } = this.layout;
    const block = this.zeroPast(this.storage.allocate(numKvHeads * cap * headDim, layer, numKvHeads * this.length * headDim), cap, this.length);
    // Views after the allocation: growing the storage may have moved or detached older ones.
    const next = block.view;
    const from0 = old.view;
    for (let h = 0; h < numKvHeads; h++) {
      const from = h * this.capacity * headDim;
      next.set(from0.subarray(from, from + this.length * headDim), h * cap * headDim);
    }
    return block;
  }

  /** Zeroes each head's rows [`written`, `cap`) of a {@link KvBlock.dirty} block. */
  private zeroPast(block: KvBlock<A>, cap: number, written: number): KvBlock<A> {
    if (block.dirty !== true || written >= cap) return block;
    const { numKvHeads, headDim } = this.layout;
    const view = block.view;
    if (written === 0) view.fill(0);
    else for (let h = 0; h < numKvHeads; h++) view.fill(0, (h * cap + written) * headDim, (h + 1) * cap * headDim);
    return block;
  }
}

import { ArrayKvCache, type KvBlock, type KvBlockStorage, heapKvStorage } from './array-kv-cache.js';
import type { CloneOptions, KvCache, KvCacheLayout } from './kv-cache.js';

/**
 * A run of `length` floats a {@link CpuKvStorage} handed out. `view` is derived on each read:
 * storage that can move or grow (WebAssembly memory, whose growth detaches earlier views) returns a
 * fresh view of the same floats.
 */
export type CpuKvBlock = KvBlock<Float32Array>;

/**
 * Where a {@link CpuKvCache} keeps its keys and values. The default is one `Float32Array` per
 * block on the JS heap; a backend whose kernels compute in WebAssembly passes an allocator over its
 * linear memory, so its caches need no copy in or out of it.
 */
export type CpuKvStorage = KvBlockStorage<Float32Array>;

/** The default storage: a fresh `Float32Array` per block, freed by the garbage collector. */
const heapFloat32Storage: CpuKvStorage = heapKvStorage((n) => new Float32Array(n));

/**
 * A KV cache in `Float32Array`s: the layout, growth and commit rules of {@link ArrayKvCache}
 * (`[kvHead][index][headDim]` per layer, `capacity` indices per head, new rows visible only after
 * {@link commit}). The cache every CPU backend computes on; {@link Float16KvCache} is its
 * half-size sibling for backends that can read binary16.
 */
export class CpuKvCache extends ArrayKvCache<Float32Array> {
  readonly dtype = 'float32' as const;

  /**
   * @param storage Where the key and value storage lives (default: the JS heap). A cache's clones
   * use the same storage.
   */
  constructor(layout: KvCacheLayout, initialCapacity = 16, storage: CpuKvStorage = heapFloat32Storage) {
    super(layout, initialCapacity, storage);
  }

  /** Where this cache's keys and values live. */
  get kvStorage(): CpuKvStorage {
    return this.storage;
  }

  clone(options?: CloneOptions): CpuKvCache {
    return this.copyInto((capacity) => new CpuKvCache(this.layout, capacity, this.storage), options);
  }

  protected isSameKind(other: KvCache): other is CpuKvCache {
    return other instanceof CpuKvCache;
  }
}

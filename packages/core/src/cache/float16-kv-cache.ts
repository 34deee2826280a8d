import { ArrayKvCache, type KvBlockStorage, heapKvStorage } from './array-kv-cache.js';
import type { CloneOptions, KvCache, KvCacheLayout } from './kv-cache.js';

/** The default storage: a fresh `Uint16Array` per block, freed by the garbage collector. */
const heapFloat16Storage: KvBlockStorage<Uint16Array> = heapKvStorage((n) => new Uint16Array(n));

/**
 * A KV cache of IEEE binary16 values, stored as their bits in `Uint16Array`s (Node 20 has no
 * `Float16Array`): half the memory of a {@link CpuKvCache}, with its layout, growth and commit
 * rules ({@link ArrayKvCache}). For backends whose kernels read binary16 (onnxruntime takes the
 * storage as `float16` tensors without a copy); it is not a `CpuKvCache`, so a backend that
 * computes on `Float32Array` views refuses it instead of misreading its bits.
 *
 * Values are rounded to nearest, ties to even, when written; {@link float16ToFloat32} reads them.
 * `rerotateCpuKeys` rotates its keys in float32 and stores them back rounded.
 */
export class Float16KvCache extends ArrayKvCache<Uint16Array> {
  readonly dtype = 'float16' as const;

  /**
   * @param storage Where the key and value storage lives (default: the JS heap). A cache's clones
   * use the same storage.
   */
  constructor(layout: KvCacheLayout, initialCapacity = 16, storage: KvBlockStorage<Uint16Array> = heapFloat16Storage) {
    super(layout, initialCapacity, storage);
  }

  clone(options?: CloneOptions): Float16KvCache {
    return this.copyInto((capacity) => new Float16KvCache(this.layout, capacity, this.storage), options);
  }

  protected isSameKind(other: KvCache): other is Float16KvCache {
    return other instanceof Float16KvCache;
  }
}

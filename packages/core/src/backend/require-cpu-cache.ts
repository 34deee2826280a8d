import { ArrayKvCache, CpuKvCache, Float16KvCache, type KvCacheDtype } from '../cache/index.js';
import type { HostKvCache, KvCache } from '../cache/index.js';
import { BackendError } from '../errors.js';

/**
 * `cache` as a host cache of `dtype` (default `float32`: a {@link CpuKvCache}; `float16`: a
 * {@link Float16KvCache}), for a backend that computes on CPU caches of any origin.
 * @throws BackendError `'cache-type'` for any other cache, naming `backendName`, and for a host
 *   cache of the other element type, naming both (the backend's `cacheDtype`).
 */
export function requireCpuCache(cache: KvCache, backendName: string): CpuKvCache;
export function requireCpuCache(cache: KvCache, backendName: string, dtype: 'float16'): Float16KvCache;
export function requireCpuCache(cache: KvCache, backendName: string, dtype: KvCacheDtype): HostKvCache;
export function requireCpuCache(cache: KvCache, backendName: string, dtype: KvCacheDtype = 'float32'): HostKvCache {
  if (dtype === 'float32' ? cache instanceof CpuKvCache : cache instanceof Float16KvCache) return cache as HostKvCache;
  if (cache instanceof ArrayKvCache) {
    throw new BackendError('cache-type', `the ${backendName} backend computes on ${dtype} caches (its cacheDtype '${dtype}'), not on a ${cache.dtype} one: make caches with its createCache()`);
  }
  throw new BackendError('cache-type', `the ${backendName} backend needs caches made by its createCache()`);
}

import { CpuKvCache } from '../cache/index.js';
import type { KvCache } from '../cache/index.js';
import { BackendError } from '../errors.js';

/**
 * `cache` as a {@link CpuKvCache}, for a backend that computes on CPU caches of any origin.
 * @throws BackendError `'cache-type'` for any other cache, naming `backendName`.
 */
export function requireCpuCache(cache: KvCache, backendName: string): CpuKvCache {
  if (!(cache instanceof CpuKvCache)) throw new BackendError('cache-type', `the ${backendName} backend needs caches made by its createCache()`);
  return cache;
}

export type { KvCache, KvCacheLayout, CacheLocation, RegimeSpan } from './kv-cache.js';
export { CpuKvCache } from './cpu-kv-cache.js';
export { rerotateCpuKeys } from './rerotate-keys.js';

export type { KvCache, KvCacheLayout, CacheLocation, RegimeSpan } from './kv-cache.js';
export { CacheRecord } from './cache-record.js';
export { RecordedKvCache } from './recorded-kv-cache.js';
export { CpuKvCache, type CpuKvBlock, type CpuKvStorage } from './cpu-kv-cache.js';
export { rerotateCpuKeys } from './rerotate-keys.js';
export { RegimeSpans } from './regime-spans.js';

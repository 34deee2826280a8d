export type { KvCache, KvCacheLayout, CacheLocation, RegimeSpan } from './kv-cache.js';
export { CacheRecord } from './cache-record.js';
export { RecordedKvCache } from './recorded-kv-cache.js';
export { ArrayKvCache, type KvBlock, type KvBlockStorage, type KvCacheDtype, type KvElements, heapKvStorage } from './array-kv-cache.js';
export { CpuKvCache, type CpuKvBlock, type CpuKvStorage } from './cpu-kv-cache.js';
export { Float16KvCache } from './float16-kv-cache.js';
export { float16ToFloat32, float32ToFloat16 } from './float16-values.js';
export { rerotateCpuKeys } from './rerotate-keys.js';
export { RegimeSpans } from './regime-spans.js';

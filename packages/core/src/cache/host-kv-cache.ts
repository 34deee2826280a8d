import type { CpuKvCache } from './cpu-kv-cache.js';
import type { Float16KvCache } from './float16-kv-cache.js';

/** A KV cache in host memory whose storage a backend reads directly: float32, or binary16 bits (`cacheDtype: 'float16'`). */
export type HostKvCache = CpuKvCache | Float16KvCache;

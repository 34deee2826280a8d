/** A CPU backend dressed as a GPU one: its caches say they live on a GPU and it cannot rotate keys. */
import type { Backend, CpuKvCache, KvCache } from '@ropeswitch/core';

/** A CPU cache behind a KvCache that says it lives on a GPU (and is no `CpuKvCache`). */
export class GpuLikeCache implements KvCache {
  readonly location = 'gpu' as const;
  constructor(readonly inner: CpuKvCache) {}
  get layout() {
    return this.inner.layout;
  }
  get length() {
    return this.inner.length;
  }
  get disposed() {
    return this.inner.disposed;
  }
  get byteLength() {
    return this.inner.byteLength;
  }
  tokens = () => this.inner.tokens();
  positions = () => this.inner.positions();
  regimeAt = (i: number) => this.inner.regimeAt(i);
  regimeSpans = () => this.inner.regimeSpans();
  uniformRegime = () => this.inner.uniformRegime();
  clone = () => new GpuLikeCache(this.inner.clone());
  replaceWith = (other: KvCache) => this.inner.replaceWith((other as GpuLikeCache).inner);
  reserve = (n: number) => this.inner.reserve(n);
  crop = (n: number) => this.inner.crop(n);
  dispose = () => this.inner.dispose();
}

/** A backend whose caches claim to live on a GPU and that declares no key rotation. */
export function gpuLike(inner: Backend): Backend {
  return {
    name: `gpu-like(${inner.name})`,
    config: inner.config,
    capabilities: { ...inner.capabilities, cacheLocation: 'gpu', rerotateKeys: false },
    createCache: () => new GpuLikeCache(inner.createCache() as CpuKvCache),
    forward: (request) => inner.forward({ ...request, rows: request.rows.map((r) => ({ ...r, cache: (r.cache as GpuLikeCache).inner })) }),
    dispose: () => inner.dispose(),
  };
}

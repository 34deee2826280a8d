import type { Backend, ForwardRequest, ForwardResult, KvCache } from '@ropeswitch/core';

/**
 * A backend that passes every call to `inner` and keeps count of what a policy chain above it
 * costs: tokens processed (every row of every forward, shadow chunks and re-prefills included)
 * and the peak bytes of the live caches it has seen (created through it or passed in a row).
 * Placed under the chain (`wrapBackend(counting, policy)`), so it sees what the policy sends.
 */
export class CountingBackend implements Backend {
  readonly name: string;
  readonly config: Backend['config'];
  readonly capabilities: Backend['capabilities'];
  readonly rerotateKeys?: Backend['rerotateKeys'];
  readonly prepareRerotation?: Backend['prepareRerotation'];
  /** Tokens of every row of every forward since the last {@link reset}. */
  tokens = 0;
  /** Largest total `byteLength` of the live caches, measured after each forward and rotation. */
  peakCacheBytes = 0;
  private readonly caches = new Set<KvCache>();

  constructor(private readonly inner: Backend) {
    this.name = inner.name;
    this.config = inner.config;
    this.capabilities = inner.capabilities;
    if (inner.rerotateKeys) {
      const rotate = inner.rerotateKeys.bind(inner);
      this.rerotateKeys = async (cache, to) => {
        await rotate(cache, to);
        this.measure();
      };
    }
    // Optional hooks pass through as they are: a policy must find the same backend it would without the count.
    if (inner.prepareRerotation) this.prepareRerotation = inner.prepareRerotation.bind(inner);
  }

  /** Starts a new count (a new run); caches still alive stay tracked. */
  reset(): void {
    this.tokens = 0;
    this.peakCacheBytes = 0;
  }

  createCache(): KvCache {
    const cache = this.inner.createCache();
    this.caches.add(cache);
    return cache;
  }

  async forward(request: ForwardRequest): Promise<ForwardResult> {
    for (const row of request.rows) {
      this.tokens += row.tokens.length;
      this.caches.add(row.cache);
    }
    const result = await this.inner.forward(request);
    // Measured before the policy above swaps caches: a re-prefill's new cache and the old one are both alive here.
    this.measure();
    return result;
  }

  dispose(): Promise<void> {
    return this.inner.dispose();
  }

  private measure(): void {
    let bytes = 0;
    for (const cache of this.caches) {
      if (cache.disposed) this.caches.delete(cache);
      else bytes += cache.byteLength;
    }
    if (bytes > this.peakCacheBytes) this.peakCacheBytes = bytes;
  }
}

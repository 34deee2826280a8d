/** A backend wrapper that records what reaches the backend under a policy chain. */
import type { Backend, ForwardRequest, ForwardResult, KvCache, RopeRegime } from '@ropeswitch/core';

/** One row of a forward call as the backend under the chain received it. */
export interface RecordedRow {
  readonly tokens: number[];
  readonly positions: number[];
  readonly regime: string;
  readonly cache: KvCache;
  /** The cache's length when the call started. */
  readonly cacheLength: number;
  readonly logits: number;
}

export interface RecordingBackend extends Backend {
  readonly inner: Backend;
  /** Every forward call, in order, each as its rows. */
  readonly calls: RecordedRow[][];
  /** Every call of `rerotateKeys`. */
  readonly rerotations: { cache: KvCache; to: string }[];
  /** Every cache handed out by `createCache`, in order. */
  readonly created: KvCache[];
}

export interface RecordingOptions {
  /** Hide the inner backend's `rerotateKeys` (capability `false`, method absent). */
  readonly hideRerotate?: boolean;
  readonly maxRows?: number;
}

/** Wraps `inner`, recording forward calls, rerotations and created caches. */
export function recording(inner: Backend, options: RecordingOptions = {}): RecordingBackend {
  const calls: RecordedRow[][] = [];
  const rerotations: { cache: KvCache; to: string }[] = [];
  const created: KvCache[] = [];
  const canRotate = !options.hideRerotate && inner.capabilities.rerotateKeys && inner.rerotateKeys !== undefined;
  const backend: RecordingBackend = {
    name: `recording(${inner.name})`,
    config: inner.config,
    capabilities: { ...inner.capabilities, rerotateKeys: canRotate, maxRows: options.maxRows ?? inner.capabilities.maxRows },
    inner,
    calls,
    rerotations,
    created,
    createCache() {
      const c = inner.createCache();
      created.push(c);
      return c;
    },
    forward(request: ForwardRequest): Promise<ForwardResult> {
      calls.push(
        request.rows.map((r) => ({
          tokens: Array.from(r.tokens),
          positions: Array.from(r.positions),
          regime: r.regime.id,
          cache: r.cache,
          cacheLength: r.cache.length,
          logits: r.logits ?? 1,
        })),
      );
      return inner.forward(request);
    },
    dispose: () => inner.dispose(),
  };
  if (canRotate) {
    return {
      ...backend,
      async rerotateKeys(cache: KvCache, to: RopeRegime) {
        rerotations.push({ cache, to: to.id });
        await inner.rerotateKeys!(cache, to);
      },
    };
  }
  return backend;
}

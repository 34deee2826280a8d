import type { Backend, ForwardRequest, ForwardResult, KvCache } from '@ropeswitch/core';

/** One row of a recorded forward call. */
export interface RecordedRow {
  readonly tokens: number;
  /** The row's cache object (compare identities: a shadow copy's rows use another cache than the session's). */
  readonly cache: KvCache;
  /** Cache length before the call. */
  readonly cached: number;
  readonly regime: string;
  readonly logits: number;
}

/** One forward call as it reached the backend under the policy chain. */
export interface RecordedCall {
  readonly rows: readonly RecordedRow[];
  /** New tokens of every row together. */
  readonly tokens: number;
}

/**
 * A backend wrapper for tests, placed under a policy chain (`wrapBackend(probe, policy)`): it
 * records every forward call the chain makes, and can fail one on purpose. `beforeForward` runs
 * before a call reaches the inner backend; throw there to make the call fail (the inner backend,
 * and so every cache, is then untouched), or abort the request's signal to make it abort.
 */
export interface ProbeBackend extends Backend {
  readonly inner: Backend;
  readonly calls: RecordedCall[];
  beforeForward: ((request: ForwardRequest, call: number) => void) | undefined;
}

export interface ProbeOptions {
  /** Declare fewer rows per call than the inner backend takes (e.g. 1, so that a policy's extra rows run as separate calls). */
  readonly maxRows?: number;
}

export function probeBackend(inner: Backend, options: ProbeOptions = {}): ProbeBackend {
  const probe: ProbeBackend = {
    name: `probe(${inner.name})`,
    config: inner.config,
    capabilities: options.maxRows === undefined ? inner.capabilities : { ...inner.capabilities, maxRows: options.maxRows },
    inner,
    calls: [],
    beforeForward: undefined,
    createCache: () => inner.createCache(),
    async forward(request: ForwardRequest): Promise<ForwardResult> {
      const rows = request.rows.map((r) => ({
        tokens: r.tokens.length,
        cache: r.cache,
        cached: r.cache.length,
        regime: r.regime.id,
        logits: r.logits ?? 1,
      }));
      const index = probe.calls.length;
      probe.calls.push({ rows, tokens: rows.reduce((sum, r) => sum + r.tokens, 0) });
      probe.beforeForward?.(request, index);
      return inner.forward(request);
    },
    dispose: () => inner.dispose(),
  };
  if (inner.rerotateKeys) {
    const rotate = inner.rerotateKeys.bind(inner);
    probe.rerotateKeys = (cache, to) => rotate(cache, to);
  }
  return probe;
}

/** An error thrown by a {@link ProbeBackend} fault: a plain `Error`, as a broken backend would throw. */
export class InjectedFault extends Error {
  constructor(what: string) {
    super(`injected fault: ${what}`);
    this.name = 'InjectedFault';
  }
}

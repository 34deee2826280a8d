/** A backend wrapper that fails chosen forward calls before they run. */
import type { Backend, ForwardRequest, ForwardResult } from '@ropeswitch/core';

export interface FaultyBackend extends Backend {
  /** Forward calls seen so far (failed ones included). */
  readonly calls: number;
}

/**
 * Wraps `inner`; before each forward call asks `fault(request, call)` (call counts from 0) and, when
 * it returns something, throws it without running the call, so no cache moves.
 */
export function faulty(inner: Backend, fault: (request: ForwardRequest, call: number) => unknown): FaultyBackend {
  let calls = 0;
  const backend: FaultyBackend = {
    name: `faulty(${inner.name})`,
    config: inner.config,
    capabilities: inner.capabilities,
    get calls() {
      return calls;
    },
    createCache: () => inner.createCache(),
    async forward(request: ForwardRequest): Promise<ForwardResult> {
      const error = fault(request, calls++);
      if (error !== undefined) throw error;
      return inner.forward(request);
    },
    dispose: () => inner.dispose(),
  };
  if (inner.rerotateKeys) backend.rerotateKeys = inner.rerotateKeys.bind(inner);
  return backend;
}

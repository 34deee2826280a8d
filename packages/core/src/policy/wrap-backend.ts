import type { Backend, ForwardResult } from '../backend/backend.js';
import type { KvCache } from '../cache/kv-cache.js';
import { BackendError, RopeswitchError, isAbortError } from '../errors.js';
import { validateForwardRequest } from '../backend/validate-request.js';
import { validateForwardResult } from '../backend/validate-result.js';
import { createRopeSchedule } from '../rope/create-schedule.js';
import type { RopeRegime } from '../rope/regime.js';
import type { RopeSchedule } from '../rope/schedule.js';
import type { CachePolicy, PolicyRequest, PolicyResult } from './cache-policy.js';
import { composePolicies } from './compose-policies.js';

/** A backend whose forward calls run through a chain of cache policies. Still a {@link Backend}: wrappers nest. */
export interface PolicyBackend extends Backend {
  forward(request: PolicyRequest): Promise<PolicyResult>;
  /** The backend under the chain. */
  readonly inner: Backend;
  /** The chain, first policy first. */
  readonly policies: readonly CachePolicy[];
  releaseSequence(cache: KvCache): void;
}

/**
 * Wraps `backend` so that every forward call runs through `policies`: **the first policy sees the
 * request first; the last sits on the backend**. With no policies the wrapper passes requests
 * through (a stale cache, as HF custom loops get). The result is a backend, so wrapping a wrapped
 * backend nests: the outer chain runs first.
 *
 * Requests are checked (`validateForwardRequest`) before the chain sees them, so a policy that
 * rewrites a row never hides a bad one; what the backend returns is checked too
 * (`validateForwardResult`: shapes, and a `BackendError` `nan-logits` for a non-finite logit), and a
 * failed call's rows are cropped back off every cache it touched. Requests with more rows than the backend takes in one call
 * (policies may add rows) are split into consecutive calls; should a later call fail, the rows of
 * the earlier ones stay committed (policies put their extra rows first for that reason).
 */
export function wrapBackend(backend: Backend, ...policies: CachePolicy[]): PolicyBackend {
  const list = Object.freeze(policies.slice());
  const chain = composePolicies(...list);
  const schedule: RopeSchedule = createRopeSchedule(backend.config.rope);
  // The chain may take more rows than the backend: dispatch splits them.
  const unbounded = { ...backend.capabilities, maxRows: Infinity };
  const call = async (request: PolicyRequest): Promise<ForwardResult> => {
    const before = request.rows.map((row) => row.cache.length);
    try {
      const result = await backend.forward(request);
      validateForwardResult(backend.config, request, result, backend.name);
      return result;
    } catch (error) {
      // Whatever the backend committed for a failed call goes: no cache is left half-written.
      request.rows.forEach((row, r) => {
        if (!row.cache.disposed && row.cache.length > before[r]!) row.cache.crop(before[r]!);
      });
      // A backend's own failure becomes a typed error; aborts and typed errors pass as they are.
      if (error instanceof RopeswitchError || isAbortError(error, request.signal)) throw error;
      const why = error instanceof Error ? error.message : String(error);
      throw new BackendError('forward-failed', `backend ${backend.name} failed a forward of ${request.rows.length} rows: ${why}`, { cause: error });
    }
  };
  const dispatch = async (request: PolicyRequest): Promise<PolicyResult> => {
    const max = backend.capabilities.maxRows;
    if (request.rows.length <= max) return call(request);
    const rows: ForwardResult['rows'][number][] = [];
    for (let i = 0; i < request.rows.length; i += max) {
      const part = await call({ ...request, rows: request.rows.slice(i, i + max) });
      rows.push(...part.rows);
    }
    return { rows };
  };
  const wrapped: PolicyBackend = {
    name: backend.name,
    config: backend.config,
    capabilities: backend.capabilities,
    inner: backend,
    policies: list,
    createCache: () => backend.createCache(),
    forward: async (request) => {
      validateForwardRequest(backend.config, unbounded, request);
      return chain.wrapForward!({ request, next: dispatch, backend, schedule });
    },
    releaseSequence(cache) {
      chain.releaseSequence!(cache);
      backend.releaseSequence?.(cache);
    },
    dispose: () => backend.dispose(),
  };
  if (backend.rerotateKeys) {
    const rotate = backend.rerotateKeys.bind(backend);
    const prepare = backend.prepareRerotation?.bind(backend);
    return {
      ...wrapped,
      rerotateKeys: (cache, to) => rotate(cache, to),
      ...(prepare ? { prepareRerotation: (from: RopeRegime, to: RopeRegime, positions: number) => prepare(from, to, positions) } : {}),
    };
  }
  return wrapped;
}

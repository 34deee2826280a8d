import { PolicyError } from '../errors.js';
import type { CachePolicy, ForwardNext, PolicyRequest, PolicyResult, WrapForwardOptions } from './cache-policy.js';

/**
 * One policy that runs `policies` in order: the first sees the request first and calls `next` into
 * the second, and so on; the last one's `next` is the caller's. Like koa-compose: the array is
 * copied (later changes to it do not matter), `next` may be called at most once per policy and
 * call, errors propagate to the caller, and a policy must return one result row per request row.
 */
export function composePolicies(...policies: CachePolicy[]): CachePolicy {
  const chain = policies.slice();
  chain.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || typeof p.name !== 'string') {
      throw new PolicyError('not-a-policy', `policy ${i} is not a CachePolicy (an object with a name and optional hooks)`);
    }
    if (p.wrapForward !== undefined && typeof p.wrapForward !== 'function') {
      throw new PolicyError('not-a-policy', `policy ${i} (${p.name}): wrapForward must be a function`);
    }
  });
  return {
    name: chain.map((p) => p.name).join(' → ') || 'pass-through',
    wrapForward(options: WrapForwardOptions): Promise<PolicyResult> {
      const dispatch = async (i: number, request: PolicyRequest): Promise<PolicyResult> => {
        const policy = chain[i];
        if (!policy) return checkRows('the backend', request, await options.next(request));
        if (!policy.wrapForward) return dispatch(i + 1, request);
        let called = false;
        const next: ForwardNext = (inner) => {
          if (called) return Promise.reject(new PolicyError('next-twice', `policy ${policy.name} called next() twice in one forward`));
          called = true;
          return dispatch(i + 1, inner);
        };
        const result = await policy.wrapForward({ ...options, request, next });
        return checkRows(`policy ${policy.name}`, request, result);
      };
      return dispatch(0, options.request);
    },
    releaseSequence(cache) {
      for (const p of chain) p.releaseSequence?.(cache);
    },
  };
}

function checkRows(who: string, request: PolicyRequest, result: PolicyResult): PolicyResult {
  if (!result || !Array.isArray(result.rows) || result.rows.length !== request.rows.length) {
    throw new PolicyError('bad-result', `${who} returned ${result?.rows?.length ?? 'no'} result rows for ${request.rows.length} request rows`);
  }
  return result;
}

import type { Backend } from '../backend/backend.js';
import { PolicyError } from '../errors.js';
import type { CachePolicy, ForwardNext, PolicyRequest, PolicyResult, StaleKeyHandling, WrapForwardOptions } from './cache-policy.js';

/** One policy of a chain, and the backend it was wrapped around when that is not the chain's (what its `wrapForward` sees as `backend`). */
export interface ChainLink {
  readonly policy: CachePolicy;
  readonly backend?: Backend;
}

/**
 * One policy that runs `policies` in order: the first sees the request first and calls `next` into
 * the second, and so on; the last one's `next` is the caller's. Like koa-compose: the array is
 * copied (later changes to it do not matter), `next` may be called at most once per policy and
 * call, errors propagate to the caller, and a policy must return one result row per request row.
 */
export function composePolicies(...policies: CachePolicy[]): CachePolicy {
  const chain = checkedPolicies(policies);
  const links = chain.map((policy) => ({ policy }));
  const staleKeys = staleKeysOf(chain);
  return {
    name: chain.map((p) => p.name).join(' → ') || 'pass-through',
    ...(staleKeys ? { staleKeys } : {}),
    wrapForward: (options) => runChain(links, options),
    releaseSequence(cache) {
      for (const p of chain) p.releaseSequence?.(cache);
    },
  };
}

/** What a chain does with stale keys: the first policy that says decides (the rest never see such a row as it was). */
export function staleKeysOf(chain: readonly CachePolicy[]): StaleKeyHandling | undefined {
  return chain.find((p) => p.staleKeys !== undefined)?.staleKeys;
}

/** A copy of `policies`, each checked to be a {@link CachePolicy} (a `PolicyError` `not-a-policy` names the first that is not). */
export function checkedPolicies(policies: readonly CachePolicy[]): CachePolicy[] {
  const chain = policies.slice();
  chain.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || typeof p.name !== 'string') {
      throw new PolicyError('not-a-policy', `policy ${i} is not a CachePolicy (an object with a name and optional hooks)`);
    }
    if (p.wrapForward !== undefined && typeof p.wrapForward !== 'function') {
      throw new PolicyError('not-a-policy', `policy ${i} (${p.name}): wrapForward must be a function`);
    }
  });
  return chain;
}

/**
 * Runs `options.request` down `links`, first link first, each policy's `next` calling the next
 * link's and the last one's calling `options.next`; each result is checked to hold one row per
 * request row.
 */
export function runChain(links: readonly ChainLink[], options: WrapForwardOptions): Promise<PolicyResult> {
  const step = async (i: number, request: PolicyRequest): Promise<PolicyResult> => {
    const link = links[i];
    if (!link) return checkRows('the backend', request, await options.next(request));
    const { policy } = link;
    if (!policy.wrapForward) return step(i + 1, request);
    let called = false;
    const next: ForwardNext = (inner) => {
      if (called) return Promise.reject(new PolicyError('next-twice', `policy ${policy.name} called next() twice in one forward`));
      called = true;
      return step(i + 1, inner);
    };
    const result = await policy.wrapForward({ ...options, backend: link.backend ?? options.backend, request, next });
    return checkRows(`policy ${policy.name}`, request, result);
  };
  return step(0, options.request);
}

function checkRows(who: string, request: PolicyRequest, result: PolicyResult): PolicyResult {
  if (!result || !Array.isArray(result.rows) || result.rows.length !== request.rows.length) {
    throw new PolicyError('bad-result', `${who} returned ${result?.rows?.length ?? 'no'} result rows for ${request.rows.length} request rows`);
  }
  return result;
}

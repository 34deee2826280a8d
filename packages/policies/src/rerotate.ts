import type { CachePolicy, PolicyEvent, PolicyRow, WrapForwardOptions } from '@ropeswitch/core';
import { CpuKvCache, PolicyError, hasStaleKeys, lengthAfter, rerotateCpuKeys } from '@ropeswitch/core';
import { eventsOnly, forwardWithRewrites, type RowRewrite } from './row-rewrite.js';

/**
 * Cheap and approximate: when a row's new tokens use another regime than its cached keys, the
 * cached keys are rotated in place, pair i of the key at position p by `p·(ω_new,i − ω_old,i)`, and
 * scaled by the ratio of the attention factors; values are untouched. Uses the backend's own
 * rotation when it declares one (no readback of a device cache), else the core rotation on CPU
 * caches. Exact for layer 0 only: deeper keys were computed from hidden states that attended under
 * the old regime, which is why, on a model trained the LongRoPE way, it recovers little.
 *
 * The rotation happens before the forward: if the forward then fails, the cache keeps its (valid,
 * consistently tagged) rotated keys and the next forward does not rotate again.
 */
export function rerotate(): CachePolicy {
  const name = 'rerotate';
  return {
    name,
    async wrapForward(options) {
      const { request, next } = options;
      const rewrites: (RowRewrite | undefined)[] = [];
      for (const row of request.rows) {
        rewrites.push(hasStaleKeys(row) ? eventsOnly([await rotateRow(row, options, name)]) : undefined);
      }
      return forwardWithRewrites(request, next, rewrites);
    },
  };
}

async function rotateRow(row: PolicyRow, { backend, schedule }: WrapForwardOptions, policy: string): Promise<PolicyEvent> {
  const { cache, regime } = row;
  const from = [...new Set(cache.regimeSpans().map((s) => s.regime.id))].filter((id) => id !== regime.id);
  let onBackend = false;
  if (backend.capabilities.rerotateKeys && backend.rerotateKeys) {
    await backend.rerotateKeys(cache, regime);
    onBackend = true;
  } else if (cache instanceof CpuKvCache) {
    rerotateCpuKeys(cache, regime, schedule.pairing, backend.capabilities.anglePrecision);
  } else {
    throw new PolicyError('cannot-rerotate', `backend ${backend.name} declares no key rotation and its caches live on the ${cache.location}: use rePrefill or shadowPrefill`);
  }
  return { type: 'rerotate', policy, from, to: regime.id, keys: cache.length, onBackend, atLength: lengthAfter(row) };
}

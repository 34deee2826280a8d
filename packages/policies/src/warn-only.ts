import type { CachePolicy, PolicyEvent } from '@ropeswitch/core';
import { lengthAfter } from '@ropeswitch/core';
import { eventsOnly, forwardWithRewrites } from './row-rewrite.js';

/**
 * Reports a `rope-regime-change` event whenever a row's new tokens are rotated under another regime
 * than the sequence's last cached key (once for LongRoPE; at every step past the threshold for
 * dynamic NTK), then behaves as {@link stale}.
 */
export function warnOnly(): CachePolicy {
  const name = 'warn-only';
  return {
    name,
    wrapForward({ request, next }) {
      const rewrites = request.rows.map((row) => {
        const n = row.cache.length;
        if (n === 0) return undefined;
        const from = row.cache.regimeAt(n - 1);
        if (from.id === row.regime.id) return undefined;
        const event: PolicyEvent = { type: 'rope-regime-change', policy: name, from: from.id, to: row.regime.id, atLength: lengthAfter(row) };
        return eventsOnly([event]);
      });
      return forwardWithRewrites(request, next, rewrites);
    },
  };
}

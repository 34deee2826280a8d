import type { CachePolicy } from '@ropeswitch/core';
import { eventsOnly, lengthAfter, rewriteRows } from '@ropeswitch/core';

/**
 * Reports a `rope-regime-change` event whenever a row's new tokens are rotated under another regime
 * than the sequence's last cached key (once for LongRoPE; at every step past the threshold for
 * dynamic NTK), then behaves as {@link stale}.
 */
export function warnOnly(): CachePolicy {
  const name = 'warn-only';
  return rewriteRows(name, (row) => {
    const n = row.cache.length;
    if (n === 0) return undefined;
    const from = row.cache.regimeAt(n - 1);
    if (from.id === row.regime.id) return undefined;
    return eventsOnly([{ type: 'rope-regime-change', policy: name, from: from.id, to: row.regime.id, atLength: lengthAfter(row) }]);
  });
}

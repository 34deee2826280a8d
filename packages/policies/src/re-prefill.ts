import type { CachePolicy } from '@ropeswitch/core';
import { hasStaleKeys, rewriteRows } from '@ropeswitch/core';
import { rebuildRow } from './rebuild-row.js';

/**
 * Exact: when a row's new tokens use another regime than its cached keys, every token of the
 * sequence runs again under the new regime into a fresh cache, in the same forward, and the fresh
 * cache replaces the old one on success (what HF `generate()` does since PR #33129, here at the
 * forward level). Costs one prefill of the whole sequence at each regime change: once for LongRoPE,
 * every step past the threshold for dynamic NTK.
 */
export function rePrefill(): CachePolicy {
  const name = 're-prefill';
  return rewriteRows(name, (row, { backend }) => (hasStaleKeys(row) ? rebuildRow(row, row.regime, backend, name) : undefined), { staleKeys: 'rebuild' });
}

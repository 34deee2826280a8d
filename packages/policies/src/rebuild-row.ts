import type { Backend, PolicyRow, RopeRegime, RowRewrite } from '@ropeswitch/core';
import { lengthAfter, positionLimit } from '@ropeswitch/core';
import { concatIds } from './concat-ids.js';

/**
 * Recomputes a row's whole sequence (cached tokens, then the new ones) under `regime` into a fresh
 * cache, in the same forward; the fresh cache replaces the old one's contents only once the forward
 * succeeded, so a failure or an abort leaves the sequence as it was.
 */
export function rebuildRow(row: PolicyRow, regime: RopeRegime, backend: Backend, policy: string): RowRewrite {
  const fresh = backend.createCache();
  const tokens = concatIds(row.cache.tokens(), row.tokens);
  // Room for the whole plan, as the session reserved it, so the rebuilt cache never regrows.
  fresh.reserve(Math.max(tokens.length, Math.min(row.plannedLength ?? 0, positionLimit(backend.config))));
  return {
    row: { ...row, tokens, positions: concatIds(row.cache.positions(), row.positions), cache: fresh, regime },
    onSuccess: () => row.cache.replaceWith(fresh),
    onFailure: () => fresh.dispose(),
    doing: `${policy}: re-prefill of ${tokens.length} tokens under ${regime.id}`,
    events: [{ type: 're-prefill', policy, regime: regime.id, tokens: tokens.length, atLength: lengthAfter(row) }],
  };
}

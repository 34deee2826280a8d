import type { CachePolicy, PolicyEvent, PolicyRow, RopeRegime, RowRewrite } from '@ropeswitch/core';
import { lengthAfter, rewriteRows } from '@ropeswitch/core';
import { rebuildRow } from './rebuild-row.js';

/**
 * Decides the regime from the plan: while a sequence is shorter than its `plannedLength`, each
 * row runs under the regime of the planned length. When the planned length (prompt + max new tokens, as
 * `Session.prefill` and `generate()` pass it) crosses the threshold, that is the long regime from
 * the first token: exact after the crossing, with long factors on the short part (what Phi-3's
 * authors trade off, and what vLLM-style "one factor set per prompt" does). Without a plan, or once
 * the sequence outgrows it, it behaves as {@link rePrefill}.
 *
 * Dynamic NTK: the regime of the planned length is kept while the sequence is shorter, then every
 * further step re-prefills, like {@link rePrefill}.
 */
export function preEstimate(): CachePolicy {
  const name = 'pre-estimate';
  return rewriteRows(name, (row, { backend, schedule }): RowRewrite | undefined => {
    const S = lengthAfter(row);
    // Without a plan, or past it, the caller's regime stands (it may come from a longer prompt
    // than this chunk): rePrefill's behaviour.
    const planned = row.plannedLength;
    const target = planned !== undefined && planned > S ? schedule.regimeFor(planned) : row.regime;
    if (row.cache.length > 0 && !uniformlyIn(row, target)) return rebuildRow(row, target, backend, name);
    if (target.id === row.regime.id) return undefined;
    const events: PolicyEvent[] =
      row.cache.length === 0 ? [{ type: 'pre-estimate', policy: name, regime: target.id, plannedLength: row.plannedLength ?? S, atLength: S }] : [];
    return { row: { ...row, regime: target }, events };
  }, { staleKeys: 'rebuild' });
}

function uniformlyIn(row: PolicyRow, regime: RopeRegime): boolean {
  return row.cache.uniformRegime()?.id === regime.id;
}

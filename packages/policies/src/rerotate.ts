import type { CachePolicy, PolicyEvent, PolicyRow, RopeSchedule, WrapForwardOptions } from '@ropeswitch/core';
import { CpuKvCache, PolicyError, RerotationTableCache, eventsOnly, hasStaleKeys, lengthAfter, rerotateCpuKeys, rewriteRows } from '@ropeswitch/core';

export interface RerotateOptions {
  /**
   * Prepare the rotation's cos/sin tables in the last `prepareWindow` tokens before the threshold
   * (a share of them per step, all of them in a prompt's forward), so the crossing step pays only
   * the pass over the key cache. Default 64; 0 computes the tables at the crossing. Only for
   * sequences whose planned length crosses (or that plan none), and not for schedules that change
   * at every step (dynamic NTK has no single next regime).
   */
  readonly prepareWindow?: number;
}

/**
 * Cheap and approximate: when a row's new tokens use another regime than its cached keys, the
 * cached keys are rotated in place, pair i of the key at position p by `p·(ω_new,i − ω_old,i)`, and
 * scaled by the ratio of the attention factors; values are untouched. Uses the backend's own
 * rotation when it declares one (no readback of a device cache), else the core rotation on CPU
 * caches. Exact for layer 0 only: deeper keys were computed from hidden states that attended under
 * the old regime, which is why, on a model trained the LongRoPE way, it recovers little.
 *
 * Cost at the crossing: one pass over the key cache. The cos/sin of the move cost more than the
 * pass on a CPU backend (a sine and a cosine per position and pair), so they are prepared in the
 * steps before the threshold (`prepareWindow`), via the backend's `prepareRerotation` when it has
 * one.
 *
 * The rotation happens before the forward: if the forward then fails, the cache keeps its (valid,
 * consistently tagged) rotated keys and the next forward does not rotate again.
 */
export function rerotate(options: RerotateOptions = {}): CachePolicy {
  const name = 'rerotate';
  const prepareWindow = options.prepareWindow ?? 64;
  if (!Number.isInteger(prepareWindow) || prepareWindow < 0) {
    throw new PolicyError('bad-option', `rerotate: prepareWindow must be a non-negative integer; got ${prepareWindow}`);
  }
  // For backends that cannot rotate their own caches (CPU caches rotated here).
  const cpuTables = new RerotationTableCache();
  return rewriteRows(name, async (row, options) => {
    if (hasStaleKeys(row)) return eventsOnly([await rotateRow(row, options, name, cpuTables)]);
    await prepareTables(row, options, prepareWindow, cpuTables);
    return undefined;
  }, { staleKeys: 'approximate' });
}

async function rotateRow(row: PolicyRow, { backend, schedule }: WrapForwardOptions, policy: string, cpuTables: RerotationTableCache): Promise<PolicyEvent> {
  const { cache, regime } = row;
  const from = [...new Set(cache.regimeSpans().map((s) => s.regime.id))].filter((id) => id !== regime.id);
  let onBackend = false;
  if (backend.capabilities.rerotateKeys && backend.rerotateKeys) {
    await backend.rerotateKeys(cache, regime);
    onBackend = true;
  } else if (cache instanceof CpuKvCache) {
    // Memoised tables only pay off when moves come back (not under dynamic NTK's new regime per step).
    rerotateCpuKeys(cache, regime, schedule.pairing, backend.capabilities.anglePrecision, schedule.changesEveryStep ? undefined : cpuTables);
  } else {
    throw new PolicyError('cannot-rerotate', `backend ${backend.name} declares no key rotation and its caches live on the ${cache.location}: use rePrefill or shadowPrefill`);
  }
  return { type: 'rerotate', policy, from, to: regime.id, keys: cache.length, onBackend, atLength: lengthAfter(row) };
}

/**
 * Within `window` tokens of the threshold, prepares the tables of the coming move (this row's
 * regime → the one past the threshold) for positions [0, threshold), in proportion to how far into
 * the window the row is: all of them by the last short step, a little per decode step.
 */
async function prepareTables(row: PolicyRow, { backend, schedule }: WrapForwardOptions, window: number, cpuTables: RerotationTableCache): Promise<void> {
  const threshold = planCrossing(row, schedule, window);
  if (threshold === undefined) return;
  const to = schedule.regimeFor(threshold + 1);
  if (to.id === row.regime.id) return;
  const into = lengthAfter(row) - (threshold - window); // 1 … window
  const positions = row.tokens.length > 1 ? threshold : Math.min(threshold, Math.ceil((threshold * into) / window));
  if (backend.capabilities.rerotateKeys && backend.rerotateKeys) {
    await backend.prepareRerotation?.(row.regime, to, positions);
  } else if (row.cache instanceof CpuKvCache) {
    cpuTables.prepare(row.regime, to, positions, backend.capabilities.anglePrecision);
  }
}

/** The threshold when the row is in the window before it and is planned to cross it with a single next regime. */
function planCrossing(row: PolicyRow, schedule: RopeSchedule, window: number): number | undefined {
  const threshold = schedule.threshold;
  if (threshold === undefined || schedule.changesEveryStep || window === 0) return undefined;
  const S = lengthAfter(row);
  if (S > threshold || S <= threshold - window) return undefined;
  return row.plannedLength === undefined || row.plannedLength > threshold ? threshold : undefined;
}

import type { RopePairing } from '../config/model-config.js';
import { applyRotary } from '../rope/apply-rotary.js';
import type { AnglePrecision, RopeRegime } from '../rope/regime.js';
import { rerotationTables } from '../rope/rotary-tables.js';
import { CacheError } from '../errors.js';
import type { CpuKvCache } from './cpu-kv-cache.js';

/**
 * Moves every cached key of a CPU cache to regime `to`, in place: the key at position p, rotated
 * under regime A, turns pair i by `p·(ω_to − ω_A)` (angles as the forward computes them) and scales
 * by `m_to / m_A`. Exact for layer 0; for deeper layers the keys came from hidden states that
 * attended under A, so the result approximates a true recompute. Values are not touched.
 */
export function rerotateCpuKeys(
  cache: CpuKvCache,
  to: RopeRegime,
  pairing: RopePairing,
  precision: AnglePrecision = 'float32',
): void {
  const positions = cache.positions();
  const { numLayers, numKvHeads, headDim } = cache.layout;
  // Check everything before touching a key: a failed rerotation must leave the cache as it was.
  const pairs = to.invFreq.length;
  if (2 * pairs > headDim) {
    throw new CacheError('regime-size', `regime ${to.id} rotates ${pairs} pairs; the cache's head dim ${headDim} holds at most ${headDim / 2}`);
  }
  for (const span of cache.regimeSpans()) {
    if (span.regime.invFreq.length !== pairs) {
      throw new CacheError('regime-size', `cannot rerotate keys rotated under ${span.regime.id} (${span.regime.invFreq.length} pairs) into ${to.id} (${pairs} pairs)`);
    }
  }
  for (const span of cache.regimeSpans()) {
    if (span.regime.id === to.id) continue;
    const tables = rerotationTables(span.regime, to, positions.subarray(span.start, span.end), precision);
    for (let l = 0; l < numLayers; l++) {
      const keys = cache.keys(l);
      for (let h = 0; h < numKvHeads; h++) {
        for (let i = span.start; i < span.end; i++) {
          applyRotary(keys, cache.offset(h, i), 1, headDim, pairing, tables, i - span.start);
        }
      }
    }
  }
  cache.markRotated(to);
}

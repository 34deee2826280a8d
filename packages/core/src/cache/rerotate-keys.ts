import type { RopePairing } from '../config/model-config.js';
import type { AnglePrecision, RopeRegime } from '../rope/regime.js';
import type { RerotationTableCache } from '../rope/rerotation-table-cache.js';
import { type HeadBlock, rotateBlocks } from '../rope/rotate-blocks.js';
import { type RotaryTables, rerotationTables } from '../rope/rotary-tables.js';
import { CacheError } from '../errors.js';
import type { CpuKvCache } from './cpu-kv-cache.js';

/**
 * Moves every cached key of a CPU cache to regime `to`, in place: the key at position p, rotated
 * under regime A, turns pair i by `p·(ω_to − ω_A)` (angles as the forward computes them) and scales
 * by `m_to / m_A`. Exact for layer 0; for deeper layers the keys came from hidden states that
 * attended under A, so the result approximates a true recompute. Values are not touched.
 *
 * With `tables` (a memo the caller keeps, e.g. the backend's), the cos/sin of a move are computed
 * once over positions 0 … and reused, and can be prepared before the crossing: the rotation then
 * costs one pass over the keys. Results are the same bits with or without it.
 *
 * `rotate` is the rotation kernel (default {@link rotateBlocks}); a backend passes its own, with
 * the same contract, to run the pass where its cache storage lives (e.g. WebAssembly SIMD).
 */
export function rerotateCpuKeys(
  cache: CpuKvCache,
  to: RopeRegime,
  pairing: RopePairing,
  precision: AnglePrecision = 'float32',
  tables?: RerotationTableCache,
  rotate: typeof rotateBlocks = rotateBlocks,
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
    const spanPositions = positions.subarray(span.start, span.end);
    const { table, rows } = tablesFor(span.regime, to, spanPositions, precision, tables);
    // Each (layer, kvHead) holds the span as one contiguous [index][headDim] block.
    const blocks: HeadBlock[] = [];
    for (let l = 0; l < numLayers; l++) {
      for (let h = 0; h < numKvHeads; h++) blocks.push({ data: cache.keys(l), offset: cache.offset(h, span.start) });
    }
    rotate(blocks, span.end - span.start, headDim, pairing, table, rows);
  }
  cache.markRotated(to);
}

/**
 * Memoised tables indexed by position when the positions are a dense prefix-like set (the usual
 * 0 … n−1); otherwise (a few far positions) fresh tables of just those positions, row k for key k.
 */
function tablesFor(
  from: RopeRegime,
  to: RopeRegime,
  positions: Int32Array,
  precision: AnglePrecision,
  memo: RerotationTableCache | undefined,
): { table: RotaryTables; rows: ArrayLike<number> } {
  let max = -1;
  for (let k = 0; k < positions.length; k++) if (positions[k]! > max) max = positions[k]!;
  if (memo && max < 2 * positions.length + 64) return { table: memo.tables(from, to, max + 1, precision), rows: positions };
  return { table: rerotationTables(from, to, positions, precision), rows: Int32Array.from({ length: positions.length }, (_, k) => k) };
}

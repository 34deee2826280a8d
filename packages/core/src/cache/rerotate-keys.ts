import type { RopePairing } from '../config/model-config.js';
import type { AnglePrecision, RopeRegime } from '../rope/regime.js';
import type { RerotationTableCache } from '../rope/rerotation-table-cache.js';
import { type HeadBlock, rotateBlocks } from '../rope/rotate-blocks.js';
import { type RotaryTables, rerotationTables } from '../rope/rotary-tables.js';
import { CacheError } from '../errors.js';
import type { Float16KvCache } from './float16-kv-cache.js';
import type { HostKvCache } from './host-kv-cache.js';
import { float16ToFloat32, float32ToFloat16 } from './float16-values.js';

/** (layer, kvHead) blocks of a float16 cache widened to float32 at a time: four, the rotation kernel's stride. */
const FLOAT16_GROUP = 4;

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
 *
 * A {@link Float16KvCache}'s keys are rotated by the same kernel in float32 (a few blocks widened
 * into scratch at a time) and stored back rounded to nearest, ties to even.
 */
export function rerotateCpuKeys(
  cache: HostKvCache,
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
    const count = span.end - span.start;
    // Each (layer, kvHead) holds the span as one contiguous [index][headDim] block.
    const offsets: { layer: number; offset: number }[] = [];
    for (let l = 0; l < numLayers; l++) {
      for (let h = 0; h < numKvHeads; h++) offsets.push({ layer: l, offset: cache.offset(h, span.start) });
    }
    if (cache.dtype === 'float32') {
      rotate(offsets.map(({ layer, offset }) => ({ data: cache.keys(layer), offset })), count, headDim, pairing, table, rows);
    } else {
      rotateFloat16(cache, offsets, count * headDim, (blocks) => rotate(blocks, count, headDim, pairing, table, rows));
    }
  }
  cache.markRotated(to);
}

/**
 * Runs `rotate` over `blocks` (each `n` binary16 values of `cache`'s keys) in float32: a group of
 * blocks widened into scratch, rotated, rounded back, then the next group.
 */
function rotateFloat16(cache: Float16KvCache, blocks: readonly { layer: number; offset: number }[], n: number, rotate: (blocks: HeadBlock[]) => void): void {
  const scratch = new Float32Array(FLOAT16_GROUP * n);
  for (let g = 0; g < blocks.length; g += FLOAT16_GROUP) {
    const group = blocks.slice(g, g + FLOAT16_GROUP);
    const wide = group.map(({ layer, offset }, i) => {
      float16ToFloat32(cache.keys(layer).subarray(offset, offset + n), scratch.subarray(i * n, (i + 1) * n));
      return { data: scratch, offset: i * n };
    });
    rotate(wide);
    group.forEach(({ layer, offset }, i) => float32ToFloat16(scratch.subarray(i * n, (i + 1) * n), cache.keys(layer).subarray(offset, offset + n)));
  }
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

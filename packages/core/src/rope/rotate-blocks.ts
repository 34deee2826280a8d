import type { RopePairing } from '../config/model-config.js';
import type { RotaryTables } from './rotary-tables.js';

/**
 * A run of head vectors in `data`: vector k starts at `offset + k·stride` (the stride is the
 * caller's: `headDim` for one (layer, kvHead) of a CPU cache, `[index][headDim]`; the width of a
 * token's row for one head of a forward's `[token][head][headDim]` activations).
 */
export interface HeadBlock {
  readonly data: Float32Array;
  readonly offset: number;
}

/**
 * Rotates `count` head vectors of every block in place, vector k of each block by row `rows[k]` of
 * `tables`. The one rotation kernel: the forward rotates its queries and new keys with it, and the
 * rerotation pass over a whole key cache runs through it (already optimised by the JIT from the
 * decode steps when the crossing comes). Same arithmetic as {@link applyRotary} (products and sum
 * in float64, one rounding to float32 per value), so the same bits. Dims `r … headDim−1` are left
 * alone.
 *
 * Blocks go four at a time: each cos/sin loaded serves four blocks, and four pairs per block are
 * in flight per table load (scalar JS is bound by loads and conversions here, not by memory).
 */
export function rotateBlocks(
  blocks: readonly HeadBlock[],
  count: number,
  stride: number,
  pairing: RopePairing,
  tables: RotaryTables,
  rows: ArrayLike<number>,
): void {
  // rotate-half pairs (d, d + half); interleaved pairs (2i, 2i + 1).
  const step = pairing === 'rotate-half' ? 1 : 2;
  const gap = pairing === 'rotate-half' ? tables.half : 1;
  let b = 0;
  for (; b + 4 <= blocks.length; b += 4) {
    const [x0, x1, x2, x3] = [blocks[b]!, blocks[b + 1]!, blocks[b + 2]!, blocks[b + 3]!];
    rotate4(x0.data, x1.data, x2.data, x3.data, x0.offset, x1.offset, x2.offset, x3.offset, count, stride, step, gap, tables, rows);
  }
  for (; b < blocks.length; b++) rotate1(blocks[b]!.data, blocks[b]!.offset, count, stride, step, gap, tables, rows);
}

function rotate4(
  x0: Float32Array, x1: Float32Array, x2: Float32Array, x3: Float32Array,
  o0: number, o1: number, o2: number, o3: number,
  count: number, stride: number, step: number, gap: number, tables: RotaryTables, rows: ArrayLike<number>,
): void {
  const { half, cos, sin } = tables;
  const quads = half - (half % 4);
  const d1 = step, d2 = 2 * step, d3 = 3 * step;
  for (let k = 0; k < count; k++, o0 += stride, o1 += stride, o2 += stride, o3 += stride) {
    const t = rows[k]! * half;
    let i = 0;
    for (; i < quads; i += 4) {
      const c0 = cos[t + i]!, s0 = sin[t + i]!, c1 = cos[t + i + 1]!, s1 = sin[t + i + 1]!;
      const c2 = cos[t + i + 2]!, s2 = sin[t + i + 2]!, c3 = cos[t + i + 3]!, s3 = sin[t + i + 3]!;
      const d = i * step;
      let p = o0 + d;
      turn(x0, p, p + gap, c0, s0); turn(x0, p + d1, p + d1 + gap, c1, s1); turn(x0, p + d2, p + d2 + gap, c2, s2); turn(x0, p + d3, p + d3 + gap, c3, s3);
      p = o1 + d;
      turn(x1, p, p + gap, c0, s0); turn(x1, p + d1, p + d1 + gap, c1, s1); turn(x1, p + d2, p + d2 + gap, c2, s2); turn(x1, p + d3, p + d3 + gap, c3, s3);
      p = o2 + d;
      turn(x2, p, p + gap, c0, s0); turn(x2, p + d1, p + d1 + gap, c1, s1); turn(x2, p + d2, p + d2 + gap, c2, s2); turn(x2, p + d3, p + d3 + gap, c3, s3);
      p = o3 + d;
      turn(x3, p, p + gap, c0, s0); turn(x3, p + d1, p + d1 + gap, c1, s1); turn(x3, p + d2, p + d2 + gap, c2, s2); turn(x3, p + d3, p + d3 + gap, c3, s3);
    }
    for (; i < half; i++) {
      const c = cos[t + i]!, s = sin[t + i]!, d = i * step;
      turn(x0, o0 + d, o0 + d + gap, c, s);
      turn(x1, o1 + d, o1 + d + gap, c, s);
      turn(x2, o2 + d, o2 + d + gap, c, s);
      turn(x3, o3 + d, o3 + d + gap, c, s);
    }
  }
}

function rotate1(x: Float32Array, o: number, count: number, stride: number, step: number, gap: number, tables: RotaryTables, rows: ArrayLike<number>): void {
  const { half, cos, sin } = tables;
  for (let k = 0; k < count; k++, o += stride) {
    const t = rows[k]! * half;
    for (let i = 0, p = o; i < half; i++, p += step) turn(x, p, p + gap, cos[t + i]!, sin[t + i]!);
  }
}

/** The pair (x[p], x[q]) turned by (c, s): `x_p·c − x_q·s`, `x_q·c + x_p·s` (small enough to be inlined). */
function turn(x: Float32Array, p: number, q: number, c: number, s: number): void {
  const a = x[p]!;
  const b = x[q]!;
  x[p] = a * c - b * s;
  x[q] = b * c + a * s;
}

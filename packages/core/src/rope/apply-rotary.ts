import type { RopePairing } from '../config/model-config.js';
import type { RotaryTables } from './rotary-tables.js';

/**
 * Rotates `heads` consecutive head vectors of `headDim` floats, starting at `offset` in `x`,
 * in place by row `row` of `tables`. Dims `r … headDim−1` (partial rotary) are left alone.
 *
 * rotate-half: `out_i = x_i·cos − x_{i+h}·sin`, `out_{i+h} = x_{i+h}·cos + x_i·sin` (h = r/2);
 * interleaved: the same on pairs `(x_{2i}, x_{2i+1})`.
 */
export function applyRotary(
  x: Float32Array,
  offset: number,
  heads: number,
  headDim: number,
  pairing: RopePairing,
  tables: RotaryTables,
  row: number,
): void {
  const { half, cos, sin } = tables;
  const t = row * half;
  for (let h = 0; h < heads; h++) {
    const base = offset + h * headDim;
    if (pairing === 'rotate-half') {
      for (let i = 0; i < half; i++) {
        const c = cos[t + i]!;
        const s = sin[t + i]!;
        const a = x[base + i]!;
        const b = x[base + i + half]!;
        x[base + i] = a * c - b * s;
        x[base + i + half] = b * c + a * s;
      }
    } else {
      for (let i = 0; i < half; i++) {
        const c = cos[t + i]!;
        const s = sin[t + i]!;
        const a = x[base + 2 * i]!;
        const b = x[base + 2 * i + 1]!;
        x[base + 2 * i] = a * c - b * s;
        x[base + 2 * i + 1] = b * c + a * s;
      }
    }
  }
}

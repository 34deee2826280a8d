import { type TensorDtype, f32ToBf16Bits, f32ToF16Bits } from '@ropeswitch/core';

/**
 * Fast seeded draws for multi-gigabyte random checkpoints. A distribution is tabulated once at the
 * midpoints of 65536 equal-probability bins, already encoded in the tensor's dtype; each 32-bit
 * word of a mulberry32 stream then yields two draws by indexing the table with its halves. That
 * is a quantised draw (65536 levels, tails cut at ±4.3σ), which random weights do not mind, and it
 * runs at memory speed: no `Math.log`, no float encoding per value.
 */

/** Encoded values, indexed by a 16-bit uniform draw: u16 bit patterns for F16/BF16, u32 for F32. */
export type QuantileTable = Uint16Array | Uint32Array;

const LEVELS = 65536;

/** A table of `quantile((i + 0.5) / 65536)` encoded as `dtype`. */
export function quantileTable(quantile: (p: number) => number, dtype: TensorDtype): QuantileTable {
  if (dtype === 'F32') {
    const values = new Float32Array(LEVELS);
    for (let i = 0; i < LEVELS; i++) values[i] = quantile((i + 0.5) / LEVELS);
    return new Uint32Array(values.buffer);
  }
  const encode = dtype === 'BF16' ? f32ToBf16Bits : f32ToF16Bits;
  const table = new Uint16Array(LEVELS);
  for (let i = 0; i < LEVELS; i++) table[i] = encode(quantile((i + 0.5) / LEVELS));
  return table;
}

/** N(0, std²)'s quantile function. */
export function normalQuantile(std: number): (p: number) => number {
  return (p) => std * standardNormalQuantile(p);
}

/** U(lo, hi)'s quantile function. */
export function uniformQuantile(lo: number, hi: number): (p: number) => number {
  return (p) => lo + (hi - lo) * p;
}

/**
 * Φ⁻¹(p) for 0 < p < 1 by Acklam's rational approximation (relative error below 1.2e-9), far
 * finer than the table's bins.
 */
export function standardNormalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  const tail = (q: number) => (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  if (p < low) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - low) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

/**
 * Fills `out[0 … count)` with draws from `table`, continuing the mulberry32 stream at `state`;
 * returns the state to continue from. The same seed gives the same values however the tensor is
 * cut into pieces, as long as the pieces hold an even number of values.
 */
export function fillFromTable(out: QuantileTable, count: number, table: QuantileTable, state: number): number {
  let s = state >>> 0;
  let i = 0;
  while (i < count) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    t = (t ^ (t >>> 14)) >>> 0;
    out[i++] = table[t & 0xffff]!;
    if (i < count) out[i++] = table[t >>> 16]!;
  }
  return s;
}

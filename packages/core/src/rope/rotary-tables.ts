import type { AnglePrecision, RopeRegime } from './regime.js';

/**
 * cos/sin of the angles `p·ω_i` for a list of positions, multiplied by the attention factor.
 * Layout: `[position][i]`, i < r/2 (rotate-half uses entry i for dims i and i + r/2).
 */
export interface RotaryTables {
  readonly count: number;
  /** r/2 */
  readonly half: number;
  readonly cos: Float32Array;
  readonly sin: Float32Array;
}

/** One rotary angle exactly as the forward computes it: a float32 product by default (HF), else float64. */
export function rotaryAngle(regime: RopeRegime, position: number, i: number, precision: AnglePrecision): number {
  return precision === 'float32'
    ? Math.fround(position * regime.invFreq[i]!)
    : position * regime.invFreq64[i]!;
}

/**
 * Tables for `positions` under `regime`. In float32 mode each value is rounded as torch rounds
 * `cos(θ)·m` (cos in float32, then a float32 product), so rotated keys match HF's.
 */
export function rotaryTables(
  regime: RopeRegime,
  positions: ArrayLike<number>,
  precision: AnglePrecision = 'float32',
): RotaryTables {
  const half = regime.invFreq.length;
  const count = positions.length;
  const cos = new Float32Array(count * half);
  const sin = new Float32Array(count * half);
  const f32 = precision === 'float32';
  const m = f32 ? regime.attentionFactor : regime.attentionFactor64;
  for (let t = 0; t < count; t++) {
    const p = positions[t]!;
    const row = t * half;
    for (let i = 0; i < half; i++) {
      const angle = rotaryAngle(regime, p, i, precision);
      cos[row + i] = f32 ? Math.fround(Math.fround(Math.cos(angle)) * m) : Math.cos(angle) * m;
      sin[row + i] = f32 ? Math.fround(Math.fround(Math.sin(angle)) * m) : Math.sin(angle) * m;
    }
  }
  return { count, half, cos, sin };
}

/**
 * Tables that move a post-RoPE key at each position from regime `from` to regime `to`:
 * pair i turns by `angle_to − angle_from` (each angle as the forward computes it, so the result
 * lands where a fresh forward would) and scales by `m_to / m_from`. Rotations in one plane
 * commute, so this is exact for the key vectors themselves.
 */
export function rerotationTables(
  from: RopeRegime,
  to: RopeRegime,
  positions: ArrayLike<number>,
  precision: AnglePrecision = 'float32',
): RotaryTables {
  const half = to.invFreq.length;
  const count = positions.length;
  const cos = new Float32Array(count * half);
  const sin = new Float32Array(count * half);
  for (let t = 0; t < count; t++) writeRerotationRow(from, to, positions[t]!, precision, cos, sin, t * half);
  return { count, half, cos, sin };
}

/**
 * Writes the rerotation row of `position` (see {@link rerotationTables}) at `at` in `cos`/`sin`.
 * The one place these values are computed, so memoised tables equal fresh ones bit for bit.
 */
export function writeRerotationRow(
  from: RopeRegime,
  to: RopeRegime,
  position: number,
  precision: AnglePrecision,
  cos: Float32Array,
  sin: Float32Array,
  at: number,
): void {
  const half = to.invFreq.length;
  const f32 = precision === 'float32';
  const scale = f32 ? to.attentionFactor / from.attentionFactor : to.attentionFactor64 / from.attentionFactor64;
  for (let i = 0; i < half; i++) {
    const delta = rotaryAngle(to, position, i, precision) - rotaryAngle(from, position, i, precision);
    cos[at + i] = Math.cos(delta) * scale;
    sin[at + i] = Math.sin(delta) * scale;
  }
}

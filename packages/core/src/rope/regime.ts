/**
 * A regime is one set of rotary frequencies and one attention factor. A schedule maps the total
 * sequence length of a forward to a regime; a cached key is stale when the regime that rotated it
 * differs from the regime of the current length.
 */
export interface RopeRegime {
  /** Stable identity: two regimes with the same id rotate identically (e.g. `longrope:short`, `dynamic:S=40`). */
  readonly id: string;
  /** What the regime is within its schedule. */
  readonly kind: 'static' | 'short' | 'long' | 'dynamic-base' | 'dynamic';
  /** ω_i for i < r/2, computed in float32 exactly as HF transformers does (the default angle precision). */
  readonly invFreq: Float32Array;
  /** The same ω_i computed in float64 (used with the `float64` angle precision). */
  readonly invFreq64: Float64Array;
  /** m, the multiplier of both cos and sin, rounded to float32 as HF applies it. */
  readonly attentionFactor: number;
  /** m in float64. */
  readonly attentionFactor64: number;
}

/**
 * How angles `p·ω` are computed. `float32` (default) reproduces HF transformers bit for bit
 * (a float32 product); `float64` is more accurate but moves logits by ~6e-4 near p = 4100.
 */
export type AnglePrecision = 'float32' | 'float64';

/** Builds a regime, rounding the float32 view once so every consumer sees the same numbers. */
export function makeRegime(
  id: string,
  kind: RopeRegime['kind'],
  invFreq: Float32Array,
  invFreq64: Float64Array,
  attentionFactor64: number,
): RopeRegime {
  return Object.freeze({
    id,
    kind,
    invFreq,
    invFreq64,
    attentionFactor: Math.fround(attentionFactor64),
    attentionFactor64,
  });
}

import type { RopePairing, RopeScaling } from '../config/model-config.js';
import { type RopeRegime, makeRegime } from './regime.js';
import type { RopeSchedule } from './schedule.js';

type LongRopeScaling = Extract<RopeScaling, { type: 'longrope' }>;

/**
 * LongRoPE (Phi-3/3.5/4-mini "128k"): short factors while S ≤ L, long factors once S > L.
 * ω_i = 1 / (λ_i · b^(2i/r)), computed in float32 exactly as HF's
 * `Phi3LongRoPEScaledRotaryEmbedding` does.
 */
export class LongRopeSchedule implements RopeSchedule {
  readonly type = 'longrope' as const;
  readonly changesEveryStep = false;
  readonly threshold: number;
  readonly short: RopeRegime;
  readonly long: RopeRegime;

  constructor(
    theta: number,
    readonly rotaryDim: number,
    readonly pairing: RopePairing,
    scaling: LongRopeScaling,
  ) {
    this.threshold = scaling.originalMaxPositionEmbeddings;
    const m = longRopeAttentionFactor(scaling);
    this.short = longRopeRegime('longrope:short', 'short', theta, rotaryDim, scaling.shortFactor, scaling.shortMscale ?? m);
    this.long = longRopeRegime('longrope:long', 'long', theta, rotaryDim, scaling.longFactor, scaling.longMscale ?? m);
  }

  regimeFor(totalLength: number): RopeRegime {
    return totalLength > this.threshold ? this.long : this.short; // strict: S = L is short
  }
}

/** `attention_factor`, else `sqrt(1 + ln s / ln L)` with s = `factor` or M / L (1 when s ≤ 1). */
export function longRopeAttentionFactor(scaling: LongRopeScaling): number {
  if (scaling.attentionFactor !== undefined) return scaling.attentionFactor;
  const L = scaling.originalMaxPositionEmbeddings;
  const s = scaling.factor ?? scaling.maxPositionEmbeddings / L;
  return s <= 1 ? 1 : Math.sqrt(1 + Math.log(s) / Math.log(L));
}

function longRopeRegime(
  id: string,
  kind: 'short' | 'long',
  theta: number,
  rotaryDim: number,
  factors: readonly number[],
  attentionFactor: number,
): RopeRegime {
  const half = rotaryDim / 2;
  const f32 = new Float32Array(half);
  const f64 = new Float64Array(half);
  const base32 = Math.fround(theta);
  for (let i = 0; i < half; i++) {
    const pow32 = Math.fround(Math.pow(base32, Math.fround((2 * i) / rotaryDim)));
    f32[i] = Math.fround(1 / Math.fround(Math.fround(factors[i]!) * pow32));
    f64[i] = 1 / (factors[i]! * Math.pow(theta, (2 * i) / rotaryDim));
  }
  return makeRegime(id, kind, f32, f64, attentionFactor);
}

import type { RopePairing, RopeScaling } from '../config/model-config.js';
import { baseFrequencies } from './base-frequencies.js';
import { type RopeRegime, makeRegime } from './regime.js';
import type { RopeSchedule } from './schedule.js';

type DynamicScaling = Extract<RopeScaling, { type: 'dynamic' }>;

/**
 * Dynamic NTK: the base is stretched for every S > M_orig,
 * b' = b·(s·S/M_orig − (s−1))^(r/(r−2)), so each step past the threshold has its own regime.
 *
 * HF 4.45 keeps the largest length seen in module state; this schedule is a pure function of S,
 * which equals HF for any run whose length only grows (every generation) and for a fresh model.
 */
export class DynamicNtkSchedule implements RopeSchedule {
  readonly type = 'dynamic' as const;
  readonly changesEveryStep = true;
  readonly threshold: number;
  readonly base: RopeRegime;
  // The last few regimes: decoding asks for the same S several times (policies, oracle).
  private readonly recent = new Map<number, RopeRegime>();

  constructor(
    private readonly theta: number,
    readonly rotaryDim: number,
    readonly pairing: RopePairing,
    private readonly scaling: DynamicScaling,
  ) {
    this.threshold = scaling.originalMaxPositionEmbeddings;
    const f = baseFrequencies(theta, rotaryDim);
    this.base = makeRegime('dynamic:base', 'dynamic-base', f.f32, f.f64, 1);
  }

  regimeFor(totalLength: number): RopeRegime {
    if (totalLength <= this.threshold) return this.base;
    const hit = this.recent.get(totalLength);
    if (hit) return hit;
    const { factor } = this.scaling;
    const r = this.rotaryDim;
    // Computed in float64 like HF's Python scalar; the frequencies from it in float32.
    const stretched = this.theta * Math.pow((factor * totalLength) / this.threshold - (factor - 1), r / (r - 2));
    const f = baseFrequencies(stretched, r);
    const regime = makeRegime(`dynamic:S=${totalLength}`, 'dynamic', f.f32, f.f64, 1);
    if (this.recent.size >= 8) this.recent.delete(this.recent.keys().next().value as number);
    this.recent.set(totalLength, regime);
    return regime;
  }
}

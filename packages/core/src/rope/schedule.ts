import type { RopePairing, RopeType } from '../config/model-config.js';
import type { RopeRegime } from './regime.js';

/**
 * Maps the total sequence length S of a forward (max position id + 1) to the regime HF
 * transformers would use for it. Static schedules return one regime for every S.
 */
export interface RopeSchedule {
  readonly type: RopeType;
  /** r: rotated dims per head. */
  readonly rotaryDim: number;
  readonly pairing: RopePairing;
  /**
   * The largest S that keeps the first regime, or `undefined` for static schedules.
   * LongRoPE: L (S = L is short, S = L + 1 long). Dynamic NTK: M_orig (new frequencies from M_orig + 1).
   */
  readonly threshold: number | undefined;
  /** True when every length past the threshold has its own regime (dynamic NTK). */
  readonly changesEveryStep: boolean;
  /** The regime for total length S (S ≥ 1). */
  regimeFor(totalLength: number): RopeRegime;
}

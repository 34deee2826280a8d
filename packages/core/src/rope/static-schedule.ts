import type { RopePairing, RopeType } from '../config/model-config.js';
import type { RopeRegime } from './regime.js';
import type { RopeSchedule } from './schedule.js';

/** A schedule whose frequencies never depend on the length (default, linear, yarn, llama3): never stale. */
export class StaticRopeSchedule implements RopeSchedule {
  readonly threshold = undefined;
  readonly changesEveryStep = false;

  constructor(
    readonly type: RopeType,
    readonly rotaryDim: number,
    readonly pairing: RopePairing,
    private readonly regime: RopeRegime,
  ) {}

  regimeFor(): RopeRegime {
    return this.regime;
  }
}

import type { RopeRegime, RopeSchedule } from '@ropeswitch/core';

/**
 * A schedule that rotates every length under `regime` (for oracles of a pinned regime). It never
 * changes regime, so `changesEveryStep` is false whatever `schedule` says.
 */
export function pinnedSchedule(schedule: RopeSchedule, regime: RopeRegime): RopeSchedule {
  return {
    type: schedule.type,
    rotaryDim: schedule.rotaryDim,
    pairing: schedule.pairing,
    threshold: schedule.threshold,
    changesEveryStep: false,
    regimeFor: () => regime,
  };
}

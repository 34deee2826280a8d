import type { RopeConfig } from '../config/model-config.js';
import { DynamicNtkSchedule } from './dynamic-ntk-schedule.js';
import { LongRopeSchedule } from './long-rope-schedule.js';
import { makeRegime } from './regime.js';
import type { RopeSchedule } from './schedule.js';
import { StaticRopeSchedule } from './static-schedule.js';
import { staticFrequencies } from './static-frequencies.js';

/** The schedule a model's `rope` config describes. */
export function createRopeSchedule(rope: RopeConfig): RopeSchedule {
  const { theta, rotaryDim, pairing, scaling } = rope;
  switch (scaling.type) {
    case 'longrope':
      return new LongRopeSchedule(theta, rotaryDim, pairing, scaling);
    case 'dynamic':
      return new DynamicNtkSchedule(theta, rotaryDim, pairing, scaling);
    default: {
      const f = staticFrequencies(theta, rotaryDim, scaling);
      const regime = makeRegime(scaling.type, 'static', f.f32, f.f64, f.attentionFactor);
      return new StaticRopeSchedule(scaling.type, rotaryDim, pairing, regime);
    }
  }
}

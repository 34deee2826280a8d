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

const schedules = new WeakMap<RopeConfig, RopeSchedule>();

/**
 * The one schedule of a model's `rope` config: built on first use, then the same object for every
 * caller (the wrapped backend, sessions, oracles, backends that ask whether it changes every step),
 * so nothing holds a second schedule that could disagree with the policies'.
 */
export function modelSchedule(rope: RopeConfig): RopeSchedule {
  let schedule = schedules.get(rope);
  if (!schedule) {
    schedule = createRopeSchedule(rope);
    schedules.set(rope, schedule);
  }
  return schedule;
}

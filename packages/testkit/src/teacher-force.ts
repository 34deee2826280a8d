/** Teacher-forced runs through a session, and their distance from the no-cache oracle. */
import { type Session, noCacheForward } from '@ropeswitch/core';
import { maxAbsDiff } from './max-abs-diff.js';
import type { TinyModel } from './tiny-models.js';

/** One decoding step: the total length after it and the logits of its last position. */
export interface Step {
  readonly length: number;
  readonly logits: Float32Array;
}

/**
 * Teacher-forced run of `ids` through `session`: a prefill of the first `prompt` ids, then one
 * forward per remaining id. Returns the logits after the prompt and after each step.
 */
export async function teacherForce(session: Session, ids: readonly number[], prompt: number, plannedLength?: number): Promise<Step[]> {
  const steps: Step[] = [];
  const opts = plannedLength === undefined ? {} : { plannedLength };
  steps.push({ length: prompt, logits: await session.prefill(ids.slice(0, prompt), opts) });
  for (let i = prompt; i < ids.length; i++) steps.push({ length: i + 1, logits: await session.forward([ids[i]!]) });
  return steps;
}

/** For each step, max |Δlogit| against the oracle (`noCacheForward` over the first `length` ids). */
export async function oracleDiffs(model: TinyModel, ids: readonly number[], steps: readonly Step[]): Promise<number[]> {
  const out: number[] = [];
  for (const s of steps) out.push(maxAbsDiff(s.logits, await noCacheForward(model.backend, ids.slice(0, s.length))));
  return out;
}

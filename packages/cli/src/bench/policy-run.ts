import { Session, argmax, wrapBackend } from '@ropeswitch/core';
import { policyByName } from '@ropeswitch/policies';
import type { CountingBackend } from './counting-backend.js';
import { klDivergence } from './logit-metrics.js';
import type { ScenarioPlan } from './scenario-plan.js';

/** How one policy's logits compare with the oracle's at one step. */
export interface StepQuality {
  readonly kl: number;
  readonly maxAbsDiff: number;
  readonly top1: boolean;
}

/** One timed, teacher-forced run of a policy through a scenario. */
export interface PolicyRunRecord {
  /** Per step, index 0 the prompt's forward (ms). */
  readonly stepMs: number[];
  /** Per oracle step (when an oracle was given). */
  readonly quality: Map<number, StepQuality>;
  /** Tokens the backend processed (all rows, all forwards). */
  readonly forwardTokens: number;
  readonly peakCacheBytes: number;
  /** `type@length` of each event the policy reported. */
  readonly events: string[];
}

/**
 * Runs `policy` over `counting` through the scenario: the prompt with the planned length of the
 * whole run, then one `session.forward([t])` per stream token, each timed on its own. Logits are
 * compared with the oracle's (when given) outside the timed part.
 */
export async function runPolicy(
  counting: CountingBackend,
  policy: string,
  plan: ScenarioPlan,
  stream: readonly number[],
  oracle: ReadonlyMap<number, Float32Array> | undefined,
): Promise<PolicyRunRecord> {
  const session = new Session(wrapBackend(counting, policyByName(policy)));
  counting.reset();
  const stepMs: number[] = [];
  const quality = new Map<number, StepQuality>();
  const compare = (step: number, logits: Float32Array): void => {
    const reference = oracle?.get(step);
    if (reference) quality.set(step, compareLogits(reference, logits));
  };
  try {
    let t0 = performance.now();
    let logits = await session.prefill(plan.prompt, { plannedLength: plan.promptTokens + plan.steps });
    stepMs.push(performance.now() - t0);
    compare(0, logits);
    for (let step = 1; step <= plan.steps; step++) {
      const token = stream[step - 1]!;
      t0 = performance.now();
      logits = await session.forward([token]);
      stepMs.push(performance.now() - t0);
      compare(step, logits);
    }
    return {
      stepMs,
      quality,
      forwardTokens: counting.tokens,
      peakCacheBytes: counting.peakCacheBytes,
      events: session.events.map((e) => `${e.type}@${e.atLength}`),
    };
  } finally {
    session.dispose();
  }
}

export function compareLogits(reference: Float32Array, logits: Float32Array): StepQuality {
  let maxAbsDiff = 0;
  for (let i = 0; i < reference.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(reference[i]! - logits[i]!));
  return { kl: Math.max(0, klDivergence(reference, logits)), maxAbsDiff, top1: argmax(reference) === argmax(logits) };
}

import { type CachePolicy, Session, argmax, wrapBackend } from '@ropeswitch/core';
import { policyByName, shadowPrefill } from '@ropeswitch/policies';
import type { CountingBackend } from './counting-backend.js';
import { klDivergence } from './logit-metrics.js';
import { PeakRss } from './peak-rss.js';
import type { ScenarioPlan } from './scenario-plan.js';

/** How one policy's logits compare with the oracle's at one step. */
export interface StepQuality {
  readonly kl: number;
  readonly maxAbsDiff: number;
  readonly top1: boolean;
}

/** One timed run of a policy through a scenario. */
export interface PolicyRunRecord {
  /** Per step, index 0 the prompt's forward (ms). */
  readonly stepMs: number[];
  /** The tokens fed after the prompt, one per step: the stream, or the greedy choices. */
  readonly tokens: number[];
  /** Copies of the logits at the steps asked for, to be scored once the oracle is known. */
  readonly logits: Map<number, Float32Array>;
  /** Tokens the backend processed (all rows, all forwards). */
  readonly forwardTokens: number;
  readonly peakCacheBytes: number;
  /** The process's peak resident set during the run. */
  readonly peakRssBytes: number;
  /** `type@length` of each event the policy reported. */
  readonly events: string[];
}

/** The policy a plan runs under a name: the defaults, but for a shadow window set by a shortened plan. */
export function planPolicy(policy: string, plan: ScenarioPlan): CachePolicy {
  return policy === 'shadow-prefill' && plan.shadowWindow !== undefined ? shadowPrefill({ window: plan.shadowWindow }) : policyByName(policy);
}

/**
 * Runs `policy` over `counting` through the scenario: the prompt with the planned length of the
 * whole run, then one `session.forward([t])` per step, each timed on its own, `t` the stream's
 * token (teacher forcing) or, with `'greedy'`, the argmax of the step before (the exact stream,
 * when the policy is exact). The logits of the steps in `keep` are copied outside the timed part.
 */
export async function runPolicy(
  counting: CountingBackend,
  policy: string,
  plan: ScenarioPlan,
  feed: readonly number[] | 'greedy',
  keep: ReadonlySet<number> = new Set(),
): Promise<PolicyRunRecord> {
  const session = new Session(wrapBackend(counting, planPolicy(policy, plan)));
  counting.reset();
  const rss = new PeakRss();
  rss.start();
  const stepMs: number[] = [];
  const tokens: number[] = [];
  const logitsAt = new Map<number, Float32Array>();
  try {
    let t0 = performance.now();
    let logits = await session.prefill(plan.prompt, { plannedLength: plan.promptTokens + plan.steps });
    stepMs.push(performance.now() - t0);
    if (keep.has(0)) logitsAt.set(0, logits.slice());
    rss.sample();
    for (let step = 1; step <= plan.steps; step++) {
      const token = feed === 'greedy' ? argmax(logits) : feed[step - 1]!;
      tokens.push(token);
      t0 = performance.now();
      logits = await session.forward([token]);
      stepMs.push(performance.now() - t0);
      if (keep.has(step)) logitsAt.set(step, logits.slice());
      rss.sample();
    }
    return {
      stepMs,
      tokens,
      logits: logitsAt,
      forwardTokens: counting.tokens,
      peakCacheBytes: counting.peakCacheBytes,
      peakRssBytes: rss.stop(),
      events: session.events.map((e) => `${e.type}@${e.atLength}`),
    };
  } finally {
    rss.stop();
    session.dispose();
  }
}

/** The kept logits of a run against the oracle's, step by step. */
export function scoreRun(record: PolicyRunRecord, oracle: ReadonlyMap<number, Float32Array>): Map<number, StepQuality> {
  const out = new Map<number, StepQuality>();
  for (const [step, logits] of record.logits) {
    const reference = oracle.get(step);
    if (reference) out.set(step, compareLogits(reference, logits));
  }
  return out;
}

export function compareLogits(reference: Float32Array, logits: Float32Array): StepQuality {
  let maxAbsDiff = 0;
  for (let i = 0; i < reference.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(reference[i]! - logits[i]!));
  return { kl: Math.max(0, klDivergence(reference, logits)), maxAbsDiff, top1: argmax(reference) === argmax(logits) };
}

import { type Backend, SeededRandom, Session, positionLimit } from '@ropeswitch/core';
import type { ScenarioName } from './bench-report.js';
import { type ScenarioSizing, NEAR_MARGIN, scenarioPromptTokens } from './scenario-plan.js';
import { median } from './statistics.js';
import { REFERENCE_POLICY } from './targets.js';

/**
 * What a scenario costs on a backend, estimated before it runs, so a backend too slow for the full
 * plan (the reference backend at the Phi-3 shape: minutes a prefill, a third of a second a step)
 * runs a cheaper one that still finishes, and the report says what changed.
 */

/** A backend's speed on the model, measured on a short prompt and a few decode steps. */
export interface BackendSpeed {
  readonly prefillMsPerToken: number;
  readonly decodeMs: number;
}

const PROBE_PROMPT = 64;
const PROBE_STEPS = 4;

/** Times a prompt of 64 tokens (after one untimed forward, so compilation is not counted) and 4 decode steps (fewer on models with few positions). */
export async function measureSpeed(backend: Backend, seed: number): Promise<BackendSpeed> {
  const random = new SeededRandom(seed ^ 0x73706564);
  // Tiny test models have few positions: stay within half of them.
  const room = Math.max(2, Math.floor(positionLimit(backend.config) / 2));
  const promptTokens = Math.min(PROBE_PROMPT, room - 1);
  const ids = Array.from({ length: Math.min(promptTokens + PROBE_STEPS, room) }, () => random.int(backend.config.vocabSize));
  const warm = new Session(backend);
  try {
    await warm.prefill(ids.slice(0, 8));
  } finally {
    warm.dispose();
  }
  const session = new Session(backend);
  try {
    const t0 = performance.now();
    await session.prefill(ids.slice(0, promptTokens), { plannedLength: ids.length });
    const prefillMs = performance.now() - t0;
    const steps: number[] = [];
    for (const id of ids.slice(promptTokens)) {
      const t1 = performance.now();
      await session.forward([id]);
      steps.push(performance.now() - t1);
    }
    return { prefillMsPerToken: prefillMs / promptTokens, decodeMs: median(steps) };
  } finally {
    session.dispose();
  }
}

/** A prompt's forward, growing faster than its length as attention over it does (a rough model, fitted to nothing finer). */
export function prefillMs(speed: BackendSpeed, tokens: number): number {
  return speed.prefillMsPerToken * tokens * (1 + tokens / 8192);
}

/** The shape of a plan, as far as its cost goes. */
export interface PlanShape {
  readonly promptTokens: number;
  readonly steps: number;
  /** Full forwards of the oracle (one per regime its steps span). */
  readonly oracleForwards: number;
  /** shadowPrefill's window in this plan. */
  readonly shadowWindow: number;
}

/** One policy's run through a plan. */
export function estimateRunMs(policy: string, plan: PlanShape, threshold: number, speed: BackendSpeed): number {
  const prompt = prefillMs(speed, plan.promptTokens);
  const decode = plan.steps * speed.decodeMs;
  if (policy === 're-prefill') return prompt + decode + prefillMs(speed, threshold + 1);
  if (policy === 'shadow-prefill') {
    // In the window already: the copy is built with the prompt; else in chunks beside the decode rows.
    return plan.promptTokens > threshold - plan.shadowWindow ? 2 * prompt + decode : prompt + decode + prefillMs(speed, threshold);
  }
  return prompt + decode;
}

/** Every run of a scenario: the exact stream (re-prefill's first repeat), the oracle, the warm-ups, then the repeats of each policy. */
export function estimateScenarioMs(policies: readonly string[], repeats: number, plan: PlanShape, threshold: number, speed: BackendSpeed): number {
  const run = (p: string) => estimateRunMs(p, plan, threshold, speed);
  const stream = run('re-prefill');
  const oracle = plan.oracleForwards * prefillMs(speed, plan.promptTokens + plan.steps);
  const warmUp = Math.min(run('stale'), WARM_UP_FULL_MS) + policies.reduce((ms, p) => ms + run(p) * policyWarmUpRuns(p, plan, threshold, speed), 0);
  const timed = policies.reduce((ms, p) => ms + run(p) * (p === 're-prefill' ? repeats - 1 : repeats), 0);
  return stream + oracle + warmUp + timed;
}

/** Most untimed runs of a policy before its timed ones (see {@link policyWarmUpRuns}). */
export const POLICY_WARM_UP_RUNS = 8;
/** What a policy's untimed runs may take together, by estimate. */
export const POLICY_WARM_UP_MS = 5_000;

/**
 * Untimed runs of `policy` through the plan before its timed ones: as many as fit in
 * {@link POLICY_WARM_UP_MS} by estimate, at most {@link POLICY_WARM_UP_RUNS}; none for `stale`,
 * whose code runs at every step (the backend's warm-up runs it). What a policy does once per
 * sequence (a copy's start and swap-in, a re-prefill) gets V8's inline-cache feedback only after
 * about eight runs of it (its bytecode's size, eight times over), so in a fresh process the timed
 * repeats would run that code cold, as a server's first few sequences do and later ones do not: on
 * `builtin` that cost 0.05 ms at the near crossing, against a 0.22 ms step. At the real shape a run
 * costs seconds and the same 0.05 ms is lost in a 25 ms step: such a plan gets none.
 */
export function policyWarmUpRuns(policy: string, plan: PlanShape, threshold: number, speed: BackendSpeed): number {
  if (policy === REFERENCE_POLICY) return 0;
  const ms = estimateRunMs(policy, plan, threshold, speed);
  return Math.max(0, Math.min(POLICY_WARM_UP_RUNS, Math.floor(POLICY_WARM_UP_MS / Math.max(ms, 1e-3))));
}

/** A stale run cheaper than this is the warm-up as it is; a dearer one is replaced by a short one. */
export const WARM_UP_FULL_MS = 30_000;

/** Decode steps before the crossing a shortened far scenario keeps at least. */
export const MIN_FAR_STEPS = 128;

/**
 * The plan of `scenario` on a backend of `speed` within `budgetMs` by estimate: the scenario's own
 * when it fits; else the oracle only from the crossing on (one full forward less); else, for far,
 * the prompt brought nearer L (fewer decode steps to the crossing, at least 128, the shadow copy
 * spread over all of them). Near cannot be shortened: its prompt must reach L.
 */
export function sizeScenario(
  scenario: ScenarioName,
  threshold: number,
  newTokens: number,
  policies: readonly string[],
  repeats: number,
  speed: BackendSpeed,
  budgetMs: number | null,
  backend: string,
): ScenarioSizing {
  const own = scenarioPromptTokens(scenario, threshold);
  const shape = (promptTokens: number, oracleBefore: boolean, shadowWindow: number): PlanShape => ({
    promptTokens,
    steps: threshold + newTokens - promptTokens,
    oracleForwards: oracleBefore ? 2 : 1,
    shadowWindow,
  });
  const window = Math.ceil(threshold / 2);
  const cost = (plan: PlanShape) => estimateScenarioMs(policies, repeats, plan, threshold, speed);
  const full = cost(shape(own, true, window));
  if (budgetMs === null || full <= budgetMs) return {};
  const minutes = (ms: number) => `${(ms / 60_000).toFixed(0)} min`;
  const why = `the full plan was estimated at ${minutes(full)} on ${backend}, over the ${minutes(budgetMs)} budget (--budget-minutes)`;
  const oracleOnly = 'the oracle only from the crossing on (quality is measured there anyway; one full forward less)';
  if (cost(shape(own, false, window)) <= budgetMs || scenario === 'near' || threshold - own <= MIN_FAR_STEPS) {
    const adjustments = [`${oracleOnly}: ${why}`];
    if (scenario === 'near' && cost(shape(own, false, window)) > budgetMs) adjustments.push(`still over the budget: near cannot be shortened (its prompt is L − ${NEAR_MARGIN})`);
    return { oracleBefore: false, adjustments };
  }
  // The most decode steps to the crossing that fit, from L/2 down to the minimum.
  let before = threshold - own;
  while (before > MIN_FAR_STEPS && cost(shape(threshold - before, false, before)) > budgetMs) before = Math.max(MIN_FAR_STEPS, Math.floor(before * 0.8));
  const promptTokens = threshold - before;
  return {
    promptTokens,
    oracleBefore: false,
    adjustments: [
      `${oracleOnly}: ${why}`,
      `shortened: a prompt of ${promptTokens} tokens (L − ${before}) in place of L/2, so ${before} decode steps to the crossing in place of ${threshold - own}; shadow-prefill's window set to those ${before} steps so its copy is still spread over every one of them`,
    ],
  };
}

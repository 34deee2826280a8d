import { createRopeSchedule, parseModelConfig } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { tinyModelConfig } from '../random-models/make-tiny-model.js';
import { type BackendSpeed, MIN_FAR_STEPS, POLICY_WARM_UP_MS, POLICY_WARM_UP_RUNS, estimateRunMs, estimateScenarioMs, policyWarmUpRuns, prefillMs, sizeScenario } from './scenario-budget.js';
import { ORACLE_STEPS_BEFORE, planScenario } from './scenario-plan.js';

const L = 4096;
const POLICIES = ['stale', 're-prefill', 'rerotate', 'shadow-prefill'];
/** onnxruntime at the Phi-3 shape (2 layers, 2 threads), and the reference backend there today. */
const FAST: BackendSpeed = { prefillMsPerToken: 3.6, decodeMs: 75 };
const SLOW: BackendSpeed = { prefillMsPerToken: 80, decodeMs: 360 };
const MINUTE = 60_000;

describe('the scenario cost estimate', () => {
  it('charges re-prefill a second prefill, and shadow-prefill one when its copy comes with the prompt', () => {
    const near = { promptTokens: L - 6, steps: 22, oracleForwards: 2, shadowWindow: L / 2 };
    const stale = estimateRunMs('stale', near, L, FAST);
    expect(estimateRunMs('re-prefill', near, L, FAST)).toBeGreaterThan(1.9 * stale);
    expect(estimateRunMs('shadow-prefill', near, L, FAST)).toBeGreaterThan(1.9 * stale);
    const far = { promptTokens: L / 2, steps: L / 2 + 16, oracleForwards: 2, shadowWindow: L / 2 };
    expect(estimateRunMs('shadow-prefill', far, L, FAST)).toBeLessThan(2 * estimateRunMs('stale', far, L, FAST));
    expect(estimateScenarioMs(POLICIES, 1, far, L, SLOW)).toBeGreaterThan(estimateScenarioMs(POLICIES, 1, far, L, FAST));
  });
});

describe('the warm-up runs of each policy', () => {
  const near = { promptTokens: L - 6, steps: 22, oracleForwards: 1, shadowWindow: L / 2 };
  /** The reference backend on builtin: a near run of about 0.2 s. */
  const BUILTIN: BackendSpeed = { prefillMsPerToken: 0.02, decodeMs: 0.2 };

  it('as many as fit the budget, at most eight; none for stale, none where one run is over the budget', () => {
    expect(policyWarmUpRuns('shadow-prefill', near, L, BUILTIN)).toBe(POLICY_WARM_UP_RUNS);
    expect(policyWarmUpRuns('stale', near, L, BUILTIN)).toBe(0);
    const run = estimateRunMs('re-prefill', near, L, FAST);
    expect(run).toBeGreaterThan(POLICY_WARM_UP_MS / POLICY_WARM_UP_RUNS);
    expect(policyWarmUpRuns('re-prefill', near, L, FAST)).toBe(Math.floor(POLICY_WARM_UP_MS / run));
    expect(policyWarmUpRuns('re-prefill', near, L, SLOW)).toBe(0);
  });

  it('are charged to the scenario estimate', () => {
    const run = (p: string) => estimateRunMs(p, near, L, BUILTIN);
    const warmUps = POLICIES.reduce((ms, p) => ms + policyWarmUpRuns(p, near, L, BUILTIN) * run(p), 0);
    expect(warmUps).toBeGreaterThan(0);
    // The exact stream (re-prefill's first repeat), the oracle's forward, stale's warm-up, one timed repeat of the others.
    const rest = run('re-prefill') + prefillMs(BUILTIN, L + 16) + run('stale') + run('stale') + run('rerotate') + run('shadow-prefill');
    expect(estimateScenarioMs(POLICIES, 1, near, L, BUILTIN)).toBeCloseTo(rest + warmUps, 6);
  });
});

describe('sizeScenario', () => {
  it('keeps the scenarios as defined when they fit the budget, or without a budget', () => {
    expect(sizeScenario('far', L, 16, POLICIES, 1, FAST, 30 * MINUTE, 'onnxruntime')).toEqual({});
    expect(sizeScenario('far', L, 16, POLICIES, 1, SLOW, null, 'reference')).toEqual({});
  });

  it('near over the budget: only the oracle before the crossing goes, and the report says it is still over', () => {
    const sizing = sizeScenario('near', L, 16, POLICIES, 1, SLOW, 20 * MINUTE, 'reference');
    expect(sizing.promptTokens).toBeUndefined();
    expect(sizing.oracleBefore).toBe(false);
    expect(sizing.adjustments!.join(' ')).toMatch(/estimated at \d+ min on reference, over the 20 min budget/);
    expect(sizing.adjustments!.join(' ')).toMatch(/near cannot be shortened/);
  });

  it('far over the budget: a prompt nearer L that fits, never fewer than the minimum steps to the crossing', () => {
    const sizing = sizeScenario('far', L, 16, POLICIES, 1, SLOW, 20 * MINUTE, 'reference');
    const before = L - sizing.promptTokens!;
    expect(before).toBeGreaterThanOrEqual(MIN_FAR_STEPS);
    expect(before).toBeLessThan(L / 2);
    const shape = { promptTokens: sizing.promptTokens!, steps: before + 16, oracleForwards: 1, shadowWindow: before };
    if (before > MIN_FAR_STEPS) expect(estimateScenarioMs(POLICIES, 1, shape, L, SLOW)).toBeLessThanOrEqual(20 * MINUTE);
    expect(sizing.adjustments!.join(' ')).toContain(`L − ${before}`);
    const tiny = sizeScenario('far', L, 16, POLICIES, 1, SLOW, 1, 'reference');
    expect(L - tiny.promptTokens!).toBe(MIN_FAR_STEPS);
  });

  it('planScenario applies a sizing: the shorter prompt, the oracle from the crossing, the shadow window over the steps left', () => {
    const schedule = createRopeSchedule(parseModelConfig(tinyModelConfig({ originalMax: L })).rope);
    const own = planScenario('far', schedule, L, 16, 128, 1);
    expect(own.oracleSteps[0]).toBe(own.crossingStep - ORACLE_STEPS_BEFORE);
    expect(own.shadowWindow).toBeUndefined();
    const short = planScenario('far', schedule, L, 16, 128, 1, { promptTokens: L - 300, oracleBefore: false, adjustments: ['why'] });
    expect(short).toMatchObject({ promptTokens: L - 300, crossingStep: 301, steps: 316, shadowWindow: 300, adjustments: ['why'] });
    expect(short.oracleSteps[0]).toBe(short.crossingStep);
    expect(short.prompt).toHaveLength(L - 300);
  });
});

import { SeededRandom, type RopeSchedule } from '@ropeswitch/core';
import type { BenchScenario, BenchScenarioName, ScenarioName } from './bench-report.js';

/** The policy scenarios, in the order they run and print: the default of `--scenarios`. */
export const SCENARIO_NAMES: readonly ScenarioName[] = ['near', 'far'];
/** Everything `--scenarios` takes: the policy scenarios, then `serve` (only when asked: it runs every sequence twice, batched and alone). */
export const BENCH_SCENARIO_NAMES: readonly BenchScenarioName[] = [...SCENARIO_NAMES, 'serve'];

/** Tokens the near scenario's prompt stays below L (the crossing is its 7th decode step). */
export const NEAR_MARGIN = 6;
/** Steps before the crossing that also get an oracle, so the KL chart shows the approach. */
export const ORACLE_STEPS_BEFORE = 8;
/** Most oracle steps where every length has its own regime (dynamic NTK: one full forward each). */
export const SPARSE_ORACLE_STEPS = 24;

/** A scenario with its prompt: what every policy of it is fed. */
export interface ScenarioPlan extends Omit<BenchScenario, 'backends'> {
  /** Seeded prompt ids. */
  readonly prompt: readonly number[];
  /** `shadowPrefill`'s window when the plan is not the scenario's own (a shortened far: the decode steps before the crossing). */
  readonly shadowWindow?: number;
}

/** A cheaper plan of a scenario, for a backend too slow for the full one (see `scenario-budget.ts`). */
export interface ScenarioSizing {
  /** Prompt tokens in place of the scenario's own (a far scenario with fewer steps to the crossing). */
  readonly promptTokens?: number;
  /** Whether the oracle also covers the steps before the crossing (default true; quality is measured after it either way). */
  readonly oracleBefore?: boolean;
  /** What was changed and why, as the report states it. */
  readonly adjustments?: readonly string[];
}

/**
 * The prompt and steps of a scenario for a model with threshold L: **near**, a prompt of
 * L − 6 tokens; **far**, a prompt of L/2 (room for a shadow copy to spread its work); both then
 * decode until `newTokens` steps have run past the crossing (the total length ends at L + newTokens).
 *
 * Step 0 is the prompt's forward (S = prompt); step i ≥ 1 feeds stream token i − 1 (S = prompt + i),
 * so the crossing (first S > L) is step L + 1 − prompt. Oracle steps: from 8 steps before the
 * crossing to the end; a sparse, evenly spread subset of at most 24 when every length past the
 * threshold has its own regime (each then needs its own full forward).
 */
export function planScenario(
  name: ScenarioName,
  schedule: RopeSchedule,
  threshold: number,
  newTokens: number,
  vocabSize: number,
  seed: number,
  sizing: ScenarioSizing = {},
): ScenarioPlan {
  const own = scenarioPromptTokens(name, threshold);
  const promptTokens = sizing.promptTokens ?? own;
  const crossingStep = threshold + 1 - promptTokens;
  const steps = crossingStep + newTokens - 1;
  let oracleSteps = range(Math.max(0, sizing.oracleBefore === false ? crossingStep : crossingStep - ORACLE_STEPS_BEFORE), steps);
  if (schedule.changesEveryStep && oracleSteps.length > SPARSE_ORACLE_STEPS) oracleSteps = spread(oracleSteps, crossingStep, SPARSE_ORACLE_STEPS);
  const random = new SeededRandom(seed ^ (name === 'near' ? 0x6e656172 : 0x66617221));
  const prompt = Array.from({ length: promptTokens }, () => random.int(vocabSize));
  // A far scenario brought nearer keeps its point: the shadow copy is spread over every step to the crossing.
  const shadowWindow = name === 'far' && promptTokens !== own ? threshold - promptTokens : undefined;
  return { name, promptTokens, steps, crossingStep, oracleSteps, prompt, adjustments: sizing.adjustments ?? [], ...(shadowWindow !== undefined ? { shadowWindow } : {}) };
}

/** The scenario's own prompt length: L − 6 (near) or L/2 (far). */
export function scenarioPromptTokens(name: ScenarioName, threshold: number): number {
  return name === 'near' ? Math.max(1, threshold - NEAR_MARGIN) : Math.max(1, Math.floor(threshold / 2));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** `count` of `steps`, evenly spread, always with the crossing, its neighbour and the last step. */
function spread(steps: readonly number[], crossing: number, count: number): number[] {
  const picked = new Set<number>([crossing, crossing + 1, steps[steps.length - 1]!].filter((s) => steps.includes(s)));
  for (let k = 0; picked.size < count && k < count; k++) picked.add(steps[Math.round((k * (steps.length - 1)) / (count - 1))]!);
  return [...picked].sort((a, b) => a - b);
}

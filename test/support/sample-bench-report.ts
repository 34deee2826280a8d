/**
 * A synthetic `report.json` for the renderers' tests and the browser check: shaped like a real run
 * of `ropeswitch bench` at L = 4096 (near: prompt 4090, crossing at step 7; far: prompt 2048,
 * ~2200 steps, a sparse oracle), with the figures each policy is known for (stale's KL after the
 * crossing, re-prefill's crossing step ~1000× the median step, shadow-prefill's work spread ahead).
 * Deterministic: the same options give the same report.
 */
import type {
  BenchReport,
  BenchRun,
  BenchScenario,
  RunCost,
  ScenarioName,
  TaskRun,
} from '../../packages/cli/src/bench/bench-report.js';
import { SeededRandom } from '../../packages/core/src/random/seeded-random.js';

export const SAMPLE_POLICIES = ['stale', 'warn-only', 're-prefill', 'rerotate', 'pre-estimate', 'shadow-prefill'] as const;

export interface SampleReportOptions {
  readonly policies?: readonly string[];
  readonly modelName?: string;
  /** Decode steps of the far scenario (default 2200, past L = 4096 from a 2048-token prompt). */
  readonly farSteps?: number;
  /** Every run without a crossing step (null crossing time, ratios and spread). */
  readonly nullCrossing?: boolean;
  readonly repeats?: number;
}

const L = 4096;
const LAYERS = 2;
const KV_HEADS = 2;
const HEAD_DIM = 16;
/** float32 keys and values of one token across the layers. */
const BYTES_PER_TOKEN = LAYERS * KV_HEADS * HEAD_DIM * 2 * 4;

function quantile(sorted: readonly number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

function scenario(name: ScenarioName, farSteps: number): BenchScenario {
  const promptTokens = name === 'near' ? 4090 : 2048;
  const steps = name === 'near' ? 16 : farSteps;
  const crossingStep = L - promptTokens + 1;
  const oracleSteps: number[] = [];
  for (let s = 0; s <= steps; s++) {
    if (name === 'near' || s % 40 === 0 || (s >= crossingStep && s < crossingStep + 8) || s === steps) oracleSteps.push(s);
  }
  return { name, promptTokens, steps, crossingStep, oracleSteps, backends: ['reference'], adjustments: [] };
}

/** Per-step time and KL of one policy in one scenario. */
function series(policy: string, sc: BenchScenario, rand: () => number): { stepMs: number[]; kl: (number | null)[] } {
  const oracle = new Set(sc.oracleSteps);
  const base = sc.name === 'near' ? 1.9 : 1.4;
  const stepMs: number[] = [];
  const kl: (number | null)[] = [];
  for (let s = 0; s <= sc.steps; s++) {
    const noise = 1 + 0.08 * (rand() - 0.5);
    let ms = s === 0 ? sc.promptTokens * 0.38 * noise : base * noise;
    const after = s >= sc.crossingStep;
    if (s === sc.crossingStep) {
      if (policy === 're-prefill') ms = (L + 1) * 0.4 * noise;
      else if (policy === 'rerotate') ms = base * 1.9 * noise;
      else if (policy === 'shadow-prefill') ms = base * 1.3 * noise;
    }
    // shadow-prefill spreads the long-factor prefill over the steps before the crossing.
    const window = sc.name === 'near' ? sc.crossingStep : 1024;
    if (policy === 'shadow-prefill' && s > 0 && s < sc.crossingStep && s >= sc.crossingStep - window) ms *= 1.45;
    if (policy === 'pre-estimate' && s === 0) ms *= 1.1;
    stepMs.push(ms);

    if (!oracle.has(s)) {
      kl.push(null);
      continue;
    }
    const noiseKl = 1e-14 * (1 + 9 * rand());
    let value = noiseKl;
    if (after && (policy === 'stale' || policy === 'warn-only')) value = 0.02 + 0.25 * Math.min(1, (s - sc.crossingStep + 1) / 12) * (0.6 + 0.4 * rand());
    else if (after && policy === 'rerotate') value = 2e-9 * (1 + rand());
    else if (!after && policy === 'pre-estimate') value = 3e-3 * (1 + rand());
    else if (s === 0 && policy === 're-prefill') value = 0; // an exact zero must not break the log axis
    kl.push(value);
  }
  return { stepMs, kl };
}

function run(policy: string, sc: BenchScenario, staleMedian: () => number, options: SampleReportOptions, seed: number): BenchRun {
  // Seeded, so the sample is the same on every run.
  const random = new SeededRandom(seed);
  const rand = () => random.next();
  const { stepMs, kl } = series(policy, sc, rand);
  const decode = stepMs.slice(1);
  const sorted = [...decode].sort((a, b) => a - b);
  const median = quantile(sorted, 0.5);
  const crossingStepMs = options.nullCrossing ? null : (stepMs[sc.crossingStep] ?? null);
  const maxStepMs = sorted[sorted.length - 1]!;
  const afterKl = kl.filter((v, s): v is number => v !== null && s >= sc.crossingStep);
  const meanKl = afterKl.reduce((a, b) => a + b, 0) / Math.max(1, afterKl.length);
  const maxKl = Math.max(0, ...afterKl);
  const stale = policy === 'stale' ? median : staleMedian();
  const extraForwardTokens = policy === 're-prefill' ? L + 1 : policy === 'shadow-prefill' ? L : 0;
  const cacheTokens = sc.promptTokens + sc.steps;
  const cost: RunCost = {
    ttftMs: stepMs[0]!,
    medianStepMs: median,
    p99StepMs: quantile(sorted, 0.99),
    maxStepMs,
    crossingStepMs,
    crossingRatio: crossingStepMs === null ? null : crossingStepMs / stale,
    maxStepRatio: options.nullCrossing ? null : maxStepMs / stale,
    // One repeat in this sample: its repeatable and floor figures are its own.
    repeatableMaxStepMs: maxStepMs,
    repeatableMaxStepRatio: options.nullCrossing ? null : maxStepMs / stale,
    floorCrossingStepMs: crossingStepMs,
    floorCrossingRatio: crossingStepMs === null ? null : crossingStepMs / stale,
    floorMaxStepMs: maxStepMs,
    floorMaxStepRatio: options.nullCrossing ? null : maxStepMs / stale,
    // A rendering sample: its slowest step, against stale's median standing in for its same step.
    pairedMaxStepRatio: options.nullCrossing ? null : maxStepMs / stale,
    pairedMaxStep: options.nullCrossing ? null : stepMs.indexOf(maxStepMs),
    totalMs: stepMs.reduce((a, b) => a + b, 0),
    extraForwardTokens,
    peakCacheBytes: cacheTokens * BYTES_PER_TOKEN * (policy === 'shadow-prefill' ? 2 : 1),
    peakRssBytes: 2e8 + cacheTokens * BYTES_PER_TOKEN * (policy === 'shadow-prefill' ? 2 : 1),
  };
  const spreadOf = (v: number) => ({ min: v * 0.97, max: v * 1.06 });
  return {
    scenario: sc.name,
    backend: 'reference',
    policy,
    quality: {
      maxAbsLogitDiff: Math.sqrt(maxKl) * 6,
      meanKl,
      maxKl,
      top1Agreement: policy === 'stale' || policy === 'warn-only' ? 0.8 + 0.1 * rand() : 1,
      steps: afterKl.length,
    },
    cost,
    spread: {
      ttftMs: spreadOf(cost.ttftMs),
      medianStepMs: spreadOf(cost.medianStepMs),
      crossingStepMs: crossingStepMs === null ? null : spreadOf(crossingStepMs),
      totalMs: spreadOf(cost.totalMs),
    },
    series: { stepMs, kl },
    events:
      policy === 're-prefill'
        ? [`re-prefill@${L + 1}`]
        : policy === 'warn-only'
          ? [`regime-change@${L + 1}`]
          : policy === 'shadow-prefill'
            ? [`shadow-start@${sc.promptTokens}`, `shadow-swap@${L + 1}`]
            : [],
  };
}

/** HF transformers' figures from the trained fixture's eval.json: re-prefill (`a_generate`) and stale (`b_stale`). */
const HF = {
  reprefill: { 40: [0.9964, 0.9938, 0.985], 50: [0.9981, 0.9974, 0.99], 60: [0.9946, 0.9943, 0.935] },
  stale: { 40: [0.5841, 0.0238, 0], 50: [0.2756, 0.0211, 0], 60: [0.0759, 0.0273, 0] },
} as const;

function task(policies: readonly string[]): TaskRun[] {
  const out: TaskRun[] = [];
  for (const n of [40, 50, 60] as const) {
    for (const policy of policies) {
      const kind = policy === 'stale' || policy === 'warn-only' ? 'stale' : 'reprefill';
      const [acc, post, exact] = HF[kind][n];
      const hf = policy === 'stale' || policy === 're-prefill' || policy === 'shadow-prefill' ? { tokenAccuracy: acc, postCrossingAccuracy: post } : null;
      out.push({
        backend: 'reference',
        policy,
        n,
        promptTokens: n + 2,
        sequences: 64,
        tokenAccuracy: acc - 0.004,
        postCrossingAccuracy: post,
        exactMatch: exact,
        hf,
      });
    }
  }
  return out;
}

export function sampleBenchReport(options: SampleReportOptions = {}): BenchReport {
  const policies = options.policies ?? SAMPLE_POLICIES;
  const scenarios = [scenario('near', options.farSteps ?? 2200), scenario('far', options.farSteps ?? 2200)];
  const runs: BenchRun[] = [];
  scenarios.forEach((sc, si) => {
    let staleMedianMs: number | undefined;
    const staleMedian = () => {
      // The ratio's denominator: stale's median step, or this scenario's own first run's when stale did not run.
      staleMedianMs ??= run('stale', sc, () => 1, options, 1000 + si).cost.medianStepMs;
      return staleMedianMs;
    };
    policies.forEach((policy, pi) => runs.push(run(policy, sc, staleMedian, options, 1000 * (si + 1) + pi)));
  });
  const byName = (scenarioName: ScenarioName, policy: string) => runs.find((r) => r.scenario === scenarioName && r.policy === policy);
  const shadowNear = byName('near', 'shadow-prefill');
  const shadowFar = byName('far', 'shadow-prefill');
  const reNear = byName('near', 're-prefill');
  const reFar = byName('far', 're-prefill');
  const rerotate = byName('near', 'rerotate');
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a == null || b == null ? null : a / b);
  const checked = (value: number | null, limit: number) => (value === null ? null : value <= limit);
  const targets = [
    {
      name: 'shadow-prefill near floorCrossingRatio',
      description: 'crossing step / stale median step (each at its fastest repeat)',
      value: shadowNear?.cost.crossingRatio ?? null,
      limit: 1.5,
      comparedWith: `re-prefill ${reNear?.cost.crossingRatio?.toFixed(0) ?? '–'}`,
    },
    {
      name: 'shadow-prefill far floorMaxStepRatio',
      description: 'max step (each at its fastest repeat) / stale median step',
      value: shadowFar ? 2.4 : null,
      limit: 2,
      comparedWith: `re-prefill ${reFar?.cost.maxStepRatio?.toFixed(0) ?? '–'}`,
    },
    {
      name: 'rerotate crossing vs re-prefill',
      description: 'rerotate crossing step / re-prefill crossing step',
      value: ratio(rerotate?.cost.crossingStepMs, reNear?.cost.crossingStepMs),
      limit: 0.01,
    },
    { name: 'rotation vs key copy', description: 'rotation time / one copy of the key cache', value: null, limit: 3 },
  ].map((t) => ({ ...t, met: checked(t.value, t.limit) }));

  return {
    version: 1,
    createdAt: '2025-01-02T03:04:05.000Z',
    machine: { cpu: 'Sample CPU @ 2.0GHz', cores: 2, node: 'v20.19.0', platform: 'linux x64' },
    model: {
      name: options.modelName ?? 'builtin',
      family: 'phi3',
      hiddenSize: 64,
      numLayers: LAYERS,
      numHeads: 4,
      numKvHeads: KV_HEADS,
      headDim: HEAD_DIM,
      vocabSize: 128,
      ropeType: 'longrope',
      parameters: 115_000,
      checkpointBytes: 460_000,
      weightBytes: 460_000,
    },
    threshold: L,
    settings: {
      backends: ['reference'],
      policies: [...policies],
      scenarios: ['near', 'far'],
      newTokens: 16,
      repeats: options.repeats ?? 3,
      quick: false,
      budgetMinutes: 20,
    },
    scenarios,
    runs,
    task: task(policies),
    targets,
  };
}

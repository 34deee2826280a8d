import { cpus } from 'node:os';
import { type Backend, type ModelConfig, type RopeSchedule, SeededRandom, createRopeSchedule, generate, wrapBackend } from '@ropeswitch/core';
import { rePrefill } from '@ropeswitch/policies';
import { type BackendName, TRAINED_MODEL_DIR, openBackend } from '../backends.js';
import type { BenchModel, BenchReport, BenchRun, RunCost, RunQuality, ScenarioName, TaskRun } from './bench-report.js';
import { CountingBackend } from './counting-backend.js';
import { type MiddlewareOverhead, measureMiddlewareOverhead } from './middleware-overhead.js';
import { oracleLogits } from './oracle-logits.js';
import { type PolicyRunRecord, runPolicy } from './policy-run.js';
import type { BenchProgress } from './progress.js';
import { measureRerotation } from './rerotation-cost.js';
import { type ScenarioPlan, planScenario } from './scenario-plan.js';
import { median, medianIndex, minMax, percentile } from './statistics.js';
import { type BackendMeasurements, checkTargets } from './targets.js';
import { TASK_COPY_LENGTHS, readHfTaskFigures, runTask } from './task-scenario.js';

/** The policy every cost ratio is taken against; it always runs. */
export const REFERENCE_POLICY = 'stale';

export interface BenchOptions {
  /** As the report shows it: `builtin`, `trained`, or the folder. */
  readonly modelName: string;
  readonly modelDir: string;
  readonly backends: readonly BackendName[];
  /** Policy names in report order; `stale` is added first when missing. */
  readonly policies: readonly string[];
  readonly scenarios: readonly ScenarioName[];
  /** Steps decoded from the crossing on (the crossing step included). */
  readonly newTokens: number;
  /** Timed runs per (scenario, backend, policy), after one warm-up run per (scenario, backend). */
  readonly repeats: number;
  readonly quick: boolean;
  /** Sequences per copy length in the task scenario on the trained model; 0 skips the task. */
  readonly taskSequences: number;
  /** Seeds the prompts (default 1). */
  readonly seed?: number;
  readonly progress?: BenchProgress;
}

const NO_PROGRESS: BenchProgress = { start() {}, step() {}, finish() {} };

/**
 * Runs the benchmark and returns its report: per backend and scenario, an exact greedy token
 * stream (re-prefill, equal to the no-cache oracle) that every policy is teacher-forced on, the
 * oracle's logits at the steps around and after the crossing, one warm-up run, then `repeats`
 * timed runs of each policy in turn; then the rotation and middleware measurements; then the copy
 * task on the trained model.
 */
export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const progress = options.progress ?? NO_PROGRESS;
  const policies = options.policies.includes(REFERENCE_POLICY) ? options.policies.slice() : [REFERENCE_POLICY, ...options.policies];
  const seed = options.seed ?? 1;
  const task = options.taskSequences > 0;
  const perBackend = options.scenarios.length * (3 + policies.length * options.repeats) + 2 + (task ? policies.length * TASK_COPY_LENGTHS.length : 0);
  progress.start(options.backends.length * perBackend);

  const runs: BenchRun[] = [];
  const taskRuns: TaskRun[] = [];
  const measured: BackendMeasurements[] = [];
  const plans = new Map<ScenarioName, ScenarioPlan>();
  let config: ModelConfig | undefined;
  let threshold = 0;

  for (const backendName of options.backends) {
    const backend = await openBackend(backendName, options.modelDir);
    try {
      config = backend.config;
      const schedule = createRopeSchedule(config.rope);
      if (schedule.threshold === undefined) throw new Error(`the model in ${options.modelDir} has a static RoPE schedule: nothing to benchmark`);
      threshold = schedule.threshold;
      for (const scenario of options.scenarios) {
        const plan = planScenario(scenario, schedule, threshold, options.newTokens, config.vocabSize, seed);
        plans.set(scenario, plan);
        runs.push(...(await runScenario(backend, backendName, schedule, plan, policies, options.repeats, progress)));
      }
      progress.step(`${backendName}: rerotation vs key copy`);
      const rerotation = await measureRerotation(backend, schedule, seededIds(threshold, config.vocabSize, seed ^ 0x726f74));
      progress.step(`${backendName}: middleware overhead`);
      const overhead = await measureOverhead(backend, threshold, config.vocabSize, seed);
      measured.push({ backend: backendName, rerotation, overhead });
    } finally {
      await backend.dispose();
    }
    if (task) taskRuns.push(...(await runTaskScenario(backendName, policies, options.taskSequences, progress)));
  }
  progress.finish();

  return {
    version: 1,
    createdAt: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model.trim() ?? 'unknown', cores: cpus().length, node: process.version, platform: `${process.platform}-${process.arch}` },
    model: describeModel(options.modelName, config!),
    threshold,
    settings: {
      backends: options.backends.slice(),
      policies,
      scenarios: options.scenarios.slice(),
      newTokens: options.newTokens,
      repeats: options.repeats,
      quick: options.quick,
    },
    scenarios: options.scenarios.map((name) => {
      const { prompt: _prompt, ...scenario } = plans.get(name)!;
      return scenario;
    }),
    runs,
    task: taskRuns,
    targets: checkTargets(runs, measured, options.scenarios),
  };
}

async function runScenario(
  backend: Backend,
  backendName: string,
  schedule: RopeSchedule,
  plan: ScenarioPlan,
  policies: readonly string[],
  repeats: number,
  progress: BenchProgress,
): Promise<BenchRun[]> {
  const where = `${plan.name}/${backendName}`;
  progress.step(`${where}: exact token stream (${plan.promptTokens} + ${plan.steps} tokens)`);
  // The greedy tokens of an exact run; the last one chosen is never fed.
  const exact = await generate(wrapBackend(backend, rePrefill()), plan.prompt, { maxNewTokens: plan.steps + 1, collectLogits: false });
  const stream = exact.tokens.slice(0, plan.steps);
  progress.step(`${where}: no-cache oracle at ${plan.oracleSteps.length} steps`);
  const oracle = await oracleLogits(backend, schedule, [...plan.prompt, ...stream], plan.promptTokens, plan.oracleSteps);

  const counting = new CountingBackend(backend);
  progress.step(`${where}: warm-up`);
  await runPolicy(counting, REFERENCE_POLICY, plan, stream, undefined);
  const records = new Map<string, PolicyRunRecord[]>(policies.map((p) => [p, []]));
  // Policies take turns within each repeat, so a drift in machine speed spreads over all of them.
  for (let r = 0; r < repeats; r++) {
    for (const policy of policies) {
      progress.step(`${where}: ${policy} (run ${r + 1}/${repeats})`);
      records.get(policy)!.push(await runPolicy(counting, policy, plan, stream, r === 0 ? oracle : undefined));
    }
  }
  const referenceMedian = median(records.get(REFERENCE_POLICY)!.map((rec) => median(rec.stepMs.slice(1))));
  return policies.map((policy) => summarizeRuns(plan, backendName, policy, records.get(policy)!, referenceMedian));
}

/** One report row from a policy's repeats: cost figures are medians over them, quality and series from the first / median one. */
function summarizeRuns(plan: ScenarioPlan, backend: string, policy: string, records: readonly PolicyRunRecord[], referenceMedian: number): BenchRun {
  const per = records.map((rec) => {
    const decode = rec.stepMs.slice(1);
    return {
      ttftMs: rec.stepMs[0]!,
      medianStepMs: median(decode),
      p99StepMs: percentile(decode, 0.99),
      maxStepMs: Math.max(...decode),
      crossingStepMs: rec.stepMs[plan.crossingStep]!,
      totalMs: rec.stepMs.reduce((a, b) => a + b, 0),
    };
  });
  const med = (f: (p: (typeof per)[number]) => number) => median(per.map(f));
  const first = records[0]!;
  const crossingStepMs = med((p) => p.crossingStepMs);
  const maxStepMs = med((p) => p.maxStepMs);
  const cost: RunCost = {
    ttftMs: med((p) => p.ttftMs),
    medianStepMs: med((p) => p.medianStepMs),
    p99StepMs: med((p) => p.p99StepMs),
    maxStepMs,
    crossingStepMs,
    crossingRatio: crossingStepMs / referenceMedian,
    maxStepRatio: maxStepMs / referenceMedian,
    totalMs: med((p) => p.totalMs),
    extraForwardTokens: first.forwardTokens - (plan.promptTokens + plan.steps),
    peakCacheBytes: first.peakCacheBytes,
  };
  const shown = records[medianIndex(per.map((p) => p.totalMs))]!;
  return {
    scenario: plan.name,
    backend,
    policy,
    quality: quality(plan, first),
    cost,
    spread: {
      ttftMs: minMax(per.map((p) => p.ttftMs)),
      medianStepMs: minMax(per.map((p) => p.medianStepMs)),
      crossingStepMs: minMax(per.map((p) => p.crossingStepMs)),
      totalMs: minMax(per.map((p) => p.totalMs)),
    },
    series: {
      // Rounded to 0.1 µs: finer digits are timer noise and only bloat report.json.
      stepMs: shown.stepMs.map((ms) => Math.round(ms * 1e4) / 1e4),
      kl: Array.from({ length: plan.steps + 1 }, (_, step) => first.quality.get(step)?.kl ?? null),
    },
    events: first.events,
  };
}

/** Quality over the oracle steps at and after the crossing. */
function quality(plan: ScenarioPlan, record: PolicyRunRecord): RunQuality {
  const compared = plan.oracleSteps.filter((s) => s >= plan.crossingStep).map((s) => record.quality.get(s)!);
  const kls = compared.map((q) => q.kl);
  return {
    maxAbsLogitDiff: Math.max(0, ...compared.map((q) => q.maxAbsDiff)),
    meanKl: kls.reduce((a, b) => a + b, 0) / Math.max(1, kls.length),
    maxKl: Math.max(0, ...kls),
    top1Agreement: compared.filter((q) => q.top1).length / Math.max(1, compared.length),
    steps: compared.length,
  };
}

/** The middleware check from half the threshold up (decode steps that cross nothing). */
async function measureOverhead(backend: Backend, threshold: number, vocab: number, seed: number): Promise<MiddlewareOverhead | undefined> {
  const prompt = seededIds(Math.max(1, Math.floor(threshold / 2)), vocab, seed ^ 0x6f7668);
  if (threshold - prompt.length < 1) return undefined;
  return measureMiddlewareOverhead(backend, prompt, threshold, seededIds(64, vocab, seed ^ 0x746f6b));
}

async function runTaskScenario(backendName: BackendName, policies: readonly string[], sequences: number, progress: BenchProgress): Promise<TaskRun[]> {
  const backend = await openBackend(backendName, TRAINED_MODEL_DIR);
  try {
    const threshold = createRopeSchedule(backend.config.rope).threshold!;
    const hf = await readHfTaskFigures(TRAINED_MODEL_DIR, policies);
    const out: TaskRun[] = [];
    for (const policy of policies) {
      for (const n of TASK_COPY_LENGTHS) {
        progress.step(`task/${backendName}: ${policy}, n = ${n} (${sequences} sequences)`);
        out.push(await runTask(backend, backendName, policy, n, sequences, threshold, hf));
      }
    }
    return out;
  } finally {
    await backend.dispose();
  }
}

function seededIds(count: number, vocab: number, seed: number): number[] {
  const random = new SeededRandom(seed);
  return Array.from({ length: count }, () => random.int(vocab));
}

function describeModel(name: string, config: ModelConfig): BenchModel {
  return {
    name,
    family: config.family,
    hiddenSize: config.hiddenSize,
    numLayers: config.numLayers,
    numHeads: config.numHeads,
    numKvHeads: config.numKvHeads,
    headDim: config.headDim,
    vocabSize: config.vocabSize,
    ropeType: config.rope.scaling.type,
  };
}


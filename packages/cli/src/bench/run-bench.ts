import { cpus } from 'node:os';
import { type Backend, type ModelConfig, type RopeSchedule, SeededRandom, modelSchedule, loadWeights, positionLimit, storedBytes } from '@ropeswitch/core';
import type { BackendSettings } from '../backend-flags.js';
import { type BackendName, TRAINED_MODEL_DIR, openBackend } from '../backends.js';
import type { BenchModel, BenchReport, BenchRun, BenchScenario, BenchScenarioName, RunCost, RunQuality, ScenarioName, ServeRun, TaskRun } from './bench-report.js';
import { CountingBackend } from './counting-backend.js';
import { type MiddlewareOverhead, measureMiddlewareOverhead } from './middleware-overhead.js';
import { oracleLogits } from './oracle-logits.js';
import { type PolicyRunRecord, type StepQuality, runPolicy, scoreRun } from './policy-run.js';
import type { BenchProgress } from './progress.js';
import { measureRerotation } from './rerotation-cost.js';
import { type BackendSpeed, WARM_UP_FULL_MS, estimateRunMs, measureSpeed, policyWarmUpRuns, prefillMs, sizeScenario } from './scenario-budget.js';
import { type ScenarioPlan, planScenario } from './scenario-plan.js';
import { SERVE_DEFAULTS, planServe, serveRowSlots } from './serve-plan.js';
import { runServe, warmUpServe } from './serve-scenario.js';
import { floorMax, median, medianIndex, minMax, pairedMax, percentile, repeatableMax, stepFloors } from './statistics.js';
import { type BackendMeasurements, REFERENCE_POLICY, checkServeTargets, checkTargets } from './targets.js';
import { TASK_COPY_LENGTHS, readHfTaskFigures, runTask } from './task-scenario.js';

export interface BenchOptions {
  /** As the report shows it: `builtin`, `trained`, or the folder. */
  readonly modelName: string;
  readonly modelDir: string;
  readonly backends: readonly BackendName[];
  /** Policy names in report order; `stale` is added first when missing. */
  readonly policies: readonly string[];
  /** `near` and `far` run every policy; `serve` runs each of {@link policies} (as given) batched against solo. */
  readonly scenarios: readonly BenchScenarioName[];
  /** The serve scenario's size (default 8 sequences of 32 new tokens). */
  readonly serve?: { readonly sequences: number; readonly newTokens: number };
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
  /** Backend flags of the command line (`--threads`, …). */
  readonly settings?: BackendSettings;
  /** Estimated minutes a (scenario, backend) may take before a cheaper plan is run (see `scenario-budget.ts`); `null` or absent: the full plans always. */
  readonly budgetMinutes?: number | null;
}

const NO_PROGRESS: BenchProgress = { start() {}, step() {}, finish() {} };

/** Row slots of the export an onnxruntime backend runs (read from it, so the report says what ran); `null` for other backends. */
function rowSlotsOf(backend: Backend): number | null {
  return (backend as { readonly exported?: { readonly manifest: { readonly slots: number } } }).exported?.manifest.slots ?? null;
}

/**
 * Runs the benchmark and returns its report. Per backend: its speed on the model (a short probe the
 * plans are sized by), then per scenario a warm-up, an exact greedy run (re-prefill, equal to the
 * no-cache oracle: its tokens are the stream every other policy is teacher-forced on, and it is
 * re-prefill's first timed run), the oracle's logits at the steps around and after the crossing,
 * then `repeats` timed runs of each policy in turn; then the rotation and middleware measurements;
 * then the serve scenario under each policy asked for (the `stale` added for the ratios only when
 * asked: serve has no ratio to it); then the copy task on the trained model. A run of serve alone
 * skips the speed probe and the rotation and middleware measurements (nothing of serve needs them).
 */
export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const progress = options.progress ?? NO_PROGRESS;
  const policies = options.policies.includes(REFERENCE_POLICY) ? options.policies.slice() : [REFERENCE_POLICY, ...options.policies];
  const seed = options.seed ?? 1;
  const task = options.taskSequences > 0;
  const streamIsRun = policies.includes(STREAM_POLICY) ? 1 : 0;
  const perScenario = 4 + policies.length * options.repeats - streamIsRun;
  const scenarios = options.scenarios.filter((s): s is ScenarioName => s !== 'serve');
  const serve = options.scenarios.includes('serve') ? (options.serve ?? SERVE_DEFAULTS) : undefined;
  const servePolicies = options.policies.slice();
  const perBackend =
    (scenarios.length > 0 ? 1 + scenarios.length * perScenario + 2 : 0) +
    (serve ? 1 + 2 * servePolicies.length : 0) +
    (task ? policies.length * TASK_COPY_LENGTHS.length : 0);
  progress.start(options.backends.length * perBackend);
  const budgetMs = options.budgetMinutes == null || options.budgetMinutes <= 0 ? null : options.budgetMinutes * 60_000;

  const runs: BenchRun[] = [];
  const taskRuns: TaskRun[] = [];
  const serveRuns: ServeRun[] = [];
  const measured: BackendMeasurements[] = [];
  const plans: { plan: ScenarioPlan; backend: string }[] = [];
  let config: ModelConfig | undefined;
  let threshold = 0;

  for (const backendName of options.backends) {
    // onnxruntime runs as many rows per pass over the weights as its export has slots: unless told
    // (--rows-per-run), serve gets an export sized to its fullest step, as a server would size its own.
    const sized = serve !== undefined && backendName === 'onnxruntime' && options.settings?.rowsPerRun === undefined;
    const serveSettings = sized ? { ...options.settings, rowsPerRun: serveRowSlots(serve.sequences) } : options.settings;
    // Serve alone opens the backend with its own slots at once; after other scenarios it opens it again.
    const reopenForServe = scenarios.length > 0 && sized;
    const settings = scenarios.length > 0 ? options.settings : serveSettings;
    const backend = await openBackend(backendName, options.modelDir, settings ? { settings } : {});
    try {
      config = backend.config;
      const schedule = modelSchedule(config.rope);
      if (schedule.threshold === undefined) throw new Error(`the model in ${options.modelDir} has a static RoPE schedule: nothing to benchmark`);
      threshold = schedule.threshold;
      if (scenarios.length > 0) {
        progress.step(`${backendName}: speed on this model (sizes the plans)`);
        const speed = await measureSpeed(backend, seed);
        for (const scenario of scenarios) {
          const sizing = sizeScenario(scenario, threshold, options.newTokens, policies, options.repeats, speed, budgetMs, backendName);
          const plan = planScenario(scenario, schedule, threshold, options.newTokens, config.vocabSize, seed, sizing);
          plans.push({ plan, backend: backendName });
          runs.push(...(await runScenario(backend, backendName, schedule, plan, policies, options.repeats, speed, progress)));
        }
        progress.step(`${backendName}: rerotation vs key copy`);
        const rerotation = await measureRerotation(backend, schedule, threshold, seed ^ 0x726f74);
        progress.step(`${backendName}: middleware overhead`);
        const overhead = await measureOverhead(backend, threshold, config.vocabSize, seed, speed);
        measured.push({ backend: backendName, rerotation, overhead });
      }
      if (serve) {
        const plan = planServe(threshold, positionLimit(config), serve.sequences, serve.newTokens, config.vocabSize, seed);
        // The scenarios above are done with the first session: it goes before the second one opens (idempotent below).
        if (reopenForServe) await backend.dispose();
        const serving = reopenForServe ? await openBackend(backendName, options.modelDir, serveSettings ? { settings: serveSettings } : {}) : backend;
        try {
          progress.step(`serve/${backendName}: warm-up`);
          await warmUpServe(serving, servePolicies[0]!);
          for (const policy of servePolicies) {
            const where = `serve/${backendName}: ${policy}, ${plan.sequences} sequences of ${plan.newTokens} new tokens`;
            serveRuns.push(await runServe(serving, backendName, rowSlotsOf(serving), policy, plan, (side) => progress.step(`${where}, ${side}`)));
          }
        } finally {
          if (reopenForServe) await serving.dispose();
        }
      }
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
    model: await describeModel(options.modelName, options.modelDir, config!),
    threshold,
    settings: {
      backends: options.backends.slice(),
      policies,
      scenarios: options.scenarios.slice(),
      newTokens: options.newTokens,
      repeats: options.repeats,
      quick: options.quick,
      budgetMinutes: budgetMs === null ? null : budgetMs / 60_000,
      ...(options.settings && Object.keys(options.settings).length > 0 ? { backendFlags: { ...options.settings } } : {}),
      ...(serve ? { serve: { ...serve } } : {}),
    },
    scenarios: scenarioEntries(scenarios, plans),
    runs,
    task: taskRuns,
    ...(serve ? { serve: serveRuns } : {}),
    targets: [...checkTargets(runs, measured, scenarios, config!.hiddenSize), ...checkServeTargets(serveRuns, config!.hiddenSize)],
  };
}

/** The exact policy whose greedy run gives the stream; it is also its first timed run. */
const STREAM_POLICY = 're-prefill';

/** The warm-up when a full stale run would be dear: a short prompt and a few steps, enough to compile every path. */
const SHORT_WARM_UP = { promptTokens: 64, steps: 8 };

/** One report entry per distinct plan of a scenario, naming the backends that ran it. */
function scenarioEntries(names: readonly ScenarioName[], plans: readonly { plan: ScenarioPlan; backend: string }[]): BenchScenario[] {
  const out: BenchScenario[] = [];
  for (const name of names) {
    const entries = new Map<string, BenchScenario>();
    for (const { plan, backend } of plans.filter((p) => p.plan.name === name)) {
      const { prompt: _prompt, shadowWindow: _window, ...scenario } = plan;
      const key = JSON.stringify(scenario);
      const entry = entries.get(key);
      entries.set(key, { ...scenario, backends: [...(entry?.backends ?? []), backend] });
    }
    out.push(...entries.values());
  }
  return out;
}

async function runScenario(
  backend: Backend,
  backendName: string,
  schedule: RopeSchedule,
  plan: ScenarioPlan,
  policies: readonly string[],
  repeats: number,
  speed: BackendSpeed,
  progress: BenchProgress,
): Promise<BenchRun[]> {
  const where = `${plan.name}/${backendName}`;
  const counting = new CountingBackend(backend);
  const stepsOf = { promptTokens: plan.promptTokens, steps: plan.steps, oracleForwards: 1, shadowWindow: plan.shadowWindow ?? plan.promptTokens };
  const fullWarmUp = estimateRunMs(REFERENCE_POLICY, stepsOf, schedule.threshold!, speed) <= WARM_UP_FULL_MS;
  progress.step(`${where}: warm-up${fullWarmUp ? '' : ` (short: ${SHORT_WARM_UP.promptTokens} + ${SHORT_WARM_UP.steps} tokens)`}`);
  const warmUp = fullWarmUp ? plan : { ...plan, ...SHORT_WARM_UP, prompt: plan.prompt.slice(0, SHORT_WARM_UP.promptTokens) };
  await runPolicy(counting, REFERENCE_POLICY, warmUp, 'greedy');

  const keep = new Set(plan.oracleSteps);
  progress.step(`${where}: exact token stream, ${STREAM_POLICY} run 1/${repeats} (${plan.promptTokens} + ${plan.steps} tokens)`);
  const exact = await runPolicy(counting, STREAM_POLICY, plan, 'greedy', keep);
  const stream = exact.tokens;
  progress.step(`${where}: no-cache oracle at ${plan.oracleSteps.length} steps`);
  const oracle = await oracleLogits(backend, schedule, [...plan.prompt, ...stream], plan.promptTokens, plan.oracleSteps);

  // Each policy's once-per-sequence code warmed before it is timed (see policyWarmUpRuns), teacher-forced like the timed runs.
  const warmUps = policies.map((p) => [p, policyWarmUpRuns(p, stepsOf, schedule.threshold!, speed)] as const).filter(([, n]) => n > 0);
  progress.step(`${where}: warm-up of the policies (${warmUps.length > 0 ? warmUps.map(([p, n]) => `${p} ×${n}`).join(', ') : 'none: the plan is too dear'})`);
  for (const [policy, runs] of warmUps) for (let i = 0; i < runs; i++) await runPolicy(counting, policy, plan, stream);

  const records = new Map<string, PolicyRunRecord[]>(policies.map((p) => [p, p === STREAM_POLICY ? [exact] : []]));
  // Policies take turns within each repeat, so a drift in machine speed spreads over all of them.
  for (let r = 0; r < repeats; r++) {
    for (const policy of policies) {
      if (r === 0 && policy === STREAM_POLICY) continue;
      progress.step(`${where}: ${policy} (run ${r + 1}/${repeats})`);
      records.get(policy)!.push(await runPolicy(counting, policy, plan, stream, r === 0 ? keep : undefined));
    }
  }
  const referenceSteps = records.get(REFERENCE_POLICY)!.map((rec) => rec.stepMs.slice(1));
  const reference = { medianStepMs: median(referenceSteps.map(median)), floorMedianStepMs: median(stepFloors(referenceSteps)), steps: referenceSteps };
  return policies.map((policy) => summarizeRuns(plan, backendName, policy, records.get(policy)!, scoreRun(records.get(policy)![0]!, oracle), reference));
}

/** One report row from a policy's repeats: cost figures are medians over them, quality and series from the first / median one. */
function summarizeRuns(
  plan: ScenarioPlan,
  backend: string,
  policy: string,
  records: readonly PolicyRunRecord[],
  scores: ReadonlyMap<number, StepQuality>,
  reference: { readonly medianStepMs: number; readonly floorMedianStepMs: number; readonly steps: readonly (readonly number[])[] },
): BenchRun {
  const referenceMedian = reference.medianStepMs;
  // Each repeat's decode steps (after the first token).
  const decodes = records.map((rec) => rec.stepMs.slice(1));
  const per = records.map((rec, r) => {
    const decode = decodes[r]!;
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
  const repeatableMaxStepMs = repeatableMax(decodes);
  const floorMaxStepMs = floorMax(decodes);
  const floorCrossingStepMs = Math.min(...records.map((rec) => rec.stepMs[plan.crossingStep]!));
  const paired = pairedMax(decodes, reference.steps);
  const cost: RunCost = {
    ttftMs: med((p) => p.ttftMs),
    medianStepMs: med((p) => p.medianStepMs),
    p99StepMs: med((p) => p.p99StepMs),
    maxStepMs,
    crossingStepMs,
    crossingRatio: crossingStepMs / referenceMedian,
    maxStepRatio: maxStepMs / referenceMedian,
    repeatableMaxStepMs,
    repeatableMaxStepRatio: repeatableMaxStepMs / referenceMedian,
    floorCrossingStepMs,
    floorCrossingRatio: floorCrossingStepMs / reference.floorMedianStepMs,
    floorMaxStepMs,
    floorMaxStepRatio: floorMaxStepMs / reference.floorMedianStepMs,
    pairedMaxStepRatio: paired?.ratio ?? null,
    // Series index: step 0 is the prompt's forward.
    pairedMaxStep: paired ? paired.step + 1 : null,
    totalMs: med((p) => p.totalMs),
    extraForwardTokens: first.forwardTokens - (plan.promptTokens + plan.steps),
    peakCacheBytes: first.peakCacheBytes,
    peakRssBytes: Math.max(...records.map((rec) => rec.peakRssBytes)),
  };
  const shown = records[medianIndex(per.map((p) => p.totalMs))]!;
  return {
    scenario: plan.name,
    backend,
    policy,
    quality: quality(plan, scores),
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
      kl: Array.from({ length: plan.steps + 1 }, (_, step) => scores.get(step)?.kl ?? null),
    },
    events: first.events,
  };
}

/** Quality over the oracle steps at and after the crossing. */
function quality(plan: ScenarioPlan, scores: ReadonlyMap<number, StepQuality>): RunQuality {
  const compared = plan.oracleSteps.filter((s) => s >= plan.crossingStep).map((s) => scores.get(s)!);
  const kls = compared.map((q) => q.kl);
  return {
    maxAbsLogitDiff: Math.max(0, ...compared.map((q) => q.maxAbsDiff)),
    meanKl: kls.reduce((a, b) => a + b, 0) / Math.max(1, kls.length),
    maxKl: Math.max(0, ...kls),
    top1Agreement: compared.filter((q) => q.top1).length / Math.max(1, compared.length),
    steps: compared.length,
  };
}

/** Time the middleware check may take: two prompts and its 400 decode steps, on the slowest backends. */
const OVERHEAD_BUDGET_MS = 120_000;

/**
 * The middleware check from half the threshold up (decode steps that cross nothing); on a backend
 * too slow for two prompts of L/2 and its steps within two minutes, from a shorter prompt and fewer steps.
 */
async function measureOverhead(backend: Backend, threshold: number, vocab: number, seed: number, speed: BackendSpeed): Promise<MiddlewareOverhead | undefined> {
  let promptTokens = Math.max(1, Math.floor(threshold / 2));
  while (promptTokens > 64 && 2 * prefillMs(speed, promptTokens) > OVERHEAD_BUDGET_MS / 2) promptTokens = Math.floor(promptTokens / 2);
  const steps = Math.max(20, Math.min(MAX_OVERHEAD_STEPS, Math.floor(OVERHEAD_BUDGET_MS / 2 / (2 * speed.decodeMs))));
  const prompt = seededIds(promptTokens, vocab, seed ^ 0x6f7668);
  if (threshold - prompt.length < 1) return undefined;
  return measureMiddlewareOverhead(backend, prompt, threshold, seededIds(64, vocab, seed ^ 0x746f6b), steps);
}

/** Steps per side of the middleware check at most (10 rounds of 20). */
const MAX_OVERHEAD_STEPS = 200;

async function runTaskScenario(backendName: BackendName, policies: readonly string[], sequences: number, progress: BenchProgress): Promise<TaskRun[]> {
  const backend = await openBackend(backendName, TRAINED_MODEL_DIR);
  try {
    const threshold = modelSchedule(backend.config.rope).threshold!;
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

/** The model as the report states it, with its size read from the checkpoint's headers (no tensor is read). */
async function describeModel(name: string, dir: string, config: ModelConfig): Promise<BenchModel> {
  const store = await loadWeights(dir);
  let parameters = 0;
  let checkpointBytes = 0;
  try {
    for (const tensor of store.names) {
      const info = store.info(tensor);
      parameters += info.shape.reduce((a, b) => a * b, 1);
      checkpointBytes += storedBytes(info);
    }
  } finally {
    await store.close();
  }
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
    parameters,
    checkpointBytes,
    weightBytes: 4 * parameters,
  };
}


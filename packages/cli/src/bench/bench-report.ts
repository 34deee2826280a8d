/**
 * The shape of `report.json`, the one result every bench output is made from (`report.md`,
 * `report.html`, stdout). Times are milliseconds; `null` marks a value that does not apply (a
 * policy that never crosses has no crossing step).
 */
import type { BatchSchedulerStats, PrefixCacheStats } from '@ropeswitch/core';

export type ScenarioName = 'near' | 'far';

/** What `--scenarios` takes: the policy scenarios, and `serve` (many sequences batched through one scheduler; see {@link ServeRun}). */
export type BenchScenarioName = ScenarioName | 'serve';

export interface BenchMachine {
  readonly cpu: string;
  readonly cores: number;
  readonly node: string;
  readonly platform: string;
}

export interface BenchModel {
  /** `builtin`, `trained`, or the folder given to `--model`. */
  readonly name: string;
  readonly family: string;
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly ropeType: string;
  /** Parameters of the decoder (a tied embedding counted once). */
  readonly parameters: number;
  /** Bytes of the weights as stored in the checkpoint (BF16 counts 2 a value). */
  readonly checkpointBytes: number;
  /** Bytes of the weights in float32, what the backends compute with. */
  readonly weightBytes: number;
}

export interface BenchSettings {
  readonly backends: readonly string[];
  readonly policies: readonly string[];
  readonly scenarios: readonly BenchScenarioName[];
  /** Steps decoded past the crossing in each scenario. */
  readonly newTokens: number;
  /** Timed repetitions per (scenario, backend, policy); cost figures are their medians. */
  readonly repeats: number;
  readonly quick: boolean;
  /**
   * Minutes a (scenario, backend) may take by the bench's estimate before it is made cheaper (the
   * oracle before the crossing dropped, the far scenario shortened); `null`: never.
   */
  readonly budgetMinutes: number | null;
  /**
   * The backend flags given (`--threads`, `--quantize`, `--weights`, `--cache-dtype`), as the CLI
   * parsed them; absent flags are the backends' defaults.
   */
  readonly backendFlags?: Readonly<Record<string, string | number>>;
  /** The serve scenario's size (`--serve-sequences`, `--serve-new-tokens`), when it ran. */
  readonly serve?: { readonly sequences: number; readonly newTokens: number };
}

export interface BenchScenario {
  readonly name: ScenarioName;
  readonly promptTokens: number;
  /** Decode steps after the prompt (the teacher-forced stream's length). */
  readonly steps: number;
  /** Index of the first step whose forward covers more than L tokens (step 0 = the prompt's forward). */
  readonly crossingStep: number;
  /** Steps the oracle was computed for (quality is measured on those after the crossing). */
  readonly oracleSteps: readonly number[];
  /** The backends that ran this plan (a slow backend may run a cheaper one of the same scenario). */
  readonly backends: readonly string[];
  /** How this plan departs from the scenario's definition and why (empty when it does not). */
  readonly adjustments: readonly string[];
}

export interface RunQuality {
  /** Largest |logit − oracle logit| over the compared steps after the crossing. */
  readonly maxAbsLogitDiff: number;
  /** Mean and max of KL(oracle ‖ policy) in nats over the same steps. */
  readonly meanKl: number;
  readonly maxKl: number;
  /** Fraction of those steps whose argmax equals the oracle's. */
  readonly top1Agreement: number;
  /** How many steps were compared. */
  readonly steps: number;
}

export interface RunCost {
  /** The prompt's forward (time to first token). */
  readonly ttftMs: number;
  /** Over the decode steps after the first token. */
  readonly medianStepMs: number;
  readonly p99StepMs: number;
  readonly maxStepMs: number;
  readonly crossingStepMs: number | null;
  /** crossingStepMs / the `stale` policy's medianStepMs (same scenario and backend). */
  readonly crossingRatio: number | null;
  /** maxStepMs / the same `stale` median. */
  readonly maxStepRatio: number | null;
  /**
   * The slowest step that is slow in most repeats: the largest over the decode steps of each
   * step's median over the repeats. A pause of the machine (another process, the host, a GC) lands
   * on some step of one repeat and counts in `maxStepMs`, not here; a policy's own work lands on
   * the same step every repeat and counts in both. Equals `maxStepMs` with one repeat.
   */
  readonly repeatableMaxStepMs: number;
  /** repeatableMaxStepMs / the same `stale` median. */
  readonly repeatableMaxStepRatio: number | null;
  /**
   * The crossing step at its fastest repeat (its floor: timing noise only adds time, and the
   * crossing is one step a repeat, so its median over a few repeats is still mostly the machine's).
   */
  readonly floorCrossingStepMs: number | null;
  /**
   * floorCrossingStepMs over `stale`'s median floor step (the median over the decode steps of each
   * step's fastest repeat): both sides without the machine's noise. The near shadow target.
   */
  readonly floorCrossingRatio: number | null;
  /**
   * The slowest step at its own cost: the largest over the decode steps of each step's fastest
   * repeat. A pause of the machine counts only if it lands on the same step in every repeat; a
   * policy's own work is in every repeat and counts in full. Equals `maxStepMs` with one repeat.
   */
  readonly floorMaxStepMs: number;
  /** floorMaxStepMs over `stale`'s median floor step (see {@link floorCrossingRatio}). The far shadow target. */
  readonly floorMaxStepRatio: number | null;
  /**
   * The policy's slowest step against `stale`'s same step: the largest over the decode steps of
   * this policy's fastest repeat at the step over `stale`'s fastest repeat at it (both run the same
   * teacher-forced stream). What every policy pays at a step (the first one after the prompt runs
   * on cold CPU caches, later ones attend to longer caches) cancels, and so does the machine's
   * noise (it only adds time): the policy's own spike. 1 for `stale`.
   */
  readonly pairedMaxStepRatio: number | null;
  /** The step (index into `series.stepMs`, 0 = the prompt's forward) where {@link pairedMaxStepRatio} is. */
  readonly pairedMaxStep: number | null;
  readonly totalMs: number;
  /** Tokens the backend processed beyond plain decoding (prompt + one per step). */
  readonly extraForwardTokens: number;
  /** Largest total byteLength of the sequence's live caches at any step (shadow copies included). */
  readonly peakCacheBytes: number;
  /** The process's largest resident set during the run (sampled at every step and every 25 ms), weights included. */
  readonly peakRssBytes: number;
}

/** min and max over the repeats. */
export interface Spread {
  readonly min: number;
  readonly max: number;
}

export interface BenchRun {
  readonly scenario: ScenarioName;
  readonly backend: string;
  readonly policy: string;
  readonly quality: RunQuality;
  readonly cost: RunCost;
  readonly spread: { readonly ttftMs: Spread; readonly medianStepMs: Spread; readonly crossingStepMs: Spread | null; readonly totalMs: Spread };
  /** Per step, for the charts: step time (ms, from the repeat with the median total) and KL to the oracle (`null` where there is no oracle). Index 0 is the prompt's forward. */
  readonly series: { readonly stepMs: readonly number[]; readonly kl: readonly (number | null)[] };
  /** Event types the policy reported, in order, with the length they happened at (`re-prefill@4097`). */
  readonly events: readonly string[];
}

/** Copy-task accuracy of one policy on the trained model, at one copy length n. */
export interface TaskRun {
  readonly backend: string;
  readonly policy: string;
  /** Symbols copied. */
  readonly n: number;
  readonly promptTokens: number;
  readonly sequences: number;
  /** Token accuracy over the copied symbols. */
  readonly tokenAccuracy: number;
  /** The same over the tokens predicted by a forward longer than L (null when the copy never crosses). */
  readonly postCrossingAccuracy: number | null;
  /** Fraction of sequences copied exactly. */
  readonly exactMatch: number;
  /** What HF transformers 4.45 reached at this n on its own 200 sequences (eval.json), for the same kind of policy. */
  readonly hf: { readonly tokenAccuracy: number; readonly postCrossingAccuracy: number | null } | null;
}

/** One side of the serve scenario: every sequence batched through one scheduler, or the same ones one at a time. */
export interface ServeSide {
  /** Wall time from the first sequence's arrival to the last one's last token. */
  readonly seconds: number;
  /** Tokens chosen by all sequences together over `seconds`. */
  readonly tokensPerSecond: number;
  /** Time per output token: the gaps between a sequence's consecutive tokens, over every sequence (median and nearest-rank p99). */
  readonly p50TokenMs: number;
  readonly p99TokenMs: number;
  /** Median time from a sequence's arrival to its first token. */
  readonly p50TtftMs: number;
  /** Tokens the backend processed, every row of every forward (a prefix taken from the cache is not run again). */
  readonly forwardTokens: number;
  /** The process's largest resident set during this side (weights, every live cache and the prefix cache included). */
  readonly peakRssBytes: number;
}

/** What the serve scenario fed, the same on every backend (it depends on the model only). */
export interface ServeShape {
  readonly sequences: number;
  /** Tokens each sequence chooses (greedy): its prompt's forward, then `newTokens − 1` decode steps. */
  readonly newTokens: number;
  /** Length of the system prompt every sequence starts with. */
  readonly systemTokens: number;
  /** Each sequence's prompt length (system prompt included), in arrival order. */
  readonly promptTokens: readonly number[];
  /** Per sequence: the first decode step whose forward covers more than L tokens (step 0 = the prompt's forward); `null` when it never crosses. */
  readonly crossingSteps: readonly (number | null)[];
  /** Per sequence: decode steps of the first sequence before it arrived (0 for the first). */
  readonly arrivals: readonly number[];
}

/**
 * The serve scenario on one backend under one policy: `sequences` sequences sharing a system
 * prompt, arriving one decode step apart, some crossing L, batched through one `BatchScheduler`
 * with a `PrefixCache`, against the same sequences run one at a time, each on a fresh `Session`
 * (no scheduler, no prefix cache).
 */
export interface ServeRun extends ServeShape {
  readonly backend: string;
  readonly policy: string;
  /**
   * Row slots of the onnxruntime export both sides ran on: `--rows-per-run` when given, else one per
   * row of the plan's fullest step (`serveRowSlots`); `null` on backends without row slots.
   */
  readonly rowSlots: number | null;
  /** batched.tokensPerSecond / solo.tokensPerSecond. */
  readonly throughputRatio: number;
  /** Whether every sequence chose the same tokens batched as alone. */
  readonly identicalToSolo: boolean;
  /** How many sequences chose other tokens batched than alone. */
  readonly differingSequences: number;
  /** Largest |logit batched − logit alone| over every sequence and step. */
  readonly maxLogitDiff: number;
  /** hits / (hits + misses) of the batched side's prefix cache; `null` when it was never asked. */
  readonly prefixHitRate: number | null;
  /** The batched side's prefix cache at the end (`PrefixCache.stats`) and its byte budget. */
  readonly prefix: PrefixCacheStats & { readonly maxBytes: number };
  readonly batched: ServeSide;
  readonly solo: ServeSide;
  /** The scheduler's counters after the batched side (`BatchScheduler.stats`). */
  readonly scheduler: BatchSchedulerStats;
  /** The larger of the two sides' peak resident sets. */
  readonly peakRssBytes: number;
  /** Events the policy reported on the batched side, counted by type (`shadow-swap: 4`). */
  readonly events: Readonly<Record<string, number>>;
}

/** A performance target from the issue, checked on this run. */
export interface TargetCheck {
  readonly name: string;
  readonly description: string;
  readonly value: number | null;
  /** The bound: `value ≤ limit` is met, or `value ≥ limit` when {@link atLeast}. */
  readonly limit: number;
  /** The target is a floor (a throughput ratio), not a ceiling. */
  readonly atLeast?: boolean;
  /** `null`: not measured, or the figure only (the target applies elsewhere). */
  readonly met: boolean | null;
  /** What the figure is set against, printed beside it (e.g. rePrefill's ratio). */
  readonly comparedWith?: string;
}

export interface BenchReport {
  readonly version: 1;
  readonly createdAt: string;
  readonly machine: BenchMachine;
  readonly model: BenchModel;
  /** L. */
  readonly threshold: number;
  readonly settings: BenchSettings;
  readonly scenarios: readonly BenchScenario[];
  readonly runs: readonly BenchRun[];
  readonly task: readonly TaskRun[];
  /** The serve scenario per (backend, policy), when `--scenarios` has it. */
  readonly serve?: readonly ServeRun[];
  readonly targets: readonly TargetCheck[];
}

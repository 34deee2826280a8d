import { type Backend, BatchScheduler, type GenerateResult, PrefixCache, generate, positionLimit, wrapBackend } from '@ropeswitch/core';
import { policyByName } from '@ropeswitch/policies';
import type { ServeRun, ServeSide } from './bench-report.js';
import { CountingBackend } from './counting-backend.js';
import { PeakRss } from './peak-rss.js';
import type { ServePlan } from './serve-plan.js';
import { median, percentile } from './statistics.js';

/** What one side of the scenario leaves to compare and summarize. */
interface SideRecord {
  readonly results: readonly GenerateResult[];
  /** Per sequence: when it arrived, and when each of its tokens was chosen (`performance.now()` ms). */
  readonly arrivedAt: readonly number[];
  readonly tokenAt: readonly (readonly number[])[];
  readonly seconds: number;
  readonly forwardTokens: number;
  readonly peakRssBytes: number;
}

/** Prompts of the warm-up's sequences at most (the scheduler's and the backend's code paths compiled before anything is timed). */
const WARM_UP_PROMPT = 16;

/**
 * Runs a few short sequences through a scheduler and one alone, so neither timed side pays for
 * first-call compilation (WebAssembly, onnxruntime's session, JIT).
 */
export async function warmUpServe(backend: Backend, policy: string): Promise<void> {
  const length = Math.max(2, Math.min(WARM_UP_PROMPT, positionLimit(backend.config) >> 2));
  const prompts = [length, length >> 1].map((n, i) => Array.from({ length: n }, (_, k) => (k * 7 + i) % backend.config.vocabSize));
  const scheduler = new BatchScheduler(wrapBackend(backend, policyByName(policy)));
  try {
    await Promise.all(
      prompts.map(async (prompt) => {
        const session = scheduler.session();
        try {
          await generate(session, prompt, { maxNewTokens: 3 });
        } finally {
          session.dispose();
        }
      }),
    );
  } finally {
    await scheduler.close();
  }
  await generate(wrapBackend(backend, policyByName(policy)), prompts[0]!, { maxNewTokens: 3 });
}

/**
 * The serve scenario under `policy`: every sequence of the plan through one {@link BatchScheduler}
 * whose sessions share a {@link PrefixCache} (sequence i arriving after i decode steps of the first),
 * then the same sequences one at a time, each generating on a fresh session over the same policy
 * (no scheduler, no prefix cache); both greedy. Reports throughput, time per output token, the
 * prefix cache's hits, the scheduler's counters and whether each sequence's tokens and logits are
 * its solo run's.
 */
export async function runServe(backend: Backend, backendName: string, rowSlots: number | null, policy: string, plan: ServePlan, progress: (label: string) => void): Promise<ServeRun> {
  const maxBytes = prefixBudget(backend, plan);
  progress('batched');
  const prefixes = new PrefixCache({ maxBytes });
  const counting = new CountingBackend(backend);
  const scheduler = new BatchScheduler(wrapBackend(counting, policyByName(policy)));
  let batched: SideRecord;
  try {
    batched = await runBatched(scheduler, prefixes, counting, plan);
  } finally {
    await scheduler.close();
  }
  const prefixStats = prefixes.stats;
  prefixes.dispose();
  progress('solo');
  const solo = await runSolo(backend, policy, plan);

  let differingSequences = 0;
  let maxLogitDiff = 0;
  batched.results.forEach((b, i) => {
    const s = solo.results[i]!;
    if (b.tokens.length !== s.tokens.length || b.tokens.some((t, k) => t !== s.tokens[k])) differingSequences++;
    maxLogitDiff = Math.max(maxLogitDiff, maxAbsDiff(b.logits, s.logits));
  });
  const asked = prefixStats.hits + prefixStats.misses;
  const events: Record<string, number> = {};
  for (const r of batched.results) for (const e of r.events) events[e.type] = (events[e.type] ?? 0) + 1;
  const batchedSide = summarize(batched);
  const soloSide = summarize(solo);
  return {
    backend: backendName,
    policy,
    rowSlots,
    sequences: plan.sequences,
    newTokens: plan.newTokens,
    systemTokens: plan.systemTokens,
    promptTokens: plan.promptTokens,
    crossingSteps: plan.crossingSteps,
    arrivals: plan.arrivals,
    throughputRatio: batchedSide.tokensPerSecond / soloSide.tokensPerSecond,
    identicalToSolo: differingSequences === 0,
    differingSequences,
    maxLogitDiff,
    prefixHitRate: asked > 0 ? prefixStats.hits / asked : null,
    prefix: { ...prefixStats, maxBytes },
    batched: batchedSide,
    solo: soloSide,
    scheduler: { ...scheduler.stats },
    peakRssBytes: Math.max(batchedSide.peakRssBytes, soloSide.peakRssBytes),
    events,
  };
}

/** Every sequence through the scheduler, each arriving once the first one has run its arrival's decode steps. */
async function runBatched(scheduler: BatchScheduler, prefixes: PrefixCache, counting: CountingBackend, plan: ServePlan): Promise<SideRecord> {
  const gates = plan.arrivals.map(() => {
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    return { opened, open };
  });
  // Sequences whose arrival step the first one has reached may start (all of them once it ends, also on failure).
  const arrive = (step: number) => plan.arrivals.forEach((a, i) => a <= step && gates[i]!.open());
  const arrivedAt = plan.arrivals.map(() => 0);
  const tokenAt = plan.arrivals.map((): number[] => []);
  counting.reset();
  const rss = new PeakRss();
  rss.start();
  const t0 = performance.now();
  try {
    arrive(0);
    const results = await Promise.all(
      plan.prompts.map(async (prompt, i) => {
        await gates[i]!.opened;
        arrivedAt[i] = performance.now();
        const session = scheduler.session({ prefixCache: prefixes });
        try {
          return await generate(session, prompt, {
            maxNewTokens: plan.newTokens,
            onToken: (_token, step) => {
              tokenAt[i]!.push(performance.now());
              if (i === 0) arrive(step);
            },
          });
        } finally {
          session.dispose();
          if (i === 0) arrive(Infinity);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return { results, arrivedAt, tokenAt, seconds, forwardTokens: counting.tokens, peakRssBytes: rss.stop() };
  } finally {
    rss.stop();
  }
}

/** The same sequences one after another, each on a fresh session over the policy, no scheduler, no prefix cache. */
async function runSolo(backend: Backend, policy: string, plan: ServePlan): Promise<SideRecord> {
  const counting = new CountingBackend(backend);
  const model = wrapBackend(counting, policyByName(policy));
  const arrivedAt: number[] = [];
  const tokenAt = plan.prompts.map((): number[] => []);
  const results: GenerateResult[] = [];
  const rss = new PeakRss();
  rss.start();
  const t0 = performance.now();
  try {
    for (const [i, prompt] of plan.prompts.entries()) {
      arrivedAt.push(performance.now());
      results.push(await generate(model, prompt, { maxNewTokens: plan.newTokens, onToken: () => tokenAt[i]!.push(performance.now()) }));
      rss.sample();
    }
    const seconds = (performance.now() - t0) / 1000;
    return { results, arrivedAt, tokenAt, seconds, forwardTokens: counting.tokens, peakRssBytes: rss.stop() };
  } finally {
    rss.stop();
  }
}

function summarize(side: SideRecord): ServeSide {
  const gaps: number[] = [];
  const ttfts: number[] = [];
  side.tokenAt.forEach((times, i) => {
    if (times.length > 0) ttfts.push(times[0]! - side.arrivedAt[i]!);
    for (let k = 1; k < times.length; k++) gaps.push(times[k]! - times[k - 1]!);
  });
  const tokens = side.results.reduce((n, r) => n + r.tokens.length, 0);
  return {
    seconds: side.seconds,
    tokensPerSecond: tokens / side.seconds,
    p50TokenMs: median(gaps),
    p99TokenMs: percentile(gaps, 0.99),
    p50TtftMs: median(ttfts),
    forwardTokens: side.forwardTokens,
    peakRssBytes: side.peakRssBytes,
  };
}

/** Largest |a − b| over the steps both have. */
function maxAbsDiff(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let max = 0;
  for (let step = 0; step < Math.min(a.length, b.length); step++) {
    const x = a[step]!;
    const y = b[step]!;
    for (let v = 0; v < x.length; v++) max = Math.max(max, Math.abs(x[v]! - y[v]!));
  }
  return max;
}

/**
 * The prefix cache's byte budget: two float32 caches of the longest sequence, so the system
 * prompt stays cached however the entries of the sequences' own prompts are evicted.
 */
function prefixBudget(backend: Backend, plan: ServePlan): number {
  const { numLayers, numKvHeads, headDim } = backend.config;
  const tokens = Math.max(...plan.promptTokens) + plan.newTokens;
  // Room for a shared prefix under both regimes (the live caches and shadowPrefill's long copies), twice.
  return 4 * (2 * numLayers * numKvHeads * headDim * Float32Array.BYTES_PER_ELEMENT * tokens);
}

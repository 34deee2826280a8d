import type { BenchRun, ScenarioName, ServeRun, TargetCheck } from './bench-report.js';
import type { MiddlewareOverhead } from './middleware-overhead.js';
import type { RerotationCost } from './rerotation-cost.js';

/** What one backend measured besides the scenario runs. */
export interface BackendMeasurements {
  readonly backend: string;
  readonly rerotation: RerotationCost | undefined;
  readonly overhead: MiddlewareOverhead | undefined;
}

/** The policy every cost ratio is taken against: a stale cache, which does no work of its own. */
export const REFERENCE_POLICY = 'stale';

/** The issues' limits. */
export const TARGET_LIMITS = Object.freeze({
  shadowNearCrossingRatio: 1.5,
  /** On an attention-bound model (builtin) a shadow chunk costs about its tokens' attention: the cost model's floor is ≈ 2.2. Checked on `floorMaxStepRatio`. */
  shadowFarMaxStepRatio: 2.5,
  /** At the shape users run (hidden ≥ 2048: Phi-3-mini and up) a step reads gigabytes of weights, so a shadow chunk batched with it should be nearly free. */
  realShapeShadowNearCrossingRatio: 1.2,
  realShapeShadowFarMaxStepRatio: 1.5,
  rerotateCrossingShare: 0.01,
  rotationPerCopy: 3,
  middlewareOverhead: 0.01,
  /** Batched over one-at-a-time tokens/s of the serve scenario, at {@link SERVE_TARGET_SEQUENCES} sequences on onnxruntime at the real shape: a floor. */
  serveThroughputRatio: 3,
});

/** Sequences at which the serve throughput target is set. */
export const SERVE_TARGET_SEQUENCES = 8;
/** The backend the serve throughput target is set for (native GEMMs: an 8-row step costs little more than a 1-row one). */
export const SERVE_TARGET_BACKEND = 'onnxruntime';

/** Hidden sizes from which a model counts as the real shape for the shadow targets. */
export const REAL_SHAPE_HIDDEN = 2048;

/** shadow-prefill's target in each scenario: the cost ratio where its work shows, set against re-prefill's. */
function shadowTargets(realShape: boolean): readonly { scenario: ScenarioName; ratio: 'floorCrossingRatio' | 'floorMaxStepRatio'; limit: number; description: string }[] {
  const shape = realShape ? ' (at the real shape)' : '';
  return [
    // Both take every step at its fastest repeat, stale's steps too: the policy's work against a
    // plain step's, not the machine's pauses (a raw maximum over thousands of sub-ms steps fails a
    // stale cache too, which does nothing).
    {
      scenario: 'near',
      ratio: 'floorCrossingRatio',
      limit: realShape ? TARGET_LIMITS.realShapeShadowNearCrossingRatio : TARGET_LIMITS.shadowNearCrossingRatio,
      description: `near: shadow-prefill's crossing step over stale's median step, each at its fastest repeat (its work moves to the prompt and the steps before)${shape}`,
    },
    {
      scenario: 'far',
      ratio: 'floorMaxStepRatio',
      limit: realShape ? TARGET_LIMITS.realShapeShadowFarMaxStepRatio : TARGET_LIMITS.shadowFarMaxStepRatio,
      description: `far: shadow-prefill's slowest decode step over stale's median step, each step at its fastest repeat (its work spread over the window)${shape}`,
    },
  ];
}

const fixed = (x: number | null | undefined, digits = 2): string => (x === null || x === undefined ? '–' : x.toFixed(digits));

function check(name: string, description: string, value: number | null | undefined, limit: number, comparedWith?: string): TargetCheck {
  const v = value === undefined || value === null || !Number.isFinite(value) ? null : value;
  return { name, description, value: v, limit, met: v === null ? null : v <= limit, ...(comparedWith !== undefined ? { comparedWith } : {}) };
}

/**
 * The performance targets, checked on this run's figures: a target whose policy or scenario did
 * not run has `value: null, met: null`. Backend names are added to the target names when several ran.
 * Models of `hiddenSize` ≥ {@link REAL_SHAPE_HIDDEN} get the stricter shadow limits of the real shape.
 */
export function checkTargets(runs: readonly BenchRun[], measured: readonly BackendMeasurements[], scenarios: readonly ScenarioName[], hiddenSize = 0): TargetCheck[] {
  const SHADOW_TARGETS = shadowTargets(hiddenSize >= REAL_SHAPE_HIDDEN);
  const out: TargetCheck[] = [];
  const several = measured.length > 1;
  for (const { backend, rerotation, overhead } of measured) {
    const tag = several ? ` [${backend}]` : '';
    const run = (scenario: ScenarioName, policy: string) => runs.find((r) => r.backend === backend && r.scenario === scenario && r.policy === policy);
    for (const { scenario, ratio, limit, description } of SHADOW_TARGETS) {
      if (!scenarios.includes(scenario)) continue;
      const shadow = run(scenario, 'shadow-prefill')?.cost;
      const staleCost = run(scenario, REFERENCE_POLICY)?.cost;
      // Beside it, the medians over the repeats (with the machine's noise) and, for a slowest step, stale's own and the policy's against stale's same step.
      const context =
        ratio === 'floorMaxStepRatio'
          ? `; raw max ${fixed(shadow?.maxStepRatio)}; stale's own ${fixed(staleCost?.floorMaxStepRatio)} (raw ${fixed(staleCost?.maxStepRatio)}); × stale's same step ${fixed(shadow?.pairedMaxStepRatio)}${shadow?.pairedMaxStep != null ? ` at step ${shadow.pairedMaxStep}` : ''}`
          : `; median over the repeats ${fixed(shadow?.crossingRatio)}`;
      out.push(check(`shadow-prefill ${scenario} ${ratio}${tag}`, description, shadow?.[ratio], limit, `re-prefill ${fixed(run(scenario, 're-prefill')?.cost[ratio], 1)}${context}`));
    }
    for (const scenario of scenarios) {
      const rotated = run(scenario, 'rerotate')?.cost.crossingStepMs;
      const rebuilt = run(scenario, 're-prefill')?.cost.crossingStepMs;
      const share = rotated != null && rebuilt != null && rebuilt > 0 ? rotated / rebuilt : null;
      out.push(
        check(
          `rerotate ${scenario} crossing / re-prefill crossing${tag}`,
          `${scenario}: rerotate's crossing step (${fixed(rotated)} ms) as a share of re-prefill's (${fixed(rebuilt)} ms)`,
          share,
          TARGET_LIMITS.rerotateCrossingShare,
        ),
      );
    }
    out.push(
      check(
        `rerotation / key copy${tag}`,
        rerotation
          ? `rotating every cached key of a ${rerotation.tokens}-token cache (median ${fixed(rerotation.rotateMs, 3)} ms of ${rerotation.rotations}, first ${fixed(rerotation.firstRotateMs, 3)} ms) over copying those keys once (${fixed(rerotation.copyMs, 3)} ms)`
          : 'rotating every cached key over copying them once (not measured: the backend keeps its cache off the CPU)',
        rerotation ? rerotation.rotateMs / rerotation.copyMs : null,
        TARGET_LIMITS.rotationPerCopy,
      ),
    );
    out.push(
      check(
        `middleware overhead${tag}`,
        overhead
          ? `a stale()-wrapped backend's median decode step (${fixed(overhead.wrappedMs, 3)} ms) over the bare backend's (${fixed(overhead.bareMs, 3)} ms), ${overhead.steps} alternating steps each from ${overhead.cacheTokens} cached tokens, below the threshold; as a fraction`
          : 'a stale()-wrapped backend over the bare backend on decode steps below the threshold (not measured)',
        overhead?.overhead,
        TARGET_LIMITS.middlewareOverhead,
      ),
    );
  }
  return out;
}

/**
 * The serve scenario's targets, per (backend, policy): every sequence's tokens equal its solo run
 * (the count of those that differ, at most 0), and the throughput ratio, a floor of 3 at 8
 * sequences on onnxruntime at the real shape (hidden ≥ {@link REAL_SHAPE_HIDDEN}); elsewhere the
 * ratio is listed as the figure only (`met: null`).
 */
export function checkServeTargets(serve: readonly ServeRun[], hiddenSize: number): TargetCheck[] {
  const out: TargetCheck[] = [];
  const backends = new Set(serve.map((s) => s.backend));
  const policies = new Set(serve.map((s) => s.policy));
  for (const run of serve) {
    const tags = [...(backends.size > 1 ? [run.backend] : []), ...(policies.size > 1 ? [run.policy] : [])];
    const tag = tags.length > 0 ? ` [${tags.join(', ')}]` : '';
    out.push(
      check(
        `serve identical to solo${tag}`,
        `serve: sequences (of ${run.sequences}) whose tokens batched differ from their solo run; max |Δlogit| ${run.maxLogitDiff.toExponential(1)}`,
        run.differingSequences,
        0,
      ),
    );
    const applies = run.backend === SERVE_TARGET_BACKEND && run.sequences === SERVE_TARGET_SEQUENCES && hiddenSize >= REAL_SHAPE_HIDDEN;
    const value = Number.isFinite(run.throughputRatio) ? run.throughputRatio : null;
    out.push({
      name: `serve throughputRatio${tag}`,
      description:
        `serve: tokens/s of ${run.sequences} sequences batched (${fixed(run.batched.tokensPerSecond, 1)}) over the same one at a time (${fixed(run.solo.tokensPerSecond, 1)})` +
        (applies ? '' : `; the target is set at ${SERVE_TARGET_SEQUENCES} sequences on ${SERVE_TARGET_BACKEND} at hidden ≥ ${REAL_SHAPE_HIDDEN}: here the figure only`),
      value,
      limit: TARGET_LIMITS.serveThroughputRatio,
      atLeast: true,
      met: applies && value !== null ? value >= TARGET_LIMITS.serveThroughputRatio : null,
      comparedWith: `prefix hit rate ${run.prefixHitRate === null ? '–' : `${(run.prefixHitRate * 100).toFixed(0)}%`}, ${run.scheduler.steps} steps for ${run.scheduler.forwards} forwards`,
    });
  }
  return out;
}

import type { BenchRun, ScenarioName, TargetCheck } from './bench-report.js';
import type { MiddlewareOverhead } from './middleware-overhead.js';
import type { RerotationCost } from './rerotation-cost.js';

/** What one backend measured besides the scenario runs. */
export interface BackendMeasurements {
  readonly backend: string;
  readonly rerotation: RerotationCost | undefined;
  readonly overhead: MiddlewareOverhead | undefined;
}

/** The limits. */
export const TARGET_LIMITS = Object.freeze({
  shadowNearCrossingRatio: 1.5,
  shadowFarMaxStepRatio: 2.0,
  rerotateCrossingShare: 0.01,
  rotationPerCopy: 3,
  middlewareOverhead: 0.01,
});

/** shadow-prefill's target in each scenario: the cost ratio where its work shows, set against re-prefill's. */
const SHADOW_TARGETS: readonly { scenario: ScenarioName; ratio: 'crossingRatio' | 'maxStepRatio'; limit: number; description: string }[] = [
  {
    scenario: 'near',
    ratio: 'crossingRatio',
    limit: TARGET_LIMITS.shadowNearCrossingRatio,
    description: "near: shadow-prefill's crossing step over stale's median step (its work moves to the prompt and the steps before)",
  },
  {
    scenario: 'far',
    ratio: 'maxStepRatio',
    limit: TARGET_LIMITS.shadowFarMaxStepRatio,
    description: "far: shadow-prefill's slowest decode step over stale's median step (its work spread over the window)",
  },
];

const fixed = (x: number | null | undefined, digits = 2): string => (x === null || x === undefined ? '–' : x.toFixed(digits));

function check(name: string, description: string, value: number | null | undefined, limit: number, comparedWith?: string): TargetCheck {
  const v = value === undefined || value === null || !Number.isFinite(value) ? null : value;
  return { name, description, value: v, limit, met: v === null ? null : v <= limit, ...(comparedWith !== undefined ? { comparedWith } : {}) };
}

/**
 * The performance targets, checked on this run's figures: a target whose policy or scenario did
 * not run has `value: null, met: null`. Backend names are added to the target names when several ran.
 */
export function checkTargets(runs: readonly BenchRun[], measured: readonly BackendMeasurements[], scenarios: readonly ScenarioName[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const several = measured.length > 1;
  for (const { backend, rerotation, overhead } of measured) {
    const tag = several ? ` [${backend}]` : '';
    const run = (scenario: ScenarioName, policy: string) => runs.find((r) => r.backend === backend && r.scenario === scenario && r.policy === policy);
    for (const { scenario, ratio, limit, description } of SHADOW_TARGETS) {
      if (!scenarios.includes(scenario)) continue;
      out.push(
        check(
          `shadow-prefill ${scenario} ${ratio}${tag}`,
          description,
          run(scenario, 'shadow-prefill')?.cost[ratio],
          limit,
          `re-prefill ${fixed(run(scenario, 're-prefill')?.cost[ratio], 1)}`,
        ),
      );
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

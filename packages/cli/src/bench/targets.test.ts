import { describe, expect, it } from 'vitest';
import type { BenchRun, RunCost } from './bench-report.js';
import { TARGET_LIMITS, checkTargets } from './targets.js';

/** A run with only its cost figures set (the rest is not read by the targets). */
function run(scenario: 'near' | 'far', policy: string, cost: Partial<RunCost>): BenchRun {
  const base: RunCost = {
    ttftMs: 10,
    medianStepMs: 1,
    p99StepMs: 1,
    maxStepMs: 1,
    crossingStepMs: 1,
    crossingRatio: 1,
    maxStepRatio: 1,
    repeatableMaxStepMs: 1,
    repeatableMaxStepRatio: 1,
    floorCrossingStepMs: 1,
    floorCrossingRatio: 1,
    floorMaxStepMs: 1,
    floorMaxStepRatio: 1,
    pairedMaxStepRatio: 1,
    pairedMaxStep: 1,
    totalMs: 100,
    extraForwardTokens: 0,
    peakCacheBytes: 0,
    peakRssBytes: 0,
  };
  return {
    scenario,
    backend: 'reference',
    policy,
    quality: { maxAbsLogitDiff: 0, meanKl: 0, maxKl: 0, top1Agreement: 1, steps: 1 },
    cost: { ...base, ...cost },
    spread: { ttftMs: { min: 1, max: 1 }, medianStepMs: { min: 1, max: 1 }, crossingStepMs: null, totalMs: { min: 1, max: 1 } },
    series: { stepMs: [], kl: [] },
    events: [],
  };
}

const farRun = (policy: string, cost: Partial<RunCost>) => run('far', policy, cost);
const measured = [{ backend: 'reference', rerotation: undefined, overhead: undefined }];
const farTarget = (runs: BenchRun[], hiddenSize = 64) => checkTargets(runs, measured, ['far'], hiddenSize).find((t) => t.name.startsWith('shadow-prefill far'))!;
const nearTarget = (runs: BenchRun[]) => checkTargets(runs, measured, ['near']).find((t) => t.name.startsWith('shadow-prefill near'))!;

describe('the far shadow target', () => {
  it('is checked on the slowest step at its fastest repeat, with the raw maximum and stale’s own beside it', () => {
    // A pause of the machine in every repeat's raw maximum (stale fails a raw 2.5 too), the policy's work at 2.3.
    const runs = [farRun('stale', { maxStepRatio: 5.1, floorMaxStepRatio: 1.4 }), farRun('shadow-prefill', { maxStepRatio: 8.2, floorMaxStepRatio: 2.3, pairedMaxStepRatio: 2.1, pairedMaxStep: 184 })];
    const t = farTarget(runs);
    expect(t.name).toBe('shadow-prefill far floorMaxStepRatio');
    expect(t).toMatchObject({ value: 2.3, limit: TARGET_LIMITS.shadowFarMaxStepRatio, met: true });
    expect(t.comparedWith).toBe("re-prefill –; raw max 8.20; stale's own 1.40 (raw 5.10); × stale's same step 2.10 at step 184");
  });

  it('fails where the policy’s own work is over the limit, whatever the raw maximum', () => {
    const t = farTarget([farRun('stale', {}), farRun('shadow-prefill', { maxStepRatio: 2.4, floorMaxStepRatio: 2.6 })]);
    expect(t).toMatchObject({ value: 2.6, met: false });
  });

  it('takes the real shape’s limit from hidden 2048, and is null without a shadow run', () => {
    const real = farTarget([farRun('stale', {}), farRun('shadow-prefill', { floorMaxStepRatio: 1.6 })], 3072);
    expect(real).toMatchObject({ value: 1.6, limit: TARGET_LIMITS.realShapeShadowFarMaxStepRatio, met: false });
    expect(farTarget([farRun('stale', {})])).toMatchObject({ value: null, met: null });
  });
});

describe('the near shadow target', () => {
  it('is checked on the crossing step at its fastest repeat, with the median over the repeats beside it', () => {
    const runs = [run('near', 'stale', {}), run('near', 'shadow-prefill', { crossingRatio: 1.7, floorCrossingRatio: 1.3 }), run('near', 're-prefill', { floorCrossingRatio: 380 })];
    const t = nearTarget(runs);
    expect(t).toMatchObject({ name: 'shadow-prefill near floorCrossingRatio', value: 1.3, limit: TARGET_LIMITS.shadowNearCrossingRatio, met: true });
    expect(t.comparedWith).toBe('re-prefill 380.0; median over the repeats 1.70');
    expect(nearTarget([run('near', 'stale', {}), run('near', 'shadow-prefill', { crossingRatio: 1.4, floorCrossingRatio: 1.6 })])).toMatchObject({ value: 1.6, met: false });
  });
});

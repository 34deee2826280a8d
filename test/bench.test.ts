import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { POLICY_NAMES } from '@ropeswitch/policies';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BenchReport, BUILTIN_MODEL, builtinModelDir, createProgress, tinyModelConfig } from '../packages/cli/src/index.js';
import { hfDir } from './support/fixtures.js';
import { type CliRun, runCli } from './support/run-cli.js';

// `ropeswitch bench --quick` in-process (the L = 256 built-in model, one timed repeat, 10 copy
// sequences per n): the files, the report's shape, what exact and stale policies must show against
// the oracle, the cost counters, the copy-task table, and usage errors. Timings on a shared CI
// machine are noisy: only differences of an order of magnitude are checked.

const EXACT = ['re-prefill', 'shadow-prefill', 'pre-estimate'] as const;
const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-bench-test-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(async () => {
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
});

let out: string;
let quick: CliRun;
let report: BenchReport;
beforeAll(async () => {
  out = await tempDir();
  quick = await runCli(['bench', '--quick', '--out', out]);
  report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as BenchReport;
}, 120_000);

const runOf = (scenario: string, policy: string) => {
  const r = report.runs.find((x) => x.scenario === scenario && x.policy === policy && x.backend === 'reference');
  expect(r, `${scenario} ${policy}`).toBeDefined();
  return r!;
};

describe('ropeswitch bench --quick', () => {
  it('exits 0, writes report.json, report.md and report.html, and prints report.md', async () => {
    expect(quick.code, quick.stderr).toBe(0);
    const md = await readFile(join(out, 'report.md'), 'utf8');
    expect(quick.stdout).toBe(md);
    const html = await readFile(join(out, 'report.html'), 'utf8');
    expect(html).toMatch(/^<!doctype html>/i);
  });

  it('prints the copy-task table first', () => {
    const sections = quick.stdout.split('\n').filter((line) => line.startsWith('## '));
    expect(sections[0]).toMatch(/copy task/i);
    const firstTable = quick.stdout.split('\n').find((line) => line.startsWith('|'));
    expect(firstTable).toMatch(/token acc/);
  });

  it('reports progress as plain lines on stderr when it is not a terminal', () => {
    expect(quick.stderr).toMatch(/^bench: \[1\/\d+\] reference: speed on this model/);
    expect(quick.stderr).toMatch(/\nbench: \[2\/\d+\] near\/reference: warm-up\n/);
    // At L = 256 every run is cheap: each policy but stale runs the plan eight times untimed first.
    expect(quick.stderr).toMatch(/\nbench: \[\d+\/\d+\] near\/reference: warm-up of the policies \(warn-only ×8, re-prefill ×8, rerotate ×8, pre-estimate ×8, shadow-prefill ×8\)\n/);
    expect(quick.stderr).not.toContain('\r');
    expect(quick.stderr).toContain(`bench: wrote ${join(out, 'report.json')}`);
  });

  it('report.json: the model, L, the settings, and both scenarios crossing L', () => {
    expect(report.version).toBe(1);
    expect(report.model).toMatchObject({ name: 'builtin', family: 'phi3', ropeType: 'longrope', hiddenSize: 64, numLayers: 2 });
    expect(report.threshold).toBe(256);
    expect(report.settings).toMatchObject({ backends: ['reference'], scenarios: ['near', 'far'], newTokens: 16, repeats: 1, quick: true });
    expect(report.settings.policies).toEqual([...POLICY_NAMES]);
    const [near, far] = report.scenarios;
    expect(near).toMatchObject({ name: 'near', promptTokens: 250, crossingStep: 7, steps: 22 });
    expect(far).toMatchObject({ name: 'far', promptTokens: 128, crossingStep: 129, steps: 144 });
    for (const s of report.scenarios) {
      expect(s.promptTokens + s.crossingStep).toBe(report.threshold + 1);
      expect(s.oracleSteps.filter((step) => step >= s.crossingStep)).toHaveLength(16);
    }
  });

  it('has a run for every policy × scenario, with every figure and a per-step series', () => {
    expect(report.runs).toHaveLength(POLICY_NAMES.length * 2);
    for (const scenario of report.scenarios) {
      for (const policy of POLICY_NAMES) {
        const r = runOf(scenario.name, policy);
        for (const value of [...Object.values(r.quality), ...Object.values(r.cost)]) expect(Number.isFinite(value), `${policy}: ${String(value)}`).toBe(true);
        expect(r.quality.steps).toBe(16);
        expect(r.series.stepMs).toHaveLength(scenario.steps + 1);
        expect(r.series.kl).toHaveLength(scenario.steps + 1);
        scenario.oracleSteps.forEach((step) => expect(r.series.kl[step]).toBeTypeOf('number'));
        expect(r.series.kl.filter((k) => k !== null)).toHaveLength(scenario.oracleSteps.length);
        expect(r.spread.ttftMs.min).toBeLessThanOrEqual(r.spread.ttftMs.max);
      }
    }
  });

  it('exact policies match the no-cache oracle after the crossing: max |Δlogit| ≤ 1e-4, top-1 agreement 1', () => {
    for (const scenario of ['near', 'far']) {
      for (const policy of EXACT) {
        const { quality } = runOf(scenario, policy);
        expect(quality.maxAbsLogitDiff, `${scenario} ${policy}`).toBeLessThanOrEqual(1e-4);
        expect(quality.top1Agreement).toBe(1);
        expect(quality.meanKl).toBeLessThan(1e-6);
      }
    }
  });

  it("a stale cache drifts from the oracle (KL above re-prefill's), and warn-only's logits are stale's", () => {
    for (const scenario of ['near', 'far']) {
      const stale = runOf(scenario, 'stale').quality;
      expect(stale.meanKl).toBeGreaterThan(runOf(scenario, 're-prefill').quality.meanKl + 0.1);
      expect(stale.top1Agreement).toBeLessThan(1);
      expect(runOf(scenario, 'warn-only').quality).toEqual(stale);
    }
  });

  it("re-prefill's crossing step costs a prefill: many times its median step", () => {
    for (const scenario of ['near', 'far']) {
      const { cost } = runOf(scenario, 're-prefill');
      expect(cost.crossingStepMs!).toBeGreaterThan(10 * cost.medianStepMs);
      expect(cost.crossingRatio).toBeCloseTo(cost.crossingStepMs! / runOf(scenario, 'stale').cost.medianStepMs, 6);
    }
  });

  it("the slowest step against stale's same step: 1 for stale, re-prefill's at its crossing", () => {
    for (const scenario of ['near', 'far']) {
      const stale = runOf(scenario, 'stale').cost;
      expect(stale.pairedMaxStepRatio).toBe(1);
      const rebuilt = runOf(scenario, 're-prefill');
      // The crossing step holds a whole prefill: many times stale's same step (--quick runs one repeat, so the series are the repeats).
      const crossing = report.scenarios.find((s) => s.name === scenario)!.crossingStep;
      const atCrossing = rebuilt.series.stepMs[crossing]! / runOf(scenario, 'stale').series.stepMs[crossing]!;
      expect(atCrossing).toBeGreaterThan(10);
      // The series are rounded to 0.1 µs, a few per mille of a 0.05 ms step: equal within 2 %.
      expect(rebuilt.cost.pairedMaxStepRatio!).toBeGreaterThanOrEqual(atCrossing * 0.98);
      const at = rebuilt.cost.pairedMaxStep!;
      const there = rebuilt.series.stepMs[at]! / runOf(scenario, 'stale').series.stepMs[at]!;
      expect(Math.abs(rebuilt.cost.pairedMaxStepRatio! / there - 1)).toBeLessThan(0.02);
    }
    // One timed repeat (--quick): every step's fastest repeat is that repeat, so the floor max is the max.
    for (const run of report.runs) {
      expect(run.cost.floorMaxStepMs, `${run.scenario} ${run.policy}`).toBe(run.cost.maxStepMs);
      expect(run.cost.floorCrossingStepMs).toBe(run.cost.crossingStepMs);
    }
    expect(report.targets.find((t) => t.name === 'shadow-prefill far floorMaxStepRatio')!.value).toBe(runOf('far', 'shadow-prefill').cost.floorMaxStepRatio);
    expect(report.targets.find((t) => t.name === 'shadow-prefill far floorMaxStepRatio')!.comparedWith).toMatch(
      /^re-prefill \d+\.\d; raw max \d+\.\d\d; stale's own \d+\.\d\d \(raw \d+\.\d\d\); × stale's same step \d+\.\d\d at step \d+$/,
    );
  });

  it('counts extra forward tokens and peak cache bytes under the policy chain', () => {
    for (const scenario of ['near', 'far']) {
      for (const policy of ['stale', 'warn-only', 'rerotate', 'pre-estimate']) expect(runOf(scenario, policy).cost.extraForwardTokens).toBe(0);
      // Both recompute the L cached tokens under the long regime, once.
      expect(runOf(scenario, 're-prefill').cost.extraForwardTokens).toBe(report.threshold);
      expect(runOf(scenario, 'shadow-prefill').cost.extraForwardTokens).toBe(report.threshold);
      expect(runOf(scenario, 'shadow-prefill').cost.peakCacheBytes).toBeGreaterThan(runOf(scenario, 'stale').cost.peakCacheBytes);
      expect(runOf(scenario, 'stale').cost.peakCacheBytes).toBeGreaterThan(0);
    }
  });

  it('reports the events of each policy with the length they happened at', () => {
    expect(runOf('near', 'stale').events).toEqual([]);
    expect(runOf('near', 're-prefill').events).toEqual(['re-prefill@257']);
    expect(runOf('near', 'rerotate').events).toEqual(['rerotate@257']);
    expect(runOf('near', 'warn-only').events).toEqual(['rope-regime-change@257']);
    expect(runOf('far', 'shadow-prefill').events.map((e) => e.split('@')[0])).toEqual(['shadow-start', 'shadow-swap']);
  });

  it('the copy task: every policy at n = 40, 50, 60; re-prefill copies, stale collapses after the crossing; HF figures beside', () => {
    expect(report.task).toHaveLength(POLICY_NAMES.length * 3);
    for (const policy of POLICY_NAMES) {
      for (const n of [40, 50, 60]) {
        const t = report.task.find((x) => x.policy === policy && x.n === n);
        expect(t, `${policy} n=${n}`).toMatchObject({ backend: 'reference', promptTokens: n + 2, sequences: 10 });
        expect(t!.hf?.tokenAccuracy).toBeTypeOf('number');
      }
    }
    for (const t of report.task) {
      if (t.policy === 're-prefill' || t.policy === 'shadow-prefill') expect(t.tokenAccuracy).toBeGreaterThanOrEqual(0.99);
      if (t.policy === 'stale') expect(t.postCrossingAccuracy!).toBeLessThan(0.2);
    }
    const hfStale = report.task.find((x) => x.policy === 'stale' && x.n === 60)!.hf!;
    expect(hfStale.tokenAccuracy).toBeCloseTo(0.0759, 4);
    expect(report.task.find((x) => x.policy === 'rerotate' && x.n === 40)!.hf!.tokenAccuracy).toBeCloseTo(0.6644, 4);
  });

  it('checks each performance target: a value or null, its limit, and met = value ≤ limit', () => {
    const names = report.targets.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['shadow-prefill near floorCrossingRatio', 'shadow-prefill far floorMaxStepRatio', 'rerotation / key copy', 'middleware overhead']));
    for (const t of report.targets) {
      expect(t.value, t.name).toBeTypeOf('number');
      expect(t.met).toBe(t.value! <= t.limit);
    }
    expect(report.targets.find((t) => t.name === 'shadow-prefill near floorCrossingRatio')!.comparedWith).toMatch(/^re-prefill \d/);
  });
});

describe('ropeswitch bench: the size of what ran', () => {
  it("states the model's size, the budget, which backends ran each plan, and each run's peak RSS beside its peak cache", () => {
    expect(report.model.weightBytes).toBe(4 * report.model.parameters);
    expect(report.model.checkpointBytes).toBe(4 * report.model.parameters); // make-tiny writes float32
    expect(report.model.parameters).toBeGreaterThan(2 * 128 * 64);
    expect(report.settings.budgetMinutes).toBe(20);
    expect(report.settings.backendFlags).toBeUndefined(); // no backend flag given
    for (const s of report.scenarios) expect(s).toMatchObject({ backends: ['reference'], adjustments: [] });
    for (const r of report.runs) {
      expect(r.cost.peakRssBytes, `${r.scenario} ${r.policy}`).toBeGreaterThan(r.cost.peakCacheBytes);
      expect(r.cost.peakRssBytes).toBeLessThan(8e9);
    }
    expect(quick.stdout).toMatch(/\| peak cache \| peak RSS \|/);
    expect(quick.stdout).toMatch(/- size: [\d,]+ parameters; /);
  });
});

describe('ropeswitch bench, other models and options', () => {
  it('a scenario estimated over --budget-minutes: far brought nearer L, the shadow spread over the steps left, exact policies still exact, the report saying so', async () => {
    const dir = await tempDir();
    const r = await runCli(['bench', '--model', 'builtin', '--scenarios', 'far', '--policies', 're-prefill,shadow-prefill', '--repeats', '1', '--no-task', '--budget-minutes', '0.0001', '--threads', '1', '--out', dir]);
    expect(r.code, r.stderr).toBe(0);
    const small = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as BenchReport;
    expect(small.settings.backendFlags).toEqual({ threads: 1 });
    expect(r.stdout).toContain('- backend flags: threads 1');
    const [far] = small.scenarios;
    expect(far!.promptTokens).toBe(4096 - 128);
    expect(far!.crossingStep).toBe(129);
    expect(far!.oracleSteps[0]).toBe(far!.crossingStep);
    expect(far!.adjustments.join(' ')).toMatch(/shortened: a prompt of 3968 tokens \(L − 128\)/);
    expect(r.stdout).toContain('adjusted: ');
    const shadow = small.runs.find((x) => x.policy === 'shadow-prefill')!;
    // Started at the first decode step, not with the prompt: spread over the 128 steps.
    expect(shadow.events[0]).toBe('shadow-start@3969');
    for (const policy of ['re-prefill', 'shadow-prefill']) {
      const q = small.runs.find((x) => x.policy === policy)!.quality;
      expect(q.maxAbsLogitDiff, policy).toBeLessThanOrEqual(1e-4);
      expect(q.steps).toBe(16);
    }
  });

  it('--budget-minutes takes a non-negative number', async () => {
    const r = await runCli(['bench', '--quick', '--budget-minutes', 'soon']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--budget-minutes must be a number/);
  });

  it('always runs stale (the reference of every ratio) and only the scenarios asked', async () => {
    const dir = await tempDir();
    const r = await runCli(['bench', '--quick', '--scenarios', 'near', '--policies', 're-prefill', '--no-task', '--new-tokens', '4', '--out', dir]);
    expect(r.code, r.stderr).toBe(0);
    const small = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as BenchReport;
    expect(small.settings.policies).toEqual(['stale', 're-prefill']);
    expect(small.runs.map((x) => `${x.scenario} ${x.policy}`)).toEqual(['near stale', 'near re-prefill']);
    expect(small.task).toEqual([]);
    expect(small.scenarios[0]!.steps).toBe(6 + 4);
  });

  it('dynamic NTK (a regime per length): a sparse oracle, re-prefill exact at every compared step', async () => {
    const dir = await tempDir();
    const r = await runCli(['bench', '--model', `${hfDir}seed4-llama-dynamic`, '--quick', '--no-task', '--policies', 're-prefill,shadow-prefill', '--out', dir]);
    expect(r.code, r.stderr).toBe(0);
    const dyn = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as BenchReport;
    expect(dyn.model.ropeType).toBe('dynamic');
    expect(dyn.threshold).toBe(32);
    for (const s of dyn.scenarios) expect(s.oracleSteps.length).toBeLessThanOrEqual(24);
    for (const x of dyn.runs.filter((y) => y.policy !== 'stale')) expect(x.quality.maxAbsLogitDiff, `${x.scenario} ${x.policy}`).toBeLessThanOrEqual(1e-4);
  });

  it('--model builtin is generated once into the temp folder and reused (Phi-3 threshold for generate/logits)', async () => {
    const dir = await builtinModelDir(BUILTIN_MODEL);
    expect(await builtinModelDir(BUILTIN_MODEL)).toBe(dir);
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { original_max_position_embeddings: number; max_position_embeddings: number };
    expect(config).toMatchObject({ original_max_position_embeddings: 4096, max_position_embeddings: 131072 });
    const r = await runCli(['logits', '--model', 'builtin', '--ids', '1,2,3']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { logits: number[][] }).logits[0]).toHaveLength(128);
  });

  it('the progress bar redraws one line on a terminal and clears it at the end', () => {
    let text = '';
    const progress = createProgress((t) => (text += t), true);
    progress.start(2);
    progress.step('first');
    progress.step('second');
    progress.finish();
    expect(text).not.toContain('\n');
    expect(text).toContain('] 2/2 ');
    expect(text.endsWith('\r\x1b[K')).toBe(true);
  });
});

describe('ropeswitch bench usage errors (exit 2, one line, nothing run)', () => {
  const cases: [string, string[], RegExp][] = [
    ['an unknown policy', ['--policies', 'stale,bogus'], /--policies must be a comma-separated list of stale, warn-only/],
    ['an unknown scenario', ['--scenarios', 'near,middle'], /--scenarios must be a comma-separated list of near, far/],
    ['an unknown backend', ['--backends', 'cuda'], /--backends must be a comma-separated list of reference/],
    ['zero new tokens', ['--new-tokens', '0'], /--new-tokens must be an integer in \[1, 4096\]/],
    ['zero repeats', ['--repeats', '0'], /--repeats must be an integer in \[1, 100\]/],
    ['a bad sequence count', ['--task-sequences', 'many'], /--task-sequences must be an integer/],
    ['--no-task with --task-sequences', ['--no-task', '--task-sequences', '5'], /exclude each other/],
    ['an unknown option', ['--fast'], /bench: Unknown option '--fast'/],
    ['a positional argument', ['near'], /bench: /],
    ['more new tokens than the model has positions', ['--model', 'trained', '--new-tokens', '500'], /runs past the model's 256 positions \(L = 64\); use at most 192/],
  ];
  it.each(cases)('%s', async (_what, args, message) => {
    const r = await runCli(['bench', ...args]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^ropeswitch: [^\n]+\n$/);
    expect(r.stderr).toMatch(message);
  });

  it('a model whose RoPE never changes', async () => {
    const dir = await tempDir();
    const config = tinyModelConfig();
    delete config.rope_scaling;
    delete config.original_max_position_embeddings;
    await writeFile(join(dir, 'config.json'), JSON.stringify(config));
    const r = await runCli(['bench', '--model', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ropeswitch: bench: the model's RoPE \(default\) never changes with the length/);
  });

  it('--help lists the bench command', async () => {
    const r = await runCli(['--help']);
    expect(r.stdout).toContain('ropeswitch bench [--model DIR|builtin|trained]');
  });
});

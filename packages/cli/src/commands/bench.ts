import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { modelSchedule, loadModelConfig, positionLimit } from '@ropeswitch/core';
import { POLICY_NAMES } from '@ropeswitch/policies';
import { intOption, numberOption, parseOptions, quoted } from '../args.js';
import { BACKEND_FLAGS, BACKEND_FLAGS_USAGE, backendSettings } from '../backend-flags.js';
import { BACKEND_NAMES, type BackendName, resolveModelDir } from '../backends.js';
import type { BenchReport, BenchScenarioName } from '../bench/bench-report.js';
import { createProgress } from '../bench/progress.js';
import { renderHtml } from '../bench/report-html.js';
import { renderMarkdown } from '../bench/report-markdown.js';
import { runBench } from '../bench/run-bench.js';
import { BENCH_SCENARIO_NAMES, NEAR_MARGIN, SCENARIO_NAMES } from '../bench/scenario-plan.js';
import { MAX_SERVE_SEQUENCES, MIN_SERVE_NEW_TOKENS, SERVE_DEFAULTS, servePlanProblem } from '../bench/serve-plan.js';
import type { CommandIO } from '../io.js';
import { UsageError } from '../usage-error.js';

export const benchUsage =
  `ropeswitch bench [--model DIR|builtin|trained] [--backends reference,onnxruntime,webgpu] [--policies all|a,b] [--scenarios near,far,serve] [--new-tokens N] [--repeats R] [--quick] [--out DIR] [--task-sequences N] [--no-task] [--budget-minutes M] [--serve-sequences N] [--serve-new-tokens T] ${BACKEND_FLAGS_USAGE}`;

/** Defaults of a full run and of `--quick` (which also picks the L = 256 built-in model). */
const DEFAULTS = { newTokens: 16, repeats: 3, taskSequences: 50, budgetMinutes: 20 };
const QUICK = { repeats: 1, taskSequences: 10 };

/**
 * Benchmarks the cache policies across the RoPE threshold: quality against the no-cache oracle
 * and cost per step (scenarios near and far), and copy accuracy on the trained model (task);
 * with `--scenarios serve`, many sequences batched through one scheduler against the same ones
 * one at a time (throughput, time per output token, prefix hits, identity to the solo runs).
 * Writes `report.json`, `report.md` and `report.html` into `--out` (default `bench-out/`) and
 * prints the markdown; progress goes to stderr (a bar on a terminal).
 */
export async function benchCommand(argv: string[], io: CommandIO): Promise<void> {
  const o = parseOptions('bench', argv, {
    model: { type: 'string' },
    backends: { type: 'string' },
    policies: { type: 'string' },
    scenarios: { type: 'string' },
    'new-tokens': { type: 'string' },
    repeats: { type: 'string' },
    quick: { type: 'boolean' },
    out: { type: 'string' },
    'task-sequences': { type: 'string' },
    'no-task': { type: 'boolean' },
    'budget-minutes': { type: 'string' },
    'serve-sequences': { type: 'string' },
    'serve-new-tokens': { type: 'string' },
    ...BACKEND_FLAGS,
  });
  const quick = o.quick === true;
  const backends = listOption<BackendName>('backends', o.backends, BACKEND_NAMES, ['reference']);
  const policies = typeof o.policies === 'string' && o.policies.trim() === 'all' ? POLICY_NAMES.slice() : listOption('policies', o.policies, POLICY_NAMES, POLICY_NAMES);
  const scenarios = listOption<BenchScenarioName>('scenarios', o.scenarios, BENCH_SCENARIO_NAMES, SCENARIO_NAMES);
  const serveGiven = o['serve-sequences'] !== undefined || o['serve-new-tokens'] !== undefined;
  if (serveGiven && !scenarios.includes('serve')) throw new UsageError('bench: --serve-sequences and --serve-new-tokens apply to --scenarios serve');
  const serve = {
    sequences: intOption('serve-sequences', o['serve-sequences'], SERVE_DEFAULTS.sequences, 1, MAX_SERVE_SEQUENCES),
    newTokens: intOption('serve-new-tokens', o['serve-new-tokens'], SERVE_DEFAULTS.newTokens, MIN_SERVE_NEW_TOKENS, 4096),
  };
  const newTokens = intOption('new-tokens', o['new-tokens'], DEFAULTS.newTokens, 1, 4096);
  const repeats = intOption('repeats', o.repeats, quick ? QUICK.repeats : DEFAULTS.repeats, 1, 100);
  if (o['no-task'] && o['task-sequences'] !== undefined) throw new UsageError('bench: --task-sequences and --no-task exclude each other');
  const taskSequences = o['no-task'] ? 0 : intOption('task-sequences', o['task-sequences'], quick ? QUICK.taskSequences : DEFAULTS.taskSequences, 1, 10_000);
  const budgetMinutes = numberOption('budget-minutes', o['budget-minutes'], 0, 10_000) ?? DEFAULTS.budgetMinutes;
  if (o.out === '') throw new UsageError('bench: --out needs a folder');
  const outDir = resolve(typeof o.out === 'string' ? o.out : 'bench-out');
  const modelName = typeof o.model === 'string' && o.model !== '' ? o.model : 'builtin';

  const modelDir = await resolveModelDir(modelName, { quick });
  const config = await loadModelConfig(modelDir);
  const threshold = modelSchedule(config.rope).threshold;
  if (threshold === undefined) {
    throw new UsageError(`bench: the model's RoPE (${config.rope.scaling.type}) never changes with the length, so no cache goes stale; give a LongRoPE or dynamic-NTK model`);
  }
  if (threshold <= NEAR_MARGIN + 1) throw new UsageError(`bench: the model's threshold L = ${threshold} is too small for the scenarios (at least ${NEAR_MARGIN + 2})`);
  const limit = positionLimit(config);
  if (threshold + newTokens > limit) {
    throw new UsageError(`bench: --new-tokens ${newTokens} runs past the model's ${limit} positions (L = ${threshold}); use at most ${limit - threshold}`);
  }
  const serveProblem = scenarios.includes('serve') ? servePlanProblem(threshold, limit, serve.sequences, serve.newTokens) : undefined;
  if (serveProblem !== undefined) throw new UsageError(`bench: serve: ${serveProblem}`);

  const report = await runBench({
    modelName,
    modelDir,
    backends,
    policies,
    scenarios,
    ...(scenarios.includes('serve') ? { serve } : {}),
    newTokens,
    repeats,
    quick,
    taskSequences,
    budgetMinutes: budgetMinutes === 0 ? null : budgetMinutes,
    settings: backendSettings(o),
    progress: createProgress(io.stderr, io.isTTY === true),
  });
  const markdown = renderMarkdown(report);
  await writeReport(outDir, report, markdown);
  io.stdout(markdown);
  io.stderr(`bench: wrote ${join(outDir, 'report.json')}, report.md and report.html\n`);
}

async function writeReport(outDir: string, report: BenchReport, markdown: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(outDir, 'report.md'), markdown);
  await writeFile(join(outDir, 'report.html'), renderHtml(report));
}

/** `a,b` from a fixed set, without repeats, in the order given; `fallback` when absent. */
function listOption<T extends string>(name: string, value: string | boolean | undefined, allowed: readonly T[], fallback: readonly T[]): T[] {
  if (value === undefined) return fallback.slice();
  const parts = typeof value === 'string' ? value.split(',').map((s) => s.trim()) : [];
  const bad = parts.find((p) => !(allowed as readonly string[]).includes(p));
  if (parts.length === 0 || bad !== undefined) {
    throw new UsageError(`--${name} must be a comma-separated list of ${allowed.join(', ')}${name === 'policies' ? ' (or all)' : ''}, got ${quoted(value)}`);
  }
  return [...new Set(parts)] as T[];
}

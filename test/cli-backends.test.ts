import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BenchReport, DemoResult } from '../packages/cli/src/index.js';
import { hfDir, inputIds, maxAbsDiff, readExpected } from './support/fixtures.js';
import { runCli } from './support/run-cli.js';

// `--backend onnxruntime` and `--backend webgpu` on every command that runs a model, in-process.
// Logit tolerances are each backend's conformance bar (onnxruntime 1e-4, WebGPU on the software
// adapter 1e-3); tokens must equal HF's.
const BACKENDS = [
  { name: 'onnxruntime', tol: 1e-4 },
  { name: 'webgpu', tol: 1e-3 },
] as const;

const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe.each(BACKENDS)('--backend $name', ({ name, tol }) => {
  const e = readExpected('seed1-gqa');
  const seed1 = `${hfDir}seed1-gqa`;

  it('logits: the last rows past the threshold, as HF computes them', async () => {
    const r = await runCli(['logits', '--backend', name, '--model', seed1, '--ids', inputIds(e, e.full_forward_long).join(','), '--last', '2']);
    expect(r.code, r.stderr).toBe(0);
    const { logits } = JSON.parse(r.stdout) as { logits: number[][] };
    expect(logits).toHaveLength(2);
    logits.forEach((row, i) => expect(maxAbsDiff(row, e.full_forward_long.logits.slice(-2)[i]!), `row ${i}`).toBeLessThanOrEqual(tol));
  });

  it('generate --policy re-prefill: HF generate()’s tokens and logits across the crossing, one re-prefill event', async () => {
    const n = e.greedy_hf.max_new_tokens;
    const r = await runCli(['generate', '--backend', name, '--model', seed1, '--ids', e.prompt.join(','), '--max-new-tokens', String(n), '--policy', 're-prefill', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { tokens: number[]; logits: number[][]; events: { type: string }[] };
    expect(out.tokens).toEqual(e.greedy_hf.tokens);
    out.logits.forEach((l, i) => expect(maxAbsDiff(l, e.greedy_hf.logits[i]!), `step ${i}`).toBeLessThanOrEqual(tol));
    expect(out.events.filter((x) => x.type === 're-prefill')).toHaveLength(1);
  });

  it('demo: the exact policies copy like the oracle, the stale cache breaks after the crossing', async () => {
    const r = await runCli(['demo', '--backend', name, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as DemoResult;
    const byName = new Map(result.runs.map((x) => [x.name, x]));
    expect(byName.get('oracle')!.tokens).toEqual(result.target);
    for (const policy of ['re-prefill', 'pre-estimate', 'shadow-prefill']) expect(byName.get(policy)!.tokens, policy).toEqual(result.target);
    expect(byName.get('stale')!.firstError).toBeGreaterThanOrEqual(result.crossingStep);
    expect(byName.get('stale')!.correct).toBeLessThan(result.target.length);
  });
});

describe('bench --backends reference,onnxruntime,webgpu', () => {
  it('runs every backend on the same scenario, each re-prefill exact against its own oracle', async () => {
    const out = await mkdtemp(join(tmpdir(), 'ropeswitch-cli-backends-'));
    tempDirs.push(out);
    const r = await runCli(['bench', '--quick', '--backends', 'reference,onnxruntime,webgpu', '--scenarios', 'near', '--policies', 're-prefill', '--no-task', '--new-tokens', '4', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as BenchReport;
    expect(report.settings.backends).toEqual(['reference', 'onnxruntime', 'webgpu']);
    expect(report.runs.map((x) => `${x.backend} ${x.policy}`)).toEqual([
      'reference stale',
      'reference re-prefill',
      'onnxruntime stale',
      'onnxruntime re-prefill',
      'webgpu stale',
      'webgpu re-prefill',
    ]);
    for (const run of report.runs.filter((x) => x.policy === 're-prefill')) {
      expect(run.quality.maxAbsLogitDiff, run.backend).toBeLessThan(1e-3);
      expect(run.quality.top1Agreement, run.backend).toBe(1);
    }
    expect(await readFile(join(out, 'report.md'), 'utf8')).toContain('webgpu');
  });
});

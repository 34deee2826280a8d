import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '@ropeswitch/core';
import { afterAll, describe, expect, it } from 'vitest';
import { MODEL_LIKES } from '../packages/cli/src/random-models/make-model.js';
import { type CliRun, runCli } from './support/run-cli.js';

// `ropeswitch make-model` at the real shape (one of Phi-3-mini's 32 layers: 0.62 GB of bf16), then
// the model used as a user would: `generate` on it. Bad input fails in one line and writes nothing loadable.
const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-make-model-cli-'));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

function expectFailure(r: CliRun, code: 1 | 2): string {
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^ropeswitch: [^\n]+\n$/);
  return r.stderr;
}

describe('ropeswitch make-model', () => {
  it('writes a Phi-3-mini-shaped sharded bf16 checkpoint that generate runs on', async () => {
    const out = join(await tempDir(), 'phi3-1layer');
    const made = await runCli(['make-model', '--like', 'phi-3-mini-128k', '--layers', '1', '--out', out, '--seed', '3']);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/^wrote .*: phi-3-mini-128k shape, 1 of 32 layers, hidden 3072, 32\/32 heads, vocab 32064, .* bf16, \d+ shards, /);
    const files = (await readdir(out)).sort();
    expect(files).toContain('model.safetensors.index.json');
    expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThanOrEqual(2);
    const published = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(published['num_hidden_layers']).toBe(1);
    const { config, weights } = await loadCheckpoint(out);
    expect([config.hiddenSize, config.numHeads, config.vocabSize, config.rope.rotaryDim]).toEqual([3072, 32, 32064, 96]);
    expect(weights.info('model.layers.0.mlp.gate_up_proj.weight')).toEqual({ name: 'model.layers.0.mlp.gate_up_proj.weight', dtype: 'BF16', shape: [16384, 3072] });
    await weights.close();

    const generated = await runCli(['generate', '--model', out, '--ids', '1,2,3,4', '--max-new-tokens', '2', '--json']);
    expect(generated.code, generated.stderr).toBe(0);
    const result = JSON.parse(generated.stdout) as { tokens: number[]; logits: number[][] };
    expect(result.tokens).toHaveLength(2);
    expect(result.logits).toHaveLength(2);
    expect(result.logits.flat().every(Number.isFinite)).toBe(true);
    expect(result.logits[0]).toHaveLength(32064);
  });

  it('an unknown --like lists the known ones', async () => {
    const err = expectFailure(await runCli(['make-model', '--like', 'phi-2', '--out', await tempDir()]), 2);
    for (const like of MODEL_LIKES) expect(err).toContain(like);
  });

  it('--layers 0 and an --out under a file are one-line errors that write nothing', async () => {
    const dir = await tempDir();
    expect(expectFailure(await runCli(['make-model', '--like', 'phi-4-mini', '--layers', '0', '--out', join(dir, 'm')]), 2)).toContain('--layers');
    await writeFile(join(dir, 'file'), 'x');
    expect(expectFailure(await runCli(['make-model', '--like', 'phi-4-mini', '--layers', '1', '--out', join(dir, 'file', 'm')]), 1)).toContain('not writable');
    expect((await readdir(dir)).sort()).toEqual(['file']);
  });
});

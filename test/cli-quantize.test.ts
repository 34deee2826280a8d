import { describe, expect, it } from 'vitest';
import { copyExamples } from '../packages/cli/src/bench/copy-task.js';
import { maxAbsDiff } from './support/fixtures.js';
import { runCli } from './support/run-cli.js';

// `--quantize int4|int8` on the commands that open a backend: the onnxruntime backend exports
// MatMulNBits weights; other backends ignore the flag.
describe('--quantize', () => {
  const [example] = copyExamples(20, 1, 5);
  const prompt = example!.prompt.join(',');

  it('generate --backend onnxruntime --quantize int8: the trained model still copies across the crossing (shadow-prefill)', async () => {
    const r = await runCli(['generate', '--backend', 'onnxruntime', '--quantize', 'int8', '--model', 'trained', '--ids', prompt, '--max-new-tokens', String(example!.answer.length), '--policy', 'shadow-prefill', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { tokens: number[] }).tokens).toEqual(example!.answer);
  });

  it('logits --quantize int4 differ from float32 on onnxruntime and are ignored by the reference backend', async () => {
    const logits = async (...flags: string[]) => {
      const r = await runCli(['logits', '--model', 'trained', '--ids', prompt, '--last', '3', ...flags]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { logits: number[][] }).logits.flat();
    };
    const float = await logits('--backend', 'onnxruntime');
    const int4 = await logits('--backend', 'onnxruntime', '--quantize', 'int4');
    expect(maxAbsDiff(int4, float)).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(await logits('--quantize', 'int4'), await logits())).toBe(0);
  });

  it('an unknown precision is a usage error', async () => {
    const r = await runCli(['logits', '--model', 'trained', '--ids', '1,2', '--backend', 'onnxruntime', '--quantize', 'int3']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--quantize must be one of int4, int8, got 'int3'/);
  });
});

import { describe, expect, it } from 'vitest';
import { maxAbsDiff } from './support/fixtures.js';
import { runCli } from './support/run-cli.js';

// `--cache-dtype float32|float16` on the commands that open a backend: the onnxruntime backend's
// KV caches become float16 (`cacheDtype`); other backends ignore the flag.
describe('--cache-dtype', () => {
  const logits = async (...flags: string[]) => {
    const r = await runCli(['logits', '--model', 'trained', '--ids', '3,9,4,1,7,2,8', '--last', '3', ...flags]);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { logits: number[][] }).logits.flat();
  };

  it('float16 caches on onnxruntime: logits close to float32 but not equal; the reference backend ignores the flag', async () => {
    const float = await logits('--backend', 'onnxruntime');
    const half = await logits('--backend', 'onnxruntime', '--cache-dtype', 'float16');
    expect(maxAbsDiff(half, float)).toBeGreaterThan(0);
    expect(maxAbsDiff(half, float)).toBeLessThan(0.06);
    expect(maxAbsDiff(await logits('--cache-dtype', 'float16'), await logits())).toBe(0);
  });

  it('an unknown cache dtype is a usage error', async () => {
    const r = await runCli(['logits', '--model', 'trained', '--ids', '1,2', '--backend', 'onnxruntime', '--cache-dtype', 'bfloat16']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--cache-dtype must be one of float32, float16, got 'bfloat16'/);
  });
});

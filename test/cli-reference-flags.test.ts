import { describe, expect, it } from 'vitest';
import { hfDir, inputIds, maxAbsDiff, readExpected } from './support/fixtures.js';
import { runCli } from './support/run-cli.js';

// The reference backend's flags on the command line: `--threads N` (its worker pool) changes no
// bit of the logits; `--weights DTYPE` stores the weight matrices in that dtype (int8 moves the
// logits: the README measures by how much); a bad value is a usage error naming the choices.

describe('ropeswitch --backend reference: --threads and --weights', () => {
  const e = readExpected('seed1-gqa');
  const model = `${hfDir}seed1-gqa`;
  const ids = inputIds(e, e.full_forward_long).join(',');
  const logits = async (...flags: string[]): Promise<number[][]> => {
    const r = await runCli(['logits', '--model', model, '--ids', ids, '--last', '3', ...flags]);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { logits: number[][] }).logits;
  };

  it('--threads 1 and --threads 2 give the same logits, HF’s within 1e-4', async () => {
    const [one, two] = [await logits('--threads', '1'), await logits('--threads', '2')];
    expect(two).toEqual(one);
    one.forEach((row, i) => expect(maxAbsDiff(row, e.full_forward_long.logits.slice(-3)[i]!)).toBeLessThanOrEqual(1e-4));
  });

  it('--weights int8 moves the logits but not their top token, --weights float32 not at all', async () => {
    const [f32, int8, plain] = [await logits('--weights', 'float32'), await logits('--weights', 'int8'), await logits()];
    expect(f32).toEqual(plain);
    expect(Math.max(...int8.map((row, i) => maxAbsDiff(row, f32[i]!)))).toBeGreaterThan(0);
    const top = (row: number[]) => row.indexOf(Math.max(...row));
    expect(int8.map(top)).toEqual(f32.map(top));
  });

  it('a bad --weights or --threads is a usage error', async () => {
    const bad = await runCli(['logits', '--model', model, '--ids', ids, '--weights', 'int4']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/float32.*bfloat16.*float16.*int8/);
    expect((await runCli(['logits', '--model', model, '--ids', ids, '--threads', '0'])).code).toBe(2);
  });
});

import { describe, expect, it } from 'vitest';
import { splitIntoBlocks } from './binding-blocks.js';

describe('splitIntoBlocks', () => {
  it('keeps what fits in one run, and refuses a unit larger than the limit', () => {
    expect(splitIntoBlocks(100, 8, 800)).toEqual([{ first: 0, count: 100 }]);
    expect(splitIntoBlocks(100, 801, 800)).toBeUndefined();
  });

  it('cuts the Phi-3-mini matrices on a 128 MiB binding into even runs of whole 32-row granules', () => {
    const MiB128 = 128 * 2 ** 20;
    // gate_up: 16384 rows of 3072 floats, at most 10922 a run: two of 8192, not 10922 + 5462.
    expect(splitIntoBlocks(16384, 3072 * 4, MiB128, 32)).toEqual([{ first: 0, count: 8192 }, { first: 8192, count: 8192 }]);
    // The 32064-row embedding: three runs of 10688.
    expect(splitIntoBlocks(32064, 3072 * 4, MiB128, 32)?.map((r) => r.count)).toEqual([10688, 10688, 10688]);
  });

  it('covers every unit once, in order, each run within the limit, whatever the sizes', () => {
    for (const [count, unit, max, granule] of [[200064, 12288, 134217728, 32], [37, 5, 64, 4], [10, 3, 7, 32], [1000, 1, 999, 1]] as const) {
      const runs = splitIntoBlocks(count, unit, max, granule)!;
      let next = 0;
      for (const r of runs) {
        expect(r.first).toBe(next);
        expect(r.count * unit).toBeLessThanOrEqual(max);
        next += r.count;
      }
      expect(next).toBe(count);
      // The fewest runs: one fewer would not hold them.
      expect((runs.length - 1) * Math.floor(max / unit)).toBeLessThan(count);
    }
  });
});

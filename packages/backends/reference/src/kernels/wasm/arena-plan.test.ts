import { describe, expect, it } from 'vitest';
import { planArenas } from './arena-plan.js';

describe('planArenas', () => {
  const spans = (plan: ReturnType<typeof planArenas>) => plan.map((g) => [g.firstLayer, g.endLayer, g.weightBytes]);

  it('packs consecutive layers up to the budget; the LM head goes with the last group when it fits', () => {
    expect(spans(planArenas([3, 3, 3], 2, 6))).toEqual([[0, 2, 6], [2, 3, 5]]);
    expect(spans(planArenas([3, 3, 3], 2, 100))).toEqual([[0, 3, 11]]);
  });

  it('gives the LM head a group of its own when it does not fit, and an oversized layer a memory of its own', () => {
    expect(spans(planArenas([3, 3], 4, 6))).toEqual([[0, 2, 6], [2, 2, 4]]);
    expect(spans(planArenas([2, 9, 2], 1, 4))).toEqual([[0, 1, 2], [1, 2, 9], [2, 3, 3]]);
  });

  it('the 32-layer Phi-3-mini in float32: 4 layers per 2 GiB memory, 8 memories and the LM head in a ninth', () => {
    const layer = 4 * (9216 * 3072 + 3072 * 3072 + 16384 * 3072 + 3072 * 8192);
    const plan = planArenas(Array.from({ length: 32 }, () => layer), 4 * 32064 * 3072);
    expect(plan.map((g) => g.endLayer - g.firstLayer)).toEqual([4, 4, 4, 4, 4, 4, 4, 4, 0]);
    expect(Math.max(...plan.map((g) => g.weightBytes))).toBeLessThanOrEqual(2 * 1024 ** 3);
  });
});

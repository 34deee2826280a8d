import { describe, expect, it } from 'vitest';
import { makeRegime } from '../rope/regime.js';
import { CacheRecord } from './cache-record.js';

const LAYOUT = { numLayers: 2, numKvHeads: 3, headDim: 4 };
const A = makeRegime('A', 'static', Float32Array.of(1), Float64Array.of(1), 1);
const B = makeRegime('B', 'static', Float32Array.of(0.5), Float64Array.of(0.5), 1);

describe('CacheRecord', () => {
  it('plans growth (doubling, or exactly a need past double) without changing anything until the storage has grown', () => {
    const r = new CacheRecord(LAYOUT, 0);
    expect(r.capacity).toBe(1);
    expect(r.grownCapacity(1)).toBeUndefined();
    expect(r.grownCapacity(2)).toBe(2);
    expect(r.grownCapacity(5)).toBe(5);
    expect(r.capacity).toBe(1);
    expect(() => r.grownCapacity(-1)).toThrow(expect.objectContaining({ code: 'bad-reserve' }));
    expect(() => r.grownCapacity(1.5)).toThrow(expect.objectContaining({ code: 'bad-reserve' }));
    r.commit([7], [0], A);
    r.grow(8);
    r.commit([8, 9], [1, 2], B);
    expect(Array.from(r.tokens())).toEqual([7, 8, 9]);
    expect(Array.from(r.positions())).toEqual([0, 1, 2]);
    expect(r.regimeSpans().map((s) => [s.start, s.end, s.regime.id])).toEqual([
      [0, 1, 'A'],
      [1, 3, 'B'],
    ]);
    expect(() => r.commit([1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5], A)).toThrow(expect.objectContaining({ code: 'bad-commit' }));
  });

  it('copies independently, takes over a record of the same layout only, and refuses use once disposed', () => {
    const r = new CacheRecord(LAYOUT, 4);
    r.commit([1, 2, 3], [5, 6, 7], A);
    const c = r.copy();
    expect(c.capacity).toBe(3);
    r.crop(1);
    expect(Array.from(c.tokens())).toEqual([1, 2, 3]);
    expect(c.uniformRegime()).toBe(A);
    expect(() => r.takeOver(new CacheRecord({ ...LAYOUT, headDim: 8 }, 1))).toThrow(expect.objectContaining({ code: 'cache-layout' }));
    expect(r.length).toBe(1);
    r.takeOver(c);
    expect(Array.from(r.positions())).toEqual([5, 6, 7]);
    expect(r.capacity).toBe(3);
    c.dispose();
    expect(r.regimeAt(2)).toBe(A);
    expect(() => c.tokens()).toThrow(expect.objectContaining({ code: 'disposed' }));
    expect(() => r.takeOver(c)).toThrow(expect.objectContaining({ code: 'disposed' }));
  });
});

import { describe, expect, it } from 'vitest';
import { floorMax, median, pairedMax, percentile, repeatableMax, stepFloors } from './statistics.js';

describe('bench statistics', () => {
  it('median and nearest-rank percentile', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(percentile([1, 2, 3, 4], 0.5)).toBe(2);
    expect(Number.isNaN(median([]))).toBe(true);
  });

  it('repeatableMax: a pause in one repeat does not count, work at the same step in every repeat does', () => {
    // Three repeats of four steps: a 9 ms pause at step 1 of one repeat, a policy's 5 ms step 3 in all.
    const runs = [
      [1, 9, 1, 5],
      [1, 1, 1, 5.2],
      [1.1, 1, 1, 4.9],
    ];
    expect(repeatableMax(runs)).toBe(5);
    expect(Math.max(...runs.flat())).toBe(9);
    // One repeat: its maximum.
    expect(repeatableMax([[1, 9, 2]])).toBe(9);
    // Pauses on two of three repeats at one step do count.
    expect(repeatableMax([[1, 7], [1, 8], [1, 1]])).toBe(7);
    expect(Number.isNaN(repeatableMax([]))).toBe(true);
  });

  it('floorMax: each step at its fastest repeat, the slowest of those; a pause in any but every repeat does not count', () => {
    // Three repeats of four steps: pauses at step 1 of two repeats, a policy's 5 ms step 3 in all.
    const runs = [
      [1, 9, 1, 5],
      [1, 8, 1, 5.2],
      [1.1, 1, 1, 4.9],
    ];
    expect(stepFloors(runs)).toEqual([1, 1, 1, 4.9]);
    expect(floorMax(runs)).toBe(4.9);
    // The median-based figure counts the pause that two of three repeats met.
    expect(repeatableMax(runs)).toBe(8);
    // Work at one step in every repeat counts, however the repeats vary.
    expect(floorMax([[1, 7], [1, 8], [1, 6]])).toBe(6);
    // One repeat: its maximum; repeats of different lengths: the steps they share.
    expect(floorMax([[1, 9, 2]])).toBe(9);
    expect(floorMax([[1, 2, 50], [1, 3]])).toBe(2);
    expect(Number.isNaN(floorMax([]))).toBe(true);
    expect(Number.isNaN(floorMax([[]]))).toBe(true);
    expect(stepFloors([])).toEqual([]);
  });

  it('pairedMax: against the same step of the reference, from the fastest repeat of each', () => {
    // The reference's first step is slow every time (cold caches): a policy as slow there adds nothing.
    const reference = [
      [3, 1, 1, 1],
      [3, 1, 1.2, 1],
    ];
    // The policy: slow at step 0 like the reference, a pause at step 1 of one repeat, its own work (2×) at step 3.
    const policy = [
      [3, 9, 1, 2],
      [3.3, 1, 1, 2.1],
    ];
    expect(pairedMax(policy, reference)).toEqual({ ratio: 2, step: 3 });
    // Its slowest step over the reference's median step would have said 9 (the pause) or 3 (the cold step).
    expect(Math.max(...policy.flat()) / median(reference.flat())).toBe(9);
    // A pause on the reference's side lowers nothing: its fastest repeat is taken too.
    expect(pairedMax([[1, 1]], [[1, 1], [5, 1]])).toEqual({ ratio: 1, step: 0 });
    // Runs of different lengths are compared over the steps they share.
    expect(pairedMax([[1, 1, 50]], [[1, 1]])).toEqual({ ratio: 1, step: 0 });
    expect(pairedMax([], [[1]])).toBeUndefined();
    expect(pairedMax([[1]], [])).toBeUndefined();
  });
});

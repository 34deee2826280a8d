import { describe, expect, it } from 'vitest';
import { minMaxDownsample } from './min-max-downsample.js';

const series = (ys: number[]) => ys.map((y, x) => ({ x, y }));

describe('minMaxDownsample', () => {
  it('returns a short series as it is', () => {
    const points = series([3, 1, 4, 1, 5]);
    expect(minMaxDownsample(points, 10)).toBe(points);
  });

  it('keeps each bucket’s lowest and highest point, in x order, so a one-step spike survives', () => {
    const ys = Array.from({ length: 10_000 }, (_, i) => 1 + 0.01 * Math.sin(i));
    ys[7_777] = 1000;
    ys[1_234] = 0.001;
    const out = minMaxDownsample(series(ys), 100);
    expect(out.length).toBeLessThanOrEqual(200);
    expect(out).toContainEqual({ x: 7_777, y: 1000 });
    expect(out).toContainEqual({ x: 1_234, y: 0.001 });
    for (let i = 1; i < out.length; i++) expect(out[i]!.x).toBeGreaterThan(out[i - 1]!.x);
    expect(out[0]!.x).toBeLessThan(100);
    expect(out[out.length - 1]!.x).toBeGreaterThan(9_900);
  });

  it('keeps one point for a bucket whose points are all equal', () => {
    const out = minMaxDownsample(series(new Array(1000).fill(2)), 10);
    expect(out).toHaveLength(10);
  });
});

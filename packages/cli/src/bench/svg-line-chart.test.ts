import { describe, expect, it } from 'vitest';
import { formatTick, linearTicks, logTicks, svgLineChart } from './svg-line-chart.js';

const paths = (svg: string) => [...svg.matchAll(/<path class="series[^"]*" data-series="([^"]*)"[^>]*\bd="([^"]*)"/g)].map((m) => ({ name: m[1]!, d: m[2]! }));
const coords = (d: string) => d.split(/[Mma]/)[1]!.trim().split(' ').map(Number);

describe('axis ticks', () => {
  it('puts round linear ticks inside the range', () => {
    expect(linearTicks(0, 2200, 5).map((t) => t.value)).toEqual([0, 500, 1000, 1500, 2000]);
    expect(linearTicks(1, 16, 4).map((t) => t.value)).toEqual([5, 10, 15]);
  });

  it('labels every decade of a log axis, every k-th when there are many, and 2×, 5× on a short one', () => {
    expect(logTicks(-12, 0).map((t) => t.label)).toEqual(['1e-12', '1e-10', '1e-8', '1e-6', '1e-4', '0.01', '1']);
    expect(logTicks(0, 1).map((t) => t.label)).toEqual(['1', '2', '5', '10']);
  });

  it('formats tick labels plainly in the middle range, in exponent form outside it', () => {
    expect([formatTick(0.001), formatTick(10_000), formatTick(1e-7), formatTick(1e6)]).toEqual(['0.001', '10000', '1e-7', '1e6']);
  });
});

describe('svgLineChart', () => {
  const base = { title: 't', xLabel: 'step', yLabel: 'ms', yScale: 'log' as const };

  it('draws one path per series with its colour class, and the markers', () => {
    const svg = svgLineChart({
      ...base,
      series: [
        { name: 'a', colour: 0, points: [{ x: 1, y: 1 }, { x: 2, y: 1000 }] },
        { name: 'b', colour: 9, points: [{ x: 1, y: 2 }, { x: 2, y: 3 }] },
      ],
      markers: [{ x: 2, label: 'crossing · step 2' }],
    });
    expect(paths(svg).map((p) => p.name)).toEqual(['a', 'b']);
    expect(svg).toContain('class="series s0"');
    expect(svg).toMatch(/class="series s1"[^>]*stroke-dasharray/); // past the palette: reused colour, dashed
    expect(svg).toContain('crossing · step 2</text>');
    expect(svg).not.toContain('xmlns'); // inline SVG needs no namespace URL
  });

  it('draws values at or below the floor on the floor of a log axis, and says so', () => {
    const svg = svgLineChart({
      ...base,
      yFloor: 1e-12,
      series: [{ name: 'exact', colour: 0, points: [{ x: 0, y: 0 }, { x: 1, y: -1e-17 }, { x: 2, y: 1e-13 }, { x: 3, y: 0.1 }] }],
    });
    const [x0, y0, , y1, , y2, , y3] = coords(paths(svg)[0]!.d);
    expect(Number.isFinite(x0)).toBe(true);
    expect(y0).toBe(y1);
    expect(y1).toBe(y2);
    expect(y3!).toBeLessThan(y2!);
    expect(svg).toContain('>≤1e-12</text>');
  });

  it('shows a lone point as a dot (a path with extent) rather than nothing', () => {
    const svg = svgLineChart({ ...base, series: [{ name: 'one', colour: 0, points: [{ x: 5, y: 2 }] }] });
    expect(paths(svg)[0]!.d).toMatch(/^M[\d.]+ [\d.]+M[\d.]+ [\d.]+m-2 0a2 2/);
  });

  it('leaves non-finite values out', () => {
    const svg = svgLineChart({ ...base, series: [{ name: 'n', colour: 0, points: [{ x: 0, y: 1 }, { x: 1, y: NaN }, { x: 2, y: Infinity }, { x: 3, y: 2 }] }] });
    expect(paths(svg)[0]!.d).not.toMatch(/NaN|Infinity/);
    expect(svg).not.toMatch(/NaN|Infinity/);
  });
});

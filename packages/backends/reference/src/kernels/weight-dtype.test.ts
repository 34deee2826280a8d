import { BackendError } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { fromFloat16, int8Scales, panelBytes, roundWeights, toBfloat16, toFloat16, writePanels } from './weight-dtype.js';

describe('weight dtypes', () => {
  it('float16: IEEE bits rounded to nearest even, no subnormals, NaN past ±65504', () => {
    const cases: [number, number][] = [
      [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff], [65519, 0x7bff], [1 / 3, 0x3555],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], // halfway: to even
      [2 ** -14, 0x0400], [2 ** -15, 0x0400], [-(2 ** -15), 0x8400], [2 ** -16, 0x0000], [-(2 ** -16), 0x8000], [0, 0],
    ];
    for (const [x, h] of cases) expect(toFloat16(x), String(x)).toBe(h);
    expect(toFloat16(65520)).toBeNaN();
    expect(toFloat16(-1e6)).toBeNaN();
    // Every normal half comes back to itself.
    const wrong: number[] = [];
    for (let h = 0x0400; h < 0x7c00; h++) for (const s of [h, h | 0x8000]) if (toFloat16(fromFloat16(s)) !== s) wrong.push(s);
    expect(wrong).toEqual([]);
  });

  it('bfloat16: float32’s top half, rounded to nearest even', () => {
    expect(toBfloat16(1)).toBe(0x3f80);
    expect(toBfloat16(-1)).toBe(0xbf80);
    expect(toBfloat16(1 + 2 ** -8)).toBe(0x3f80); // halfway between 1 and 1 + 2^-7: to even
    expect(toBfloat16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(toBfloat16(1 + 2 ** -7)).toBe(0x3f81);
  });

  it('int8: per-row scale max|w| / 127, the largest weight exact, an all-zero row all zero', () => {
    const w = Float32Array.from([0.5, -1.27, 0.1, 0, 0, 0, 2, 1, -0.01]);
    const scales = int8Scales(w, 3, 3);
    expect(Array.from(scales)).toEqual([Math.fround(1.27 / 127), 0, Math.fround(2 / 127)]);
    const r = roundWeights('int8', w, 3, 3);
    expect(r[1]).toBeCloseTo(-1.27, 6);
    expect(Array.from(r.subarray(3, 6))).toEqual([0, 0, 0]);
    expect(r[6]).toBeCloseTo(2, 6);
    for (let i = 0; i < w.length; i++) expect(Math.abs(r[i]! - w[i]!)).toBeLessThanOrEqual(scales[Math.floor(i / 3)]! / 2 + 1e-9);
  });

  it('writes panels [ceil(out/8)][in][8]: w[8p + j][k] at 64p·in/8 + 8k + j, rows past out left zero', () => {
    const [outDim, inDim] = [11, 3];
    const w = Float32Array.from({ length: outDim * inDim }, (_, i) => i + 1);
    const buffer = new ArrayBuffer(panelBytes('float32', outDim, inDim));
    writePanels('float32', w, outDim, inDim, buffer, 0, undefined, 'w');
    const p = new Float32Array(buffer);
    expect(p.length).toBe(2 * inDim * 8);
    for (let o = 0; o < 16; o++) {
      for (let k = 0; k < inDim; k++) expect(p[Math.floor(o / 8) * inDim * 8 + 8 * k + (o % 8)], `w[${o}][${k}]`).toBe(o < outDim ? w[o * inDim + k] : 0);
    }
    const halves = new ArrayBuffer(panelBytes('bfloat16', outDim, inDim));
    writePanels('bfloat16', w, outDim, inDim, halves, 0, undefined, 'w');
    expect(new Uint16Array(halves)[8 * 2 + 3]).toBe(toBfloat16(w[3 * inDim + 2]!));
  });

  it('float16 out of range is a typed error naming the tensor', () => {
    const w = Float32Array.from([1, 1e5]);
    expect(() => writePanels('float16', w, 1, 2, new ArrayBuffer(panelBytes('float16', 1, 2)), 0, undefined, 'model.layers.3.mlp.down_proj')).toThrow(
      expect.objectContaining({ code: 'weights-range', message: expect.stringMatching(/model\.layers\.3\.mlp\.down_proj/) }) as unknown as BackendError,
    );
  });
});

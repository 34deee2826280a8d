import { describe, expect, it } from 'vitest';
import { matmul } from './matmul.js';

/** y[t][o] = Σ_k x[t][k]·w[o][k] in k order in float64, then + bias: the order every path of matmul keeps. */
function naive(x: Float32Array, rows: number, inDim: number, w: Float32Array, outDim: number, bias?: Float32Array): Float32Array {
  const y = new Float32Array(rows * outDim);
  for (let t = 0; t < rows; t++) {
    for (let o = 0; o < outDim; o++) {
      let s = 0;
      for (let k = 0; k < inDim; k++) s += x[t * inDim + k]! * w[o * inDim + k]!;
      y[t * outDim + o] = s + (bias ? bias[o]! : 0);
    }
  }
  return y;
}

const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

describe('matmul', () => {
  // Row counts hit every path: 4-row blocks, a pair left (2 × 8), one left (1 × 8), and their mixes;
  // output sizes hit the 8- and 4-wide blocks and their leftovers.
  for (const rows of [1, 2, 3, 4, 5, 6, 7, 9]) {
    it(`equals a plain k-ordered float64 sum bit for bit, whatever the batching (${rows} rows)`, () => {
      for (const [inDim, outDim] of [[16, 24], [7, 13], [33, 8], [5, 3]] as const) {
        for (const withBias of [false, true]) {
          const x = Float32Array.from({ length: rows * inDim }, (_, i) => Math.sin(i * 1.7 + rows));
          const w = Float32Array.from({ length: inDim * outDim }, (_, i) => Math.cos(i * 0.3 + inDim));
          const bias = withBias ? Float32Array.from({ length: outDim }, (_, i) => i / 7 - 1) : undefined;
          const y = new Float32Array(rows * outDim);
          matmul(x, rows, inDim, w, outDim, y, bias);
          expect(bits(y), `${inDim} → ${outDim}${withBias ? ' + bias' : ''}`).toEqual(bits(naive(x, rows, inDim, w, outDim, bias)));
        }
      }
    });
  }

  it('a row gets the same bits alone as beside other rows (a decode row with or without a shadow row)', () => {
    const inDim = 40;
    const outDim = 19;
    const w = Float32Array.from({ length: inDim * outDim }, (_, i) => Math.sin(i));
    const x = Float32Array.from({ length: 3 * inDim }, (_, i) => Math.cos(i * 0.7));
    const together = new Float32Array(3 * outDim);
    matmul(x, 3, inDim, w, outDim, together);
    for (let t = 0; t < 3; t++) {
      const alone = new Float32Array(outDim);
      matmul(x.subarray(t * inDim, (t + 1) * inDim), 1, inDim, w, outDim, alone);
      expect(bits(alone)).toEqual(bits(together.subarray(t * outDim, (t + 1) * outDim)));
    }
  });
});

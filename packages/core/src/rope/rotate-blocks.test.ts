import { describe, expect, it } from 'vitest';
import type { RopePairing } from '../config/model-config.js';
import { SeededRandom } from '../random/seeded-random.js';
import { applyRotary } from './apply-rotary.js';
import { makeRegime } from './regime.js';
import { type HeadBlock, rotateBlocks } from './rotate-blocks.js';
import { rotaryTables } from './rotary-tables.js';

const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

describe('rotateBlocks', () => {
  // head_dim / rotary pairs: full and partial rotary, pair counts that are and are not multiples of 4.
  const shapes = [
    [16, 8],
    [64, 32],
    [6, 3],
    [10, 3],
    [96, 48],
    [8, 2],
  ] as const;
  for (const pairing of ['rotate-half', 'interleaved'] as RopePairing[]) {
    for (const [headDim, half] of shapes) {
      it(`equals applyRotary vector by vector, bit for bit (${pairing}, head_dim ${headDim}, ${half} pairs, 1–9 blocks)`, () => {
        // Seeded, so the cases are reproducible.
        const random = new SeededRandom(headDim * 31 + half + (pairing === 'rotate-half' ? 0 : 7));
        const rand = () => random.next();
        const invFreq = Float32Array.from({ length: half }, (_, i) => Math.pow(500, -i / half) * (0.5 + rand()));
        const regime = makeRegime('r', 'static', invFreq, Float64Array.from(invFreq), 1.2);
        const positions = Array.from({ length: 40 }, () => Math.floor(rand() * 5000));
        const tables = rotaryTables(regime, positions);
        for (const numBlocks of [1, 2, 3, 4, 5, 8, 9]) {
          const count = 1 + Math.floor(rand() * 12);
          // Vectors k of block b at offset_b + k·stride, stride wider than head_dim (as in [token][head][dim]).
          const stride = headDim * (numBlocks + 1);
          const data = Float32Array.from({ length: stride * (count + 1) }, () => rand() * 8 - 4);
          const expected = data.slice();
          const rows = Int32Array.from({ length: count }, () => Math.floor(rand() * positions.length));
          const blocks: HeadBlock[] = Array.from({ length: numBlocks }, (_, b) => ({ data, offset: 3 + b * headDim }));
          for (const { offset } of blocks) {
            for (let k = 0; k < count; k++) applyRotary(expected, offset + k * stride, 1, headDim, pairing, tables, rows[k]!);
          }
          rotateBlocks(blocks, count, stride, pairing, tables, rows);
          expect(bits(data), `${numBlocks} blocks × ${count} vectors`).toEqual(bits(expected));
        }
      });
    }
  }

  it('blocks may live in different arrays (one per layer)', () => {
    const invFreq = Float32Array.from([1, 0.3, 0.1, 0.03, 0.01]);
    const regime = makeRegime('r', 'static', invFreq, Float64Array.from(invFreq), 1);
    const tables = rotaryTables(regime, [0, 1, 2, 3]);
    const arrays = Array.from({ length: 6 }, (_, l) => Float32Array.from({ length: 40 }, (_, i) => Math.sin(l * 40 + i)));
    const expected = arrays.map((a) => a.slice());
    for (const e of expected) for (let k = 0; k < 4; k++) applyRotary(e, k * 10, 1, 10, 'rotate-half', tables, k);
    rotateBlocks(arrays.map((data) => ({ data, offset: 0 })), 4, 10, 'rotate-half', tables, [0, 1, 2, 3]);
    expect(arrays.map(bits)).toEqual(expected.map(bits));
  });
});

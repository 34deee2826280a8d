import { describe, expect, it } from 'vitest';
import { attention } from './attention.js';

/** Causal GQA attention in float64, one query row and head at a time. */
function naive(
  q: Float32Array,
  n: number,
  past: number,
  keys: Float32Array,
  values: Float32Array,
  capacity: number,
  numHeads: number,
  numKvHeads: number,
  headDim: number,
): Float64Array {
  const out = new Float64Array(n * numHeads * headDim);
  const group = numHeads / numKvHeads;
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < numHeads; h++) {
      const kv = Math.floor(h / group) * capacity * headDim;
      const qo = (t * numHeads + h) * headDim;
      const span = past + t + 1;
      const s = Array.from({ length: span }, (_, j) => {
        let d = 0;
        for (let i = 0; i < headDim; i++) d += q[qo + i]! * keys[kv + j * headDim + i]!;
        return d / Math.sqrt(headDim);
      });
      const max = Math.max(...s);
      const e = s.map((v) => Math.exp(v - max));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let i = 0; i < headDim; i++) {
        let a = 0;
        for (let j = 0; j < span; j++) a += e[j]! * values[kv + j * headDim + i]!;
        out[qo + i] = a / sum;
      }
    }
  }
  return out;
}

describe('attention', () => {
  // Decode (1 row), shadow chunks (2, 3, 5 rows), a prompt (9 rows); head dims with and without
  // leftovers past the 8-wide value groups and 4-wide score groups; GQA and MHA; tiles of 64 keys crossed.
  const cases = [
    [1, 130, 16, 4, 2],
    [2, 70, 64, 2, 2],
    [3, 65, 10, 3, 1],
    [5, 0, 6, 2, 2],
    [9, 200, 12, 4, 4],
    [1, 0, 8, 2, 1],
  ] as const;
  for (const [n, past, headDim, numHeads, numKvHeads] of cases) {
    it(`matches float64 causal attention (${n} rows over ${past} cached, head_dim ${headDim}, ${numHeads}/${numKvHeads} heads)`, () => {
      const capacity = past + n + 5;
      const keys = Float32Array.from({ length: numKvHeads * capacity * headDim }, (_, i) => Math.sin(i * 0.37));
      const values = Float32Array.from({ length: numKvHeads * capacity * headDim }, (_, i) => Math.cos(i * 0.11));
      const width = numHeads * headDim;
      // The rows sit at row offset 2 of a larger buffer, as a second sequence's rows of a batch do.
      const q = Float32Array.from({ length: (n + 3) * width }, (_, i) => Math.sin(i * 0.73) * 2);
      const out = new Float32Array((n + 3) * width);
      attention(q, 2, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out, new Float64Array(4 * (past + n)));
      const want = naive(q.subarray(2 * width), n, past, keys, values, capacity, numHeads, numKvHeads, headDim);
      for (let i = 0; i < want.length; i++) expect(Math.abs(out[2 * width + i]! - want[i]!), `at ${i}`).toBeLessThanOrEqual(1e-6);
      expect(out.subarray(0, 2 * width).every((v) => v === 0)).toBe(true);
      expect(out.subarray((n + 2) * width).every((v) => v === 0)).toBe(true);
    });
  }
});

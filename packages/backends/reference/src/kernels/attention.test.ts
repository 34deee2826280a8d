import { describe, expect, it } from 'vitest';
import { ATTENTION_CASES, attentionOperands, describeAttentionCase } from '../../../../../test/support/attention-cases.js';
import { type AttentionOperands, attention } from './attention.js';

/** Causal GQA attention in float64, one query row and head at a time; `out` is left alone. */
function naive(...[q, qRow, n, past, keys, values, capacity, numHeads, numKvHeads, headDim]: AttentionOperands): Float64Array {
  const out = new Float64Array(n * numHeads * headDim);
  const group = numHeads / numKvHeads;
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < numHeads; h++) {
      const kv = Math.floor(h / group) * capacity * headDim;
      const o = (t * numHeads + h) * headDim;
      const qo = qRow * numHeads * headDim + o;
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
        out[o + i] = a / sum;
      }
    }
  }
  return out;
}

describe('attention', () => {
  for (const c of ATTENTION_CASES) {
    it(`matches float64 causal attention (${describeAttentionCase(c)})`, () => {
      const operands = attentionOperands(c);
      const [, qRow, n, past, , , , numHeads, , headDim, out] = operands;
      attention(...operands, new Float64Array(4 * (past + n)));
      const want = naive(...operands);
      const width = numHeads * headDim;
      for (let i = 0; i < want.length; i++) expect(Math.abs(out[qRow * width + i]! - want[i]!), `at ${i}`).toBeLessThanOrEqual(1e-6);
      expect(out.subarray(0, qRow * width).every((v) => v === 0)).toBe(true);
      expect(out.subarray((qRow + n) * width).every((v) => v === 0)).toBe(true);
    });
  }
});

/**
 * Causal attention of `n` new query rows over a cache whose first `past` indices are old tokens
 * and whose next `n` indices hold the new tokens' keys/values (written before this call).
 * Query row t sees cache indices [0, past + t].
 *
 * `q`: `[n][numHeads·headDim]` (already rotated), from row offset `qRow` of a larger buffer;
 * keys/values: one layer's cache storage, `[kvHead][index][headDim]` with `capacity` indices per
 * head; `out`: `[n][numHeads·headDim]` from the same row offset. Query heads share KV heads in
 * groups (GQA). Scores and softmax in float64, `scratch` holds at least past + n scores.
 */
export function attention(
  q: Float32Array,
  qRow: number,
  n: number,
  past: number,
  keys: Float32Array,
  values: Float32Array,
  capacity: number,
  numHeads: number,
  numKvHeads: number,
  headDim: number,
  out: Float32Array,
  scratch: Float64Array,
): void {
  const group = numHeads / numKvHeads;
  const width = numHeads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  const acc = new Float64Array(headDim);
  for (let t = 0; t < n; t++) {
    const span = past + t + 1;
    for (let h = 0; h < numHeads; h++) {
      const qOff = (qRow + t) * width + h * headDim;
      const kvBase = Math.floor(h / group) * capacity * headDim;
      let max = -Infinity;
      for (let j = 0; j < span; j++) {
        const kOff = kvBase + j * headDim;
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[qOff + d]! * keys[kOff + d]!;
        s *= scale;
        scratch[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j < span; j++) {
        const e = Math.exp(scratch[j]! - max);
        scratch[j] = e;
        sum += e;
      }
      const oOff = (qRow + t) * width + h * headDim;
      acc.fill(0);
      for (let j = 0; j < span; j++) {
        const p = scratch[j]!;
        const vOff = kvBase + j * headDim;
        for (let d = 0; d < headDim; d++) acc[d]! += p * values[vOff + d]!;
      }
      const norm = 1 / sum;
      for (let d = 0; d < headDim; d++) out[oOff + d] = acc[d]! * norm;
    }
  }
}

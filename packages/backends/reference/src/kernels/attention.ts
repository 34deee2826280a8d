/**
 * Causal attention of `n` new query rows over a cache whose first `past` indices are old tokens
 * and whose next `n` indices hold the new tokens' keys/values (written before this call).
 * Query row t sees cache indices [0, past + t].
 *
 * `q`: `[n][numHeads·headDim]` (already rotated), from row offset `qRow` of a larger buffer;
 * keys/values: one layer's cache storage, `[kvHead][index][headDim]` with `capacity` indices per
 * head; `out`: `[n][numHeads·headDim]` from the same row offset. Query heads share KV heads in
 * groups (GQA). Scores, softmax and the weighted sum in float64; `scratch` holds at least
 * 4·(past + n) scores.
 *
 * Query rows go in blocks of four, so each key row read from the cache serves four dot products
 * (prefill is bound by these n² reads).
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
  const stride = past + n; // scores of block row b live at scratch[b·stride …]
  for (let h = 0; h < numHeads; h++) {
    const kvBase = Math.floor(h / group) * capacity * headDim;
    for (let t0 = 0; t0 < n; t0 += 4) {
      const rows = Math.min(4, n - t0);
      const shared = past + t0 + 1; // keys every row of the block sees
      const q0 = (qRow + t0) * width + h * headDim;
      if (rows === 4) {
        scoresBlock4(q, q0, width, keys, kvBase, headDim, shared, scratch, stride, scale);
      } else {
        for (let b = 0; b < rows; b++) scoresRow(q, q0 + b * width, keys, kvBase, headDim, 0, shared, scratch, b * stride, scale);
      }
      for (let b = 1; b < rows; b++) {
        scoresRow(q, q0 + b * width, keys, kvBase, headDim, shared, shared + b, scratch, b * stride, scale);
      }
      for (let b = 0; b < rows; b++) {
        const span = shared + b;
        const s = b * stride;
        let max = -Infinity;
        for (let j = 0; j < span; j++) if (scratch[s + j]! > max) max = scratch[s + j]!;
        let sum = 0;
        for (let j = 0; j < span; j++) {
          const e = Math.exp(scratch[s + j]! - max);
          scratch[s + j] = e;
          sum += e;
        }
        // Weighted sum of values, four output dims at a time held in registers.
        const o = q0 + b * width;
        const norm = 1 / sum;
        let d = 0;
        for (; d + 4 <= headDim; d += 4) {
          let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
          for (let j = 0, v = kvBase + d; j < span; j++, v += headDim) {
            const p = scratch[s + j]!;
            a0 += p * values[v]!;
            a1 += p * values[v + 1]!;
            a2 += p * values[v + 2]!;
            a3 += p * values[v + 3]!;
          }
          out[o + d] = a0 * norm;
          out[o + d + 1] = a1 * norm;
          out[o + d + 2] = a2 * norm;
          out[o + d + 3] = a3 * norm;
        }
        for (; d < headDim; d++) {
          let a = 0;
          for (let j = 0, v = kvBase + d; j < span; j++, v += headDim) a += scratch[s + j]! * values[v]!;
          out[o + d] = a * norm;
        }
      }
    }
  }
}

/** Scaled dot products of one query with keys [from, to), into scratch[at + j]. */
function scoresRow(
  q: Float32Array,
  qOff: number,
  keys: Float32Array,
  kvBase: number,
  headDim: number,
  from: number,
  to: number,
  scratch: Float64Array,
  at: number,
  scale: number,
): void {
  for (let j = from; j < to; j++) {
    const k = kvBase + j * headDim;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    let d = 0;
    for (; d + 4 <= headDim; d += 4) {
      s0 += q[qOff + d]! * keys[k + d]!;
      s1 += q[qOff + d + 1]! * keys[k + d + 1]!;
      s2 += q[qOff + d + 2]! * keys[k + d + 2]!;
      s3 += q[qOff + d + 3]! * keys[k + d + 3]!;
    }
    for (; d < headDim; d++) s0 += q[qOff + d]! * keys[k + d]!;
    scratch[at + j] = (s0 + s1 + s2 + s3) * scale;
  }
}

/** Four consecutive query rows against keys [0, count): each key element is loaded once for all four. */
function scoresBlock4(
  q: Float32Array,
  q0: number,
  width: number,
  keys: Float32Array,
  kvBase: number,
  headDim: number,
  count: number,
  scratch: Float64Array,
  stride: number,
  scale: number,
): void {
  const q1 = q0 + width;
  const q2 = q1 + width;
  const q3 = q2 + width;
  for (let j = 0; j < count; j++) {
    const k = kvBase + j * headDim;
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (let d = 0; d < headDim; d++) {
      const kv = keys[k + d]!;
      a0 += q[q0 + d]! * kv;
      a1 += q[q1 + d]! * kv;
      a2 += q[q2 + d]! * kv;
      a3 += q[q3 + d]! * kv;
    }
    scratch[j] = a0 * scale;
    scratch[stride + j] = a1 * scale;
    scratch[2 * stride + j] = a2 * scale;
    scratch[3 * stride + j] = a3 * scale;
  }
}

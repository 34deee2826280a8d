/**
 * The operands every attention kernel takes, before its scratch: `n` query rows of `q` from row
 * `qRow`, `[row][numHeads·headDim]` (already rotated); one layer's cache storage, keys and values
 * `[kvHead][index][headDim]` with `capacity` indices per head, the first `past` old tokens then the
 * `n` new ones (written before the call); `out`, `[row][numHeads·headDim]`, written from row `qRow`.
 */
export type AttentionOperands = [
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
];

/**
 * Causal attention of `n` new query rows over a cache (see {@link AttentionOperands}): query row t
 * sees cache indices [0, past + t]. Query heads share KV heads in groups (GQA). Scores, softmax
 * and the weighted sum in float64; `scratch` holds at least 4·(past + n) scores.
 *
 * Query rows go in blocks of four, so each key row read from the cache serves four dot products
 * (prefill is bound by these n² reads).
 */
export function attention(
  ...[q, qRow, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out, scratch]: [...AttentionOperands, scratch: Float64Array]
): void {
  const group = numHeads / numKvHeads;
  const width = numHeads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  const stride = past + n; // scores of block row b live at scratch[b·stride …]
  const acc = new Float64Array(headDim);
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
        weightedValues(scratch, s, span, values, kvBase, headDim, 1 / sum, out, q0 + b * width, acc);
      }
    }
  }
}

/**
 * `out[o + d] = norm · Σ_j p[s + j]·values[j][d]` over j < span, each dim summed in j order in
 * float64. Values go in tiles of 64 keys (16 KiB at head_dim 64, cache-resident) and eight dims
 * at a time held in registers: each value row is read from memory once instead of once per group
 * of dims. `acc` (head_dim float64s) carries the sums from tile to tile.
 */
function weightedValues(
  p: Float64Array,
  s: number,
  span: number,
  values: Float32Array,
  kvBase: number,
  headDim: number,
  norm: number,
  out: Float32Array,
  o: number,
  acc: Float64Array,
): void {
  acc.fill(0);
  const octets = headDim - (headDim % 8);
  for (let j0 = 0; j0 < span; j0 += 64) {
    const j1 = Math.min(span, j0 + 64);
    let d = 0;
    for (; d < octets; d += 8) {
      let a0 = acc[d]!, a1 = acc[d + 1]!, a2 = acc[d + 2]!, a3 = acc[d + 3]!;
      let a4 = acc[d + 4]!, a5 = acc[d + 5]!, a6 = acc[d + 6]!, a7 = acc[d + 7]!;
      for (let j = j0, v = kvBase + j0 * headDim + d; j < j1; j++, v += headDim) {
        const w = p[s + j]!;
        a0 += w * values[v]!; a1 += w * values[v + 1]!; a2 += w * values[v + 2]!; a3 += w * values[v + 3]!;
        a4 += w * values[v + 4]!; a5 += w * values[v + 5]!; a6 += w * values[v + 6]!; a7 += w * values[v + 7]!;
      }
      acc[d] = a0; acc[d + 1] = a1; acc[d + 2] = a2; acc[d + 3] = a3;
      acc[d + 4] = a4; acc[d + 5] = a5; acc[d + 6] = a6; acc[d + 7] = a7;
    }
    for (; d < headDim; d++) {
      let a = acc[d]!;
      for (let j = j0, v = kvBase + j0 * headDim + d; j < j1; j++, v += headDim) a += p[s + j]! * values[v]!;
      acc[d] = a;
    }
  }
  for (let d = 0; d < headDim; d++) out[o + d] = acc[d]! * norm;
}

/**
 * Scaled dot products of one query with keys [from, to), into scratch[at + j]. Each key's dot
 * product is four partial sums (dims d mod 4) added at the end; two keys go per pass so each query
 * value loaded serves both.
 */
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
  const quads = headDim - (headDim % 4);
  let j = from;
  for (; j + 2 <= to; j += 2) {
    const k = kvBase + j * headDim;
    const m = k + headDim;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    let t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    let d = 0;
    for (; d < quads; d += 4) {
      const a = q[qOff + d]!, b = q[qOff + d + 1]!, c = q[qOff + d + 2]!, e = q[qOff + d + 3]!;
      s0 += a * keys[k + d]!; s1 += b * keys[k + d + 1]!; s2 += c * keys[k + d + 2]!; s3 += e * keys[k + d + 3]!;
      t0 += a * keys[m + d]!; t1 += b * keys[m + d + 1]!; t2 += c * keys[m + d + 2]!; t3 += e * keys[m + d + 3]!;
    }
    for (; d < headDim; d++) {
      s0 += q[qOff + d]! * keys[k + d]!;
      t0 += q[qOff + d]! * keys[m + d]!;
    }
    scratch[at + j] = (s0 + s1 + s2 + s3) * scale;
    scratch[at + j + 1] = (t0 + t1 + t2 + t3) * scale;
  }
  for (; j < to; j++) {
    const k = kvBase + j * headDim;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    let d = 0;
    for (; d < quads; d += 4) {
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

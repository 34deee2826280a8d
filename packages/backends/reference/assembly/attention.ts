import { exp4 } from './simd-exp';

// Causal attention of n new query rows over one layer's cache, as the TypeScript kernel
// (`src/kernels/attention.ts`) computes it, in float32 SIMD:
//   q, out: `[n][numHeads·headDim]`; keys, values: `[kvHead][index][headDim]`, `capacity` indices
//   per head, the first `past` old tokens then the n new ones. Query row t sees indices
//   [0, past + t]. Query heads share KV heads in groups (GQA). `scores` holds 2·(past + n) floats.
// Prefill rows go in pairs: each key and value row loaded serves both queries. Heads are
// independent: threads split them, each with its own `scores`.

/** Attention of query heads [h0, h1) for every query row. */
export function attention(
  q: usize, n: i32, past: i32, keys: usize, values: usize, capacity: i32,
  numHeads: i32, numKvHeads: i32, headDim: i32, out: usize, h0: i32, h1: i32, scores: usize,
): void {
  const group = numHeads / numKvHeads;
  const width = numHeads * headDim;
  const scale = <f32>(1 / Math.sqrt(<f64>headDim));
  const headBytes = (<usize>capacity) * headDim << 2;
  const simd = (headDim & 3) == 0;
  const second = scores + ((<usize>(past + n)) << 2);
  for (let h = h0; h < h1; h++) {
    const kv = (<usize>(h / group)) * headBytes;
    let t = 0;
    if (simd) {
      for (; t + 2 <= n; t += 2) {
        const qp = q + (((<usize>t) * width + h * headDim) << 2);
        const span = past + t + 1; // row t's keys; row t + 1 sees one more
        scoresPair(qp, qp + ((<usize>width) << 2), keys + kv, headDim, span, scores, second, scale);
        const sum0 = softmaxNumerators(scores, span);
        const sum1 = softmaxNumerators(second, span + 1);
        const o = out + (((<usize>t) * width + h * headDim) << 2);
        weightedValuesPair(scores, second, span, values + kv, headDim, <f32>(1 / sum0), <f32>(1 / sum1), o, o + ((<usize>width) << 2));
      }
    }
    for (; t < n; t++) {
      const qp = q + (((<usize>t) * width + h * headDim) << 2);
      const span = past + t + 1;
      if (simd) scoresSimd(qp, keys + kv, headDim, span, scores, scale);
      else scoresScalar(qp, keys + kv, headDim, span, scores, scale);
      const sum = softmaxNumerators(scores, span);
      weightedValues(scores, span, values + kv, headDim, <f32>(1 / sum), out + (((<usize>t) * width + h * headDim) << 2));
    }
  }
}

/**
 * Scores of two query rows: keys [0, span) for both (four keys per pass, 8 accumulators), key
 * `span` for the second alone. Same sums, in the same order, as {@link scoresSimd}.
 */
function scoresPair(qa: usize, qb: usize, kp: usize, headDim: i32, span: i32, sa: usize, sb: usize, scale: f32): void {
  const rowBytes = (<usize>headDim) << 2;
  const sv = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= span; j += 4) {
    const k0 = kp + (<usize>j) * rowBytes;
    const k1 = k0 + rowBytes;
    const k2 = k1 + rowBytes;
    const k3 = k2 + rowBytes;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
    for (let d: usize = 0; d < rowBytes; d += 16) {
      const x = v128.load(qa + d);
      const y = v128.load(qb + d);
      let k = v128.load(k0 + d);
      a0 = f32x4.add(a0, f32x4.mul(x, k)); b0 = f32x4.add(b0, f32x4.mul(y, k));
      k = v128.load(k1 + d);
      a1 = f32x4.add(a1, f32x4.mul(x, k)); b1 = f32x4.add(b1, f32x4.mul(y, k));
      k = v128.load(k2 + d);
      a2 = f32x4.add(a2, f32x4.mul(x, k)); b2 = f32x4.add(b2, f32x4.mul(y, k));
      k = v128.load(k3 + d);
      a3 = f32x4.add(a3, f32x4.mul(x, k)); b3 = f32x4.add(b3, f32x4.mul(y, k));
    }
    v128.store(sa + ((<usize>j) << 2), f32x4.mul(transposeAdd(a0, a1, a2, a3), sv));
    v128.store(sb + ((<usize>j) << 2), f32x4.mul(transposeAdd(b0, b1, b2, b3), sv));
  }
  for (; j < span; j++) {
    store<f32>(sa + ((<usize>j) << 2), dot(qa, kp + (<usize>j) * rowBytes, rowBytes) * scale);
    store<f32>(sb + ((<usize>j) << 2), dot(qb, kp + (<usize>j) * rowBytes, rowBytes) * scale);
  }
  store<f32>(sb + ((<usize>span) << 2), dot(qb, kp + (<usize>span) * rowBytes, rowBytes) * scale);
}

/** Lane i of the result is the sum of a_i's four lanes. */
// @ts-ignore: decorator
@inline
function transposeAdd(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const s01 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 1, 4, 5), v128.shuffle<f32>(a0, a1, 2, 3, 6, 7));
  const s23 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 1, 4, 5), v128.shuffle<f32>(a2, a3, 2, 3, 6, 7));
  return f32x4.add(v128.shuffle<f32>(s01, s23, 0, 2, 4, 6), v128.shuffle<f32>(s01, s23, 1, 3, 5, 7));
}

/** One query quad-wise against one key, lanes summed as in a transpose-add. */
// @ts-ignore: decorator
@inline
function dot(qp: usize, kp: usize, rowBytes: usize): f32 {
  let a = f32x4.splat(0);
  for (let d: usize = 0; d < rowBytes; d += 16) a = f32x4.add(a, f32x4.mul(v128.load(qp + d), v128.load(kp + d)));
  const s01 = f32x4.add(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(s01, 0) + f32x4.extract_lane(s01, 1);
}

/**
 * Weighted values of two rows: j < span for both, 16 dims (8 accumulators) per pass over the
 * values, then the second row's extra key. Head dims not a multiple of 16 finish a quad, then a
 * float, at a time.
 */
function weightedValuesPair(pa: usize, pb: usize, span: i32, vp: usize, headDim: i32, na: f32, nb: f32, oa: usize, ob: usize): void {
  const rowBytes = (<usize>headDim) << 2;
  const end = vp + (<usize>span) * rowBytes;
  const last = end; // value row `span`, seen by the second row only
  const nav = f32x4.splat(na);
  const nbv = f32x4.splat(nb);
  const pLast = f32x4.splat(load<f32>(pb + ((<usize>span) << 2)));
  let d: usize = 0;
  for (; d + 64 <= rowBytes; d += 64) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
    let ja = pa;
    let jb = pb;
    for (let v = vp + d; v < end; v += rowBytes, ja += 4, jb += 4) {
      const x = f32x4.splat(load<f32>(ja));
      const y = f32x4.splat(load<f32>(jb));
      let w = v128.load(v);
      a0 = f32x4.add(a0, f32x4.mul(x, w)); b0 = f32x4.add(b0, f32x4.mul(y, w));
      w = v128.load(v, 16);
      a1 = f32x4.add(a1, f32x4.mul(x, w)); b1 = f32x4.add(b1, f32x4.mul(y, w));
      w = v128.load(v, 32);
      a2 = f32x4.add(a2, f32x4.mul(x, w)); b2 = f32x4.add(b2, f32x4.mul(y, w));
      w = v128.load(v, 48);
      a3 = f32x4.add(a3, f32x4.mul(x, w)); b3 = f32x4.add(b3, f32x4.mul(y, w));
    }
    const l = last + d;
    b0 = f32x4.add(b0, f32x4.mul(pLast, v128.load(l)));
    b1 = f32x4.add(b1, f32x4.mul(pLast, v128.load(l, 16)));
    b2 = f32x4.add(b2, f32x4.mul(pLast, v128.load(l, 32)));
    b3 = f32x4.add(b3, f32x4.mul(pLast, v128.load(l, 48)));
    v128.store(oa + d, f32x4.mul(a0, nav)); v128.store(oa + d, f32x4.mul(a1, nav), 16);
    v128.store(oa + d, f32x4.mul(a2, nav), 32); v128.store(oa + d, f32x4.mul(a3, nav), 48);
    v128.store(ob + d, f32x4.mul(b0, nbv)); v128.store(ob + d, f32x4.mul(b1, nbv), 16);
    v128.store(ob + d, f32x4.mul(b2, nbv), 32); v128.store(ob + d, f32x4.mul(b3, nbv), 48);
  }
  for (; d + 16 <= rowBytes; d += 16) {
    let a = f32x4.splat(0);
    let b = f32x4.splat(0);
    let ja = pa;
    let jb = pb;
    for (let v = vp + d; v < end; v += rowBytes, ja += 4, jb += 4) {
      const w = v128.load(v);
      a = f32x4.add(a, f32x4.mul(f32x4.splat(load<f32>(ja)), w));
      b = f32x4.add(b, f32x4.mul(f32x4.splat(load<f32>(jb)), w));
    }
    b = f32x4.add(b, f32x4.mul(pLast, v128.load(last + d)));
    v128.store(oa + d, f32x4.mul(a, nav));
    v128.store(ob + d, f32x4.mul(b, nbv));
  }
}

/** scores[j] = scale·(q · k_j), four keys per pass (each query quad loaded serves four keys). */
function scoresSimd(qp: usize, kp: usize, headDim: i32, span: i32, scores: usize, scale: f32): void {
  const rowBytes = (<usize>headDim) << 2;
  const sv = f32x4.splat(scale);
  let j = 0;
  for (; j + 4 <= span; j += 4) {
    const k0 = kp + (<usize>j) * rowBytes;
    const k1 = k0 + rowBytes;
    const k2 = k1 + rowBytes;
    const k3 = k2 + rowBytes;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    for (let d: usize = 0; d < rowBytes; d += 16) {
      const qv = v128.load(qp + d);
      a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + d)));
      a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + d)));
      a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + d)));
      a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + d)));
    }
    v128.store(scores + ((<usize>j) << 2), f32x4.mul(transposeAdd(a0, a1, a2, a3), sv));
  }
  for (; j < span; j++) store<f32>(scores + ((<usize>j) << 2), dot(qp, kp + (<usize>j) * rowBytes, rowBytes) * scale);
}

/** Head dims that are not a multiple of four: plain float32 dot products. */
function scoresScalar(qp: usize, kp: usize, headDim: i32, span: i32, scores: usize, scale: f32): void {
  const rowBytes = (<usize>headDim) << 2;
  for (let j = 0; j < span; j++) {
    const k0 = kp + (<usize>j) * rowBytes;
    let s: f32 = 0;
    for (let d: usize = 0; d < rowBytes; d += 4) s += load<f32>(qp + d) * load<f32>(k0 + d);
    store<f32>(scores + ((<usize>j) << 2), s * scale);
  }
}

/** Replaces scores[0 … span) by exp(score − max) and returns their sum (summed in float64). */
function softmaxNumerators(scores: usize, span: i32): f64 {
  let j = 0;
  let mv = f32x4.splat(-Infinity);
  for (; j + 4 <= span; j += 4) mv = f32x4.max(mv, v128.load(scores + ((<usize>j) << 2)));
  let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
  for (let i = j; i < span; i++) m = max(m, load<f32>(scores + ((<usize>i) << 2)));
  const msplat = f32x4.splat(m);
  let sum = f64x2.splat(0);
  j = 0;
  for (; j + 4 <= span; j += 4) {
    const at = scores + ((<usize>j) << 2);
    const e = exp4(f32x4.sub(v128.load(at), msplat));
    v128.store(at, e);
    sum = f64x2.add(sum, f64x2.add(f64x2.promote_low_f32x4(e), f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 0, 1))));
  }
  let total = f64x2.extract_lane(sum, 0) + f64x2.extract_lane(sum, 1);
  for (; j < span; j++) {
    const at = scores + ((<usize>j) << 2);
    const e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(at) - m)), 0);
    store<f32>(at, e);
    total += e;
  }
  return total;
}

/**
 * out[d] = norm · Σ_j p[j]·values[j][d]. Dims go eight quads (32 floats) at a time held in
 * registers over every j; the rest a quad, then a float, at a time.
 */
function weightedValues(p: usize, span: i32, vp: usize, headDim: i32, norm: f32, out: usize): void {
  const rowBytes = (<usize>headDim) << 2;
  const end = vp + (<usize>span) * rowBytes;
  const nv = f32x4.splat(norm);
  let d: usize = 0;
  for (; d + 128 <= rowBytes; d += 128) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
    let pj = p;
    for (let v = vp + d; v < end; v += rowBytes, pj += 4) {
      const w = f32x4.splat(load<f32>(pj));
      a0 = f32x4.add(a0, f32x4.mul(w, v128.load(v)));
      a1 = f32x4.add(a1, f32x4.mul(w, v128.load(v, 16)));
      a2 = f32x4.add(a2, f32x4.mul(w, v128.load(v, 32)));
      a3 = f32x4.add(a3, f32x4.mul(w, v128.load(v, 48)));
      a4 = f32x4.add(a4, f32x4.mul(w, v128.load(v, 64)));
      a5 = f32x4.add(a5, f32x4.mul(w, v128.load(v, 80)));
      a6 = f32x4.add(a6, f32x4.mul(w, v128.load(v, 96)));
      a7 = f32x4.add(a7, f32x4.mul(w, v128.load(v, 112)));
    }
    const o = out + d;
    v128.store(o, f32x4.mul(a0, nv)); v128.store(o, f32x4.mul(a1, nv), 16);
    v128.store(o, f32x4.mul(a2, nv), 32); v128.store(o, f32x4.mul(a3, nv), 48);
    v128.store(o, f32x4.mul(a4, nv), 64); v128.store(o, f32x4.mul(a5, nv), 80);
    v128.store(o, f32x4.mul(a6, nv), 96); v128.store(o, f32x4.mul(a7, nv), 112);
  }
  for (; d + 16 <= rowBytes; d += 16) {
    let a = f32x4.splat(0);
    let pj = p;
    for (let v = vp + d; v < end; v += rowBytes, pj += 4) a = f32x4.add(a, f32x4.mul(f32x4.splat(load<f32>(pj)), v128.load(v)));
    v128.store(out + d, f32x4.mul(a, nv));
  }
  for (; d < rowBytes; d += 4) {
    let a: f32 = 0;
    let pj = p;
    for (let v = vp + d; v < end; v += rowBytes, pj += 4) a += load<f32>(pj) * load<f32>(v);
    store<f32>(out + d, a * norm);
  }
}

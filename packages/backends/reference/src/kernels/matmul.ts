/**
 * y[t][o] = Σ_k x[t][k]·w[o][k] (+ bias[o]) for `rows` input rows: `x` is `[rows][inDim]`,
 * `w` is HF's Linear layout `[outDim][inDim]`, `y` is `[rows][outDim]`.
 *
 * Register-blocked 4 rows × 4 outputs: each weight row is read once per 4 input rows and each input
 * row once per 4 weight rows, so a batch of rows (a prompt, or several sequences of one forward
 * call) shares one pass over the weights; leftover rows go three (3 × 4) or two (2 × 8) together, one
 * alone (1 × 8).
 * Every output is summed in k order in float64 (JS numbers) whichever path computes it, so the
 * result does not depend on how rows are batched.
 */
export function matmul(
  x: Float32Array,
  rows: number,
  inDim: number,
  w: Float32Array,
  outDim: number,
  y: Float32Array,
  bias?: Float32Array,
): void {
  let t = 0;
  for (; t + 4 <= rows; t += 4) {
    const x0 = t * inDim;
    const x1 = x0 + inDim;
    const x2 = x1 + inDim;
    const x3 = x2 + inDim;
    let o = 0;
    for (; o + 4 <= outDim; o += 4) {
      const w0 = o * inDim;
      const w1 = w0 + inDim;
      const w2 = w1 + inDim;
      const w3 = w2 + inDim;
      let a00 = 0, a01 = 0, a02 = 0, a03 = 0;
      let a10 = 0, a11 = 0, a12 = 0, a13 = 0;
      let a20 = 0, a21 = 0, a22 = 0, a23 = 0;
      let a30 = 0, a31 = 0, a32 = 0, a33 = 0;
      for (let k = 0; k < inDim; k++) {
        const b0 = w[w0 + k]!, b1 = w[w1 + k]!, b2 = w[w2 + k]!, b3 = w[w3 + k]!;
        const c0 = x[x0 + k]!, c1 = x[x1 + k]!, c2 = x[x2 + k]!, c3 = x[x3 + k]!;
        a00 += c0 * b0; a01 += c0 * b1; a02 += c0 * b2; a03 += c0 * b3;
        a10 += c1 * b0; a11 += c1 * b1; a12 += c1 * b2; a13 += c1 * b3;
        a20 += c2 * b0; a21 += c2 * b1; a22 += c2 * b2; a23 += c2 * b3;
        a30 += c3 * b0; a31 += c3 * b1; a32 += c3 * b2; a33 += c3 * b3;
      }
      const bb0 = bias ? bias[o]! : 0, bb1 = bias ? bias[o + 1]! : 0;
      const bb2 = bias ? bias[o + 2]! : 0, bb3 = bias ? bias[o + 3]! : 0;
      let r = t * outDim + o;
      y[r] = a00 + bb0; y[r + 1] = a01 + bb1; y[r + 2] = a02 + bb2; y[r + 3] = a03 + bb3;
      r += outDim;
      y[r] = a10 + bb0; y[r + 1] = a11 + bb1; y[r + 2] = a12 + bb2; y[r + 3] = a13 + bb3;
      r += outDim;
      y[r] = a20 + bb0; y[r + 1] = a21 + bb1; y[r + 2] = a22 + bb2; y[r + 3] = a23 + bb3;
      r += outDim;
      y[r] = a30 + bb0; y[r + 1] = a31 + bb1; y[r + 2] = a32 + bb2; y[r + 3] = a33 + bb3;
    }
    for (; o < outDim; o++) {
      for (let tt = t; tt < t + 4; tt++) y[tt * outDim + o] = dot(x, tt * inDim, w, o * inDim, inDim) + (bias ? bias[o]! : 0);
    }
  }
  // Rows left over (a decode row beside a shadow chunk, say) still share each weight row read.
  if (rows - t === 3) matvec3(x, t * inDim, inDim, w, outDim, y, t * outDim, bias);
  else if (rows - t === 2) matvec2(x, t * inDim, inDim, w, outDim, y, t * outDim, bias);
  else if (rows - t === 1) matvec(x, t * inDim, inDim, w, outDim, y, t * outDim, bias);
}

/**
 * The leftover-row kernels: a fixed number of input rows from `x[xOff]` (rows `inDim` apart) into
 * `y[yOff]` (rows `outDim` apart), every weight row against each, in matmul's layouts.
 */
type RowsKernel = (
  x: Float32Array,
  xOff: number,
  inDim: number,
  w: Float32Array,
  outDim: number,
  y: Float32Array,
  yOff: number,
  bias?: Float32Array,
) => void;

/** Three input rows against four weight rows at a time (12 sums in registers): each weight read serves all three. */
const matvec3: RowsKernel = (x, xOff, inDim, w, outDim, y, yOff, bias) => {
  const x1 = xOff + inDim;
  const x2 = x1 + inDim;
  let o = 0;
  for (; o + 4 <= outDim; o += 4) {
    const w0 = o * inDim, w1 = w0 + inDim, w2 = w1 + inDim, w3 = w2 + inDim;
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    let b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    let c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    for (let k = 0; k < inDim; k++) {
      const p = x[xOff + k]!;
      const q = x[x1 + k]!;
      const r = x[x2 + k]!;
      let v = w[w0 + k]!; a0 += p * v; b0 += q * v; c0 += r * v;
      v = w[w1 + k]!; a1 += p * v; b1 += q * v; c1 += r * v;
      v = w[w2 + k]!; a2 += p * v; b2 += q * v; c2 += r * v;
      v = w[w3 + k]!; a3 += p * v; b3 += q * v; c3 += r * v;
    }
    const bb0 = bias ? bias[o]! : 0, bb1 = bias ? bias[o + 1]! : 0;
    const bb2 = bias ? bias[o + 2]! : 0, bb3 = bias ? bias[o + 3]! : 0;
    let at = yOff + o;
    y[at] = a0 + bb0; y[at + 1] = a1 + bb1; y[at + 2] = a2 + bb2; y[at + 3] = a3 + bb3;
    at += outDim;
    y[at] = b0 + bb0; y[at + 1] = b1 + bb1; y[at + 2] = b2 + bb2; y[at + 3] = b3 + bb3;
    at += outDim;
    y[at] = c0 + bb0; y[at + 1] = c1 + bb1; y[at + 2] = c2 + bb2; y[at + 3] = c3 + bb3;
  }
  for (; o < outDim; o++) {
    const b = bias ? bias[o]! : 0;
    for (let t = 0; t < 3; t++) y[yOff + t * outDim + o] = dot(x, xOff + t * inDim, w, o * inDim, inDim) + b;
  }
};

/** Two input rows (at xOff and xOff + inDim) against eight weight rows at a time: each weight read serves both. */
const matvec2: RowsKernel = (x, xOff, inDim, w, outDim, y, yOff, bias) => {
  const x1 = xOff + inDim;
  let o = 0;
  for (; o + 8 <= outDim; o += 8) {
    const w0 = o * inDim, w1 = w0 + inDim, w2 = w1 + inDim, w3 = w2 + inDim;
    const w4 = w3 + inDim, w5 = w4 + inDim, w6 = w5 + inDim, w7 = w6 + inDim;
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    let b0 = 0, b1 = 0, b2 = 0, b3 = 0, b4 = 0, b5 = 0, b6 = 0, b7 = 0;
    for (let k = 0; k < inDim; k++) {
      const c = x[xOff + k]!;
      const d = x[x1 + k]!;
      let v = w[w0 + k]!; a0 += c * v; b0 += d * v;
      v = w[w1 + k]!; a1 += c * v; b1 += d * v;
      v = w[w2 + k]!; a2 += c * v; b2 += d * v;
      v = w[w3 + k]!; a3 += c * v; b3 += d * v;
      v = w[w4 + k]!; a4 += c * v; b4 += d * v;
      v = w[w5 + k]!; a5 += c * v; b5 += d * v;
      v = w[w6 + k]!; a6 += c * v; b6 += d * v;
      v = w[w7 + k]!; a7 += c * v; b7 += d * v;
    }
    if (bias) {
      a0 += bias[o]!; a1 += bias[o + 1]!; a2 += bias[o + 2]!; a3 += bias[o + 3]!;
      a4 += bias[o + 4]!; a5 += bias[o + 5]!; a6 += bias[o + 6]!; a7 += bias[o + 7]!;
      b0 += bias[o]!; b1 += bias[o + 1]!; b2 += bias[o + 2]!; b3 += bias[o + 3]!;
      b4 += bias[o + 4]!; b5 += bias[o + 5]!; b6 += bias[o + 6]!; b7 += bias[o + 7]!;
    }
    const r = yOff + o;
    const s = r + outDim;
    y[r] = a0; y[r + 1] = a1; y[r + 2] = a2; y[r + 3] = a3; y[r + 4] = a4; y[r + 5] = a5; y[r + 6] = a6; y[r + 7] = a7;
    y[s] = b0; y[s + 1] = b1; y[s + 2] = b2; y[s + 3] = b3; y[s + 4] = b4; y[s + 5] = b5; y[s + 6] = b6; y[s + 7] = b7;
  }
  for (; o < outDim; o++) {
    const b = bias ? bias[o]! : 0;
    y[yOff + o] = dot(x, xOff, w, o * inDim, inDim) + b;
    y[yOff + outDim + o] = dot(x, x1, w, o * inDim, inDim) + b;
  }
};

/** One input row: eight weight rows at a time (decode is weight-bound: each weight is read once, each input value serves eight rows). */
const matvec: RowsKernel = (x, xOff, inDim, w, outDim, y, yOff, bias) => {
  let o = 0;
  for (; o + 8 <= outDim; o += 8) {
    const w0 = o * inDim, w1 = w0 + inDim, w2 = w1 + inDim, w3 = w2 + inDim;
    const w4 = w3 + inDim, w5 = w4 + inDim, w6 = w5 + inDim, w7 = w6 + inDim;
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (let k = 0; k < inDim; k++) {
      const c = x[xOff + k]!;
      a0 += c * w[w0 + k]!; a1 += c * w[w1 + k]!; a2 += c * w[w2 + k]!; a3 += c * w[w3 + k]!;
      a4 += c * w[w4 + k]!; a5 += c * w[w5 + k]!; a6 += c * w[w6 + k]!; a7 += c * w[w7 + k]!;
    }
    // Bias added in float64 before the one rounding to float32, as in the blocked path.
    const r = yOff + o;
    if (bias) {
      a0 += bias[o]!; a1 += bias[o + 1]!; a2 += bias[o + 2]!; a3 += bias[o + 3]!;
      a4 += bias[o + 4]!; a5 += bias[o + 5]!; a6 += bias[o + 6]!; a7 += bias[o + 7]!;
    }
    y[r] = a0; y[r + 1] = a1; y[r + 2] = a2; y[r + 3] = a3;
    y[r + 4] = a4; y[r + 5] = a5; y[r + 6] = a6; y[r + 7] = a7;
  }
  for (; o < outDim; o++) y[yOff + o] = dot(x, xOff, w, o * inDim, inDim) + (bias ? bias[o]! : 0);
};

function dot(a: Float32Array, aOff: number, b: Float32Array, bOff: number, n: number): number {
  let s = 0;
  for (let k = 0; k < n; k++) s += a[aOff + k]! * b[bOff + k]!;
  return s;
}

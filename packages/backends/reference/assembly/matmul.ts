// Weight matrices live in linear memory as panels of 8 output rows interleaved along k:
// `[ceil(outDim/8)][inDim][8]` (float 8k + j of panel p is w[8p + j][k]; rows past outDim are
// zero). Two v128 loads then hold 8 outputs' weights at one k, and one broadcast input value
// multiplies into all 8.
//
// Sums are float64 (f64x2), as in the TypeScript kernel (src/kernels/matmul.ts): each float32
// product is exact in float64 and every output is summed in k order whichever micro-kernel computes
// it, so the result equals the TypeScript kernel's bit for bit and does not depend on batching.

// @ts-ignore: decorator
@inline const ROW_TILE: i32 = 64;

/**
 * y[t][o] = Σ_k x[t][k]·w[o][k] (+ bias[o]): `x` `[rows][inDim]`, `y` `[rows][outDim]`, `w` in the
 * panel layout above, `bias` 0 for none. Rows go in tiles of 64 (their inputs stay cache-resident
 * while every panel passes); within a tile 2 rows share each panel load, and a row left over (a
 * decode step) takes 2 panels at a time, so 8 accumulators are in flight either way.
 */
export function linear(x: usize, rows: i32, inDim: i32, w: usize, outDim: i32, y: usize, bias: usize): void {
  const panels = (outDim + 7) >> 3;
  const panelBytes = (<usize>inDim) << 5;
  for (let t0 = 0; t0 < rows; t0 += ROW_TILE) {
    const t1 = min(rows, t0 + ROW_TILE);
    const full = t0 + ((t1 - t0) & ~1);
    for (let p = 0; p < panels; p++) {
      for (let t = t0; t < full; t += 2) rows2(x, t, inDim, w + <usize>p * panelBytes, p << 3, outDim, y, bias);
    }
    for (let t = full; t < t1; t++) {
      let p = 0;
      for (; p + 2 <= panels; p += 2) panels2(x, t, inDim, w + <usize>p * panelBytes, panelBytes, p << 3, outDim, y, bias);
      for (; p < panels; p++) panels1(x, t, inDim, w + <usize>p * panelBytes, p << 3, outDim, y, bias);
    }
  }
}

/** Two input rows from `t` against one panel: 8 f64x2 accumulators. */
function rows2(x: usize, t: i32, inDim: i32, wp: usize, o: i32, outDim: i32, y: usize, bias: usize): void {
  const stride = (<usize>inDim) << 2;
  const x0 = x + (<usize>t) * stride;
  const x1 = x0 + stride;
  let a0 = f64x2.splat(0), a1 = f64x2.splat(0), a2 = f64x2.splat(0), a3 = f64x2.splat(0);
  let b0 = f64x2.splat(0), b1 = f64x2.splat(0), b2 = f64x2.splat(0), b3 = f64x2.splat(0);
  for (let k: usize = 0; k < stride; k += 4, wp += 32) {
    const lo = v128.load(wp);
    const hi = v128.load(wp, 16);
    const w0 = low(lo);
    const w1 = high(lo);
    const w2 = low(hi);
    const w3 = high(hi);
    const s = f64x2.splat(<f64>load<f32>(x0 + k));
    const u = f64x2.splat(<f64>load<f32>(x1 + k));
    a0 = f64x2.add(a0, f64x2.mul(s, w0)); a1 = f64x2.add(a1, f64x2.mul(s, w1));
    a2 = f64x2.add(a2, f64x2.mul(s, w2)); a3 = f64x2.add(a3, f64x2.mul(s, w3));
    b0 = f64x2.add(b0, f64x2.mul(u, w0)); b1 = f64x2.add(b1, f64x2.mul(u, w1));
    b2 = f64x2.add(b2, f64x2.mul(u, w2)); b3 = f64x2.add(b3, f64x2.mul(u, w3));
  }
  storeOutputs(y, t, o, outDim, a0, a1, a2, a3, bias);
  storeOutputs(y, t + 1, o, outDim, b0, b1, b2, b3, bias);
}

/** One input row against two consecutive panels (outputs o … o+15). */
function panels2(x: usize, t: i32, inDim: i32, wp: usize, panelBytes: usize, o: i32, outDim: i32, y: usize, bias: usize): void {
  const xr = x + (<usize>t) * ((<usize>inDim) << 2);
  let v = wp + panelBytes;
  let a0 = f64x2.splat(0), a1 = f64x2.splat(0), a2 = f64x2.splat(0), a3 = f64x2.splat(0);
  let b0 = f64x2.splat(0), b1 = f64x2.splat(0), b2 = f64x2.splat(0), b3 = f64x2.splat(0);
  const end = xr + ((<usize>inDim) << 2);
  for (let xp = xr; xp < end; xp += 4, wp += 32, v += 32) {
    const s = f64x2.splat(<f64>load<f32>(xp));
    let lo = v128.load(wp);
    let hi = v128.load(wp, 16);
    a0 = addLow(a0, s, lo); a1 = addHigh(a1, s, lo); a2 = addLow(a2, s, hi); a3 = addHigh(a3, s, hi);
    lo = v128.load(v);
    hi = v128.load(v, 16);
    b0 = addLow(b0, s, lo); b1 = addHigh(b1, s, lo); b2 = addLow(b2, s, hi); b3 = addHigh(b3, s, hi);
  }
  storeOutputs(y, t, o, outDim, a0, a1, a2, a3, bias);
  storeOutputs(y, t, o + 8, outDim, b0, b1, b2, b3, bias);
}

/** One input row against one panel. */
function panels1(x: usize, t: i32, inDim: i32, wp: usize, o: i32, outDim: i32, y: usize, bias: usize): void {
  const xr = x + (<usize>t) * ((<usize>inDim) << 2);
  let a0 = f64x2.splat(0), a1 = f64x2.splat(0), a2 = f64x2.splat(0), a3 = f64x2.splat(0);
  const end = xr + ((<usize>inDim) << 2);
  for (let xp = xr; xp < end; xp += 4, wp += 32) {
    const s = f64x2.splat(<f64>load<f32>(xp));
    const lo = v128.load(wp);
    const hi = v128.load(wp, 16);
    a0 = addLow(a0, s, lo); a1 = addHigh(a1, s, lo); a2 = addLow(a2, s, hi); a3 = addHigh(a3, s, hi);
  }
  storeOutputs(y, t, o, outDim, a0, a1, a2, a3, bias);
}

/** Outputs o … o+7 of row t (those below outDim): + bias in float64, one rounding to float32. */
function storeOutputs(y: usize, t: i32, o: i32, outDim: i32, a0: v128, a1: v128, a2: v128, a3: v128, bias: usize): void {
  const at = y + (((<usize>t) * outDim + o) << 2);
  const n = min(8, outDim - o);
  for (let j = 0; j < n; j++) {
    let v: f64 = j < 2 ? lane(a0, j) : j < 4 ? lane(a1, j - 2) : j < 6 ? lane(a2, j - 4) : lane(a3, j - 6);
    if (bias) v += <f64>load<f32>(bias + ((<usize>(o + j)) << 2));
    store<f32>(at + ((<usize>j) << 2), <f32>v);
  }
}

/** Floats 0, 1 of `v` as float64 lanes. */
// @ts-ignore: decorator
@inline
function low(v: v128): v128 {
  return f64x2.promote_low_f32x4(v);
}

/** Floats 2, 3 of `v` as float64 lanes. */
// @ts-ignore: decorator
@inline
function high(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1));
}

/** `acc + s·low(w)`: two of a panel's eight outputs take one k's term. */
// @ts-ignore: decorator
@inline
function addLow(acc: v128, s: v128, w: v128): v128 {
  return f64x2.add(acc, f64x2.mul(s, low(w)));
}

/** `acc + s·high(w)`. */
// @ts-ignore: decorator
@inline
function addHigh(acc: v128, s: v128, w: v128): v128 {
  return f64x2.add(acc, f64x2.mul(s, high(w)));
}

// @ts-ignore: decorator
@inline
function lane(v: v128, j: i32): f64 {
  return j == 0 ? f64x2.extract_lane(v, 0) : f64x2.extract_lane(v, 1);
}

import { BF16, F16, F32, I8, dtypeOf, kBytes, madd, panelHigh, panelLow } from './panels';

// y[t][o] = scale[o] · Σ_k x[t][k]·w[o][k] + bias[o] over weight panels (see panels.ts), float32.
//
// Every output is one float32 accumulator summed in k order from zero, whichever kernel computes
// it (the 4 × 8 register-blocked GEMM for groups of 4 rows, the 1-, 2- and 3-row kernels for the
// rest) and whichever thread: so a row's result never depends on the rows beside it, on how the
// panels are split between threads, or on the thread count. Products and sums are separate
// roundings, or one fused one where the engine runs relaxed SIMD (the whole build is one or the
// other).

/** Rows of x held per pass over a panel in the GEMM (their inputs stay in L2 while it streams). */
// @ts-ignore: decorator
@inline const L2_BYTES: usize = 1 << 20;

/**
 * Outputs of panels [p0, p1) for every row: `x` `[rows][inDim]`, `y` `[rows][outDim]`, `w` panels
 * of `dtype` (panels.ts), `bias` `[outDim]` or 0, `scales` `[outDim]` (int8) or 0. `scratch` holds
 * one unpacked panel, `inDim · 32` bytes (the GEMM on 16- and 8-bit weights decodes each panel
 * once per row tile into it).
 */
export function linear(
  dtype: i32, x: usize, rows: i32, inDim: i32, w: usize, outDim: i32, y: usize, bias: usize, scales: usize,
  p0: i32, p1: i32, scratch: usize,
): void {
  if (dtype == F32) linearOf<f32>(x, rows, inDim, w, outDim, y, bias, scales, p0, p1, scratch);
  else if (dtype == BF16) linearOf<u16>(x, rows, inDim, w, outDim, y, bias, scales, p0, p1, scratch);
  else if (dtype == F16) linearOf<i16>(x, rows, inDim, w, outDim, y, bias, scales, p0, p1, scratch);
  else if (dtype == I8) linearOf<i8>(x, rows, inDim, w, outDim, y, bias, scales, p0, p1, scratch);
  else unreachable();
}

function linearOf<T>(
  x: usize, rows: i32, inDim: i32, w: usize, outDim: i32, y: usize, bias: usize, scales: usize,
  p0: i32, p1: i32, scratch: usize,
): void {
  const panelBytes = (<usize>inDim) * kBytes<T>();
  const grouped = rows & ~3;
  if (grouped > 0) gemm<T>(x, grouped, inDim, w, panelBytes, outDim, y, bias, scales, p0, p1, scratch);
  const left = rows - grouped;
  if (left == 0) return;
  let p = p0;
  if (left == 1) {
    for (; p + 4 <= p1; p += 4) row1x4<T>(x, grouped, inDim, w + <usize>p * panelBytes, panelBytes, p << 3, outDim, y, bias, scales);
    for (; p < p1; p++) row1x1<T>(x, grouped, inDim, w + <usize>p * panelBytes, p << 3, outDim, y, bias, scales);
  } else if (left == 2) {
    for (; p + 2 <= p1; p += 2) rows2x2<T>(x, grouped, inDim, w + <usize>p * panelBytes, panelBytes, p << 3, outDim, y, bias, scales);
    for (; p < p1; p++) rows2x1<T>(x, grouped, inDim, w + <usize>p * panelBytes, p << 3, outDim, y, bias, scales);
  } else {
    for (; p < p1; p++) rows3x1<T>(x, grouped, inDim, w + <usize>p * panelBytes, p << 3, outDim, y, bias, scales);
  }
}

/**
 * Rows [0, rows) (a multiple of 4) against panels [p0, p1): row tiles whose inputs fit in L2; per
 * panel of a tile, 4 rows at a time against it (8 float32x4 accumulators). 16- and 8-bit panels are
 * first decoded into `scratch` (float32; int8 unscaled), once per tile.
 */
function gemm<T>(
  x: usize, rows: i32, inDim: i32, w: usize, panelBytes: usize, outDim: i32, y: usize, bias: usize, scales: usize,
  p0: i32, p1: i32, scratch: usize,
): void {
  const rowBytes = (<usize>inDim) << 2;
  const tile = max<i32>(4, <i32>(L2_BYTES / rowBytes) & ~3);
  for (let t0 = 0; t0 < rows; t0 += tile) {
    const t1 = min(rows, t0 + tile);
    for (let p = p0; p < p1; p++) {
      let panel = w + <usize>p * panelBytes;
      if (dtypeOf<T>() != F32) {
        unpack<T>(panel, inDim, scratch);
        panel = scratch;
      }
      for (let t = t0; t < t1; t += 4) block4x8(x + (<usize>t) * rowBytes, rowBytes, panel, t, p << 3, outDim, y, bias, scales);
    }
  }
}

/** A panel of T decoded into float32 panel layout at `out` (`inDim · 32` bytes). */
function unpack<T>(panel: usize, inDim: i32, out: usize): void {
  const step = kBytes<T>();
  const end = out + ((<usize>inDim) << 5);
  for (; out < end; out += 32, panel += step) {
    v128.store(out, panelLow<T>(panel));
    v128.store(out, panelHigh<T>(panel), 16);
  }
}

/** Four rows from `x0` (rows `rowBytes` apart) against one float32 panel: outputs o … o+7 of rows t … t+3. */
function block4x8(x0: usize, rowBytes: usize, panel: usize, t: i32, o: i32, outDim: i32, y: usize, bias: usize, scales: usize): void {
  const x1 = x0 + rowBytes, x2 = x1 + rowBytes, x3 = x2 + rowBytes;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
  let wp = panel;
  for (let k: usize = 0; k < rowBytes; k += 4, wp += 32) {
    const lo = v128.load(wp);
    const hi = v128.load(wp, 16);
    let s = v128.load32_splat(x0 + k);
    a0 = madd(a0, s, lo); a1 = madd(a1, s, hi);
    s = v128.load32_splat(x1 + k);
    b0 = madd(b0, s, lo); b1 = madd(b1, s, hi);
    s = v128.load32_splat(x2 + k);
    c0 = madd(c0, s, lo); c1 = madd(c1, s, hi);
    s = v128.load32_splat(x3 + k);
    d0 = madd(d0, s, lo); d1 = madd(d1, s, hi);
  }
  store8(y, t, o, outDim, a0, a1, bias, scales);
  store8(y, t + 1, o, outDim, b0, b1, bias, scales);
  store8(y, t + 2, o, outDim, c0, c1, bias, scales);
  store8(y, t + 3, o, outDim, d0, d1, bias, scales);
}

/** One row against four consecutive panels (outputs o … o+31): 8 accumulators, each input broadcast once. */
function row1x4<T>(x: usize, t: i32, inDim: i32, wp: usize, panelBytes: usize, o: i32, outDim: i32, y: usize, bias: usize, scales: usize): void {
  const xr = x + (<usize>t) * ((<usize>inDim) << 2);
  const end = xr + ((<usize>inDim) << 2);
  const step = kBytes<T>();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
  let wb = wp + panelBytes;
  let wc = wb + panelBytes;
  let wd = wc + panelBytes;
  for (let xp = xr; xp < end; xp += 4, wp += step, wb += step, wc += step, wd += step) {
    const s = v128.load32_splat(xp);
    a0 = madd(a0, s, panelLow<T>(wp)); a1 = madd(a1, s, panelHigh<T>(wp));
    b0 = madd(b0, s, panelLow<T>(wb)); b1 = madd(b1, s, panelHigh<T>(wb));
    c0 = madd(c0, s, panelLow<T>(wc)); c1 = madd(c1, s, panelHigh<T>(wc));
    d0 = madd(d0, s, panelLow<T>(wd)); d1 = madd(d1, s, panelHigh<T>(wd));
  }
  store8(y, t, o, outDim, a0, a1, bias, scales);
  store8(y, t, o + 8, outDim, b0, b1, bias, scales);
  store8(y, t, o + 16, outDim, c0, c1, bias, scales);
  store8(y, t, o + 24, outDim, d0, d1, bias, scales);
}

/** One row against one panel. */
function row1x1<T>(x: usize, t: i32, inDim: i32, wp: usize, o: i32, outDim: i32, y: usize, bias: usize, scales: usize): void {
  const xr = x + (<usize>t) * ((<usize>inDim) << 2);
  const end = xr + ((<usize>inDim) << 2);
  const step = kBytes<T>();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  for (let xp = xr; xp < end; xp += 4, wp += step) {
    const s = v128.load32_splat(xp);
    a0 = madd(a0, s, panelLow<T>(wp)); a1 = madd(a1, s, panelHigh<T>(wp));
  }
  store8(y, t, o, outDim, a0, a1, bias, scales);
}

/** Two rows from `t` against two consecutive panels: each weight load serves both rows. */
function rows2x2<T>(x: usize, t: i32, inDim: i32, wp: usize, panelBytes: usize, o: i32, outDim: i32, y: usize, bias: usize, scales: usize): void {
  const rowBytes = (<usize>inDim) << 2;
  const x0 = x + (<usize>t) * rowBytes;
  const x1 = x0 + rowBytes;
  const step = kBytes<T>();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), d0 = f32x4.splat(0), d1 = f32x4.splat(0);
  let wb = wp + panelBytes;
  for (let k: usize = 0; k < rowBytes; k += 4, wp += step, wb += step) {
    const u = v128.load32_splat(x0 + k);
    const v = v128.load32_splat(x1 + k);
    const lo = panelLow<T>(wp), hi = panelHigh<T>(wp);
    a0 = madd(a0, u, lo); a1 = madd(a1, u, hi); c0 = madd(c0, v, lo); c1 = madd(c1, v, hi);
    const lo2 = panelLow<T>(wb), hi2 = panelHigh<T>(wb);
    b0 = madd(b0, u, lo2); b1 = madd(b1, u, hi2); d0 = madd(d0, v, lo2); d1 = madd(d1, v, hi2);
  }
  store8(y, t, o, outDim, a0, a1, bias, scales);
  store8(y, t, o + 8, outDim, b0, b1, bias, scales);
  store8(y, t + 1, o, outDim, c0, c1, bias, scales);
  store8(y, t + 1, o + 8, outDim, d0, d1, bias, scales);
}

/** Two rows against one panel. */
function rows2x1<T>(x: usize, t: i32, inDim: i32, wp: usize, o: i32, outDim: i32, y: usize, bias: usize, scales: usize): void {
  const rowBytes = (<usize>inDim) << 2;
  const x0 = x + (<usize>t) * rowBytes;
  const x1 = x0 + rowBytes;
  const step = kBytes<T>();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), c0 = f32x4.splat(0), c1 = f32x4.splat(0);
  for (let k: usize = 0; k < rowBytes; k += 4, wp += step) {
    const u = v128.load32_splat(x0 + k);
    const v = v128.load32_splat(x1 + k);
    const lo = panelLow<T>(wp), hi = panelHigh<T>(wp);
    a0 = madd(a0, u, lo); a1 = madd(a1, u, hi); c0 = madd(c0, v, lo); c1 = madd(c1, v, hi);
  }
  store8(y, t, o, outDim, a0, a1, bias, scales);
  store8(y, t + 1, o, outDim, c0, c1, bias, scales);
}

/** Three rows (a decode row beside a shadow chunk of two, say) against one panel: each weight load serves all three. */
function rows3x1<T>(x: usize, t: i32, inDim: i32, wp: usize, o: i32, outDim: i32, y: usize, bias: usize, scales: usize): void {
  const rowBytes = (<usize>inDim) << 2;
  const x0 = x + (<usize>t) * rowBytes;
  const x1 = x0 + rowBytes;
  const x2 = x1 + rowBytes;
  const step = kBytes<T>();
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), b0 = f32x4.splat(0), b1 = f32x4.splat(0);
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0);
  for (let k: usize = 0; k < rowBytes; k += 4, wp += step) {
    const lo = panelLow<T>(wp), hi = panelHigh<T>(wp);
    let s = v128.load32_splat(x0 + k);
    a0 = madd(a0, s, lo); a1 = madd(a1, s, hi);
    s = v128.load32_splat(x1 + k);
    b0 = madd(b0, s, lo); b1 = madd(b1, s, hi);
    s = v128.load32_splat(x2 + k);
    c0 = madd(c0, s, lo); c1 = madd(c1, s, hi);
  }
  store8(y, t, o, outDim, a0, a1, bias, scales);
  store8(y, t + 1, o, outDim, b0, b1, bias, scales);
  store8(y, t + 2, o, outDim, c0, c1, bias, scales);
}

/**
 * Outputs o … o+7 of row t (those below outDim): `sum · scale + bias`, a product then a sum (never
 * fused, so a lane stored from a vector and one stored alone round alike).
 */
function store8(y: usize, t: i32, o: i32, outDim: i32, lo: v128, hi: v128, bias: usize, scales: usize): void {
  const at = y + (((<usize>t) * outDim + o) << 2);
  if (o + 8 <= outDim) {
    if (scales) {
      lo = f32x4.mul(lo, v128.load(scales + ((<usize>o) << 2)));
      hi = f32x4.mul(hi, v128.load(scales + ((<usize>o) << 2), 16));
    }
    if (bias) {
      lo = f32x4.add(lo, v128.load(bias + ((<usize>o) << 2)));
      hi = f32x4.add(hi, v128.load(bias + ((<usize>o) << 2), 16));
    }
    v128.store(at, lo);
    v128.store(at, hi, 16);
    return;
  }
  for (let j = 0; j < outDim - o; j++) {
    const col = (<usize>(o + j)) << 2;
    let v = j < 4 ? lane(lo, j) : lane(hi, j - 4);
    if (scales) v *= load<f32>(scales + col);
    if (bias) v += load<f32>(bias + col);
    store<f32>(at + ((<usize>j) << 2), v);
  }
}

/** Lane j (0–3) of v. */
// @ts-ignore: decorator
@inline
function lane(v: v128, j: i32): f32 {
  return j == 0 ? f32x4.extract_lane(v, 0) : j == 1 ? f32x4.extract_lane(v, 1) : j == 2 ? f32x4.extract_lane(v, 2) : f32x4.extract_lane(v, 3);
}

// Weight panels: a matrix `[outDim][inDim]` is stored as panels of 8 output rows interleaved along
// k, `[ceil(outDim/8)][inDim][8]` (element 8k + j of panel p is w[8p + j][k]; rows past outDim are
// zero), so one k of a panel is 8 consecutive values: the 8 outputs one broadcast input multiplies
// into. The element type is the weight dtype:
//
//   float32   4 bytes   the exact default
//   bfloat16  2 bytes   the top half of a float32 (lossless for a bf16 checkpoint)
//   float16   2 bytes   IEEE half, subnormals flushed when packing (so decoding never meets a denormal)
//   int8      1 byte    per output row: w ≈ q · scale[row], q in [−127, 127]; the scale is applied
//                       to the row's sum, so sums are of x · q
//
// Kernels are written once, generic over a marker type T that only picks the dtype at compile time
// (f32: float32, u16: bfloat16, i16: float16, i8: int8): every branch on it folds away.

/** Dtype codes, as the JavaScript side passes them (`src/kernels/wasm/weight-dtype.ts`). */
export const F32: i32 = 0;
export const BF16: i32 = 1;
export const F16: i32 = 2;
export const I8: i32 = 3;

/** The dtype code of marker type T. */
// @ts-ignore: decorator
@inline
export function dtypeOf<T>(): i32 {
  if (isFloat<T>()) return F32;
  if (sizeof<T>() == 1) return I8;
  return isSigned<T>() ? F16 : BF16;
}

/** Bytes of one k of a panel (8 values). */
// @ts-ignore: decorator
@inline
export function kBytes<T>(): usize {
  return <usize>sizeof<T>() << 3;
}

/** Outputs 0–3 of the panel k at `p`, as float32 (int8: the integer value, unscaled). */
// @ts-ignore: decorator
@inline
export function panelLow<T>(p: usize): v128 {
  const d = dtypeOf<T>();
  if (d == F32) return v128.load(p);
  if (d == I8) return f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(v128.load8x8_s(p)));
  const raw = v128.load(p);
  if (d == BF16) return v128.shuffle<i16>(i16x8.splat(0), raw, 0, 8, 1, 9, 2, 10, 3, 11);
  return half4(i32x4.extend_low_i16x8_u(raw));
}

/** Outputs 4–7 of the panel k at `p`. */
// @ts-ignore: decorator
@inline
export function panelHigh<T>(p: usize): v128 {
  const d = dtypeOf<T>();
  if (d == F32) return v128.load(p, 16);
  if (d == I8) return f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(v128.load8x8_s(p)));
  const raw = v128.load(p);
  if (d == BF16) return v128.shuffle<i16>(i16x8.splat(0), raw, 0, 12, 1, 13, 2, 14, 3, 15);
  return half4(i32x4.extend_high_i16x8_u(raw));
}

/**
 * Four IEEE halves (one per 32-bit lane, zero-extended) as float32: the exponent and mantissa
 * moved into float32's places and rebiased by a multiplication by 2^112 (exact; no denormal ever
 * reaches it, since packing flushes half subnormals), then the sign.
 */
// @ts-ignore: decorator
@inline
function half4(h: v128): v128 {
  const magnitude = f32x4.mul(i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13), f32x4.splat(5.192296858534828e33));
  return v128.or(magnitude, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** `acc + a·b`: fused where the engine runs relaxed SIMD (the build with it checks at load), else a product then a sum. */
// @ts-ignore: decorator
@inline
export function madd(acc: v128, a: v128, b: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, acc);
  return f32x4.add(acc, f32x4.mul(a, b));
}

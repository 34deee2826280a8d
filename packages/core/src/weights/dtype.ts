/**
 * Element types of safetensors tensors the library reads and writes, and their conversion to and
 * from float32. All encodings are little-endian, as the safetensors format prescribes.
 */

import { WeightsError } from '../errors.js';

/** Tensor element types the library understands. */
export type TensorDtype = 'F32' | 'F16' | 'BF16';

/** Every supported dtype, for validation and error messages. */
export const TENSOR_DTYPES: readonly TensorDtype[] = ['F32', 'F16', 'BF16'];

export function isTensorDtype(value: string): value is TensorDtype {
  return value === 'F32' || value === 'F16' || value === 'BF16';
}

/** Bytes per element. */
export function dtypeByteSize(dtype: TensorDtype): number {
  return dtype === 'F32' ? 4 : 2;
}

// Typed-array views read host byte order; on a little-endian host (every common Node platform)
// they read the file's bytes directly, elsewhere we fall back to DataView.
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Scratch for reinterpreting one float32 as its bits, independent of host byte order.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function float32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/** IEEE binary16 bits → float32 value (exact: every f16 value is representable in f32). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero or subnormal: frac · 2^-24
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** bfloat16 bits → float32 value: bf16 is the upper half of an f32. */
export function bf16BitsToF32(b: number): number {
  scratchU32[0] = (b & 0xffff) << 16;
  return scratchF32[0]!;
}

/** float32 value → IEEE binary16 bits, rounding to nearest, ties to even; overflow gives ±inf. */
export function f32ToF16Bits(x: number): number {
  const bits = float32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0); // inf, or quiet NaN
  const e = exp - 127 + 15; // rebias
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is subnormal (or zero): below 2^-25 everything rounds to zero.
    if (e < -10) return sign;
    mant |= 0x800000; // make the implicit leading bit explicit
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) !== 0)) half++; // a carry yields the smallest normal
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++; // a carry into exponent 31 yields inf
  return sign | half;
}

/** float32 value → bfloat16 bits, rounding to nearest, ties to even; NaN stays a (quiet) NaN. */
export function f32ToBf16Bits(x: number): number {
  const bits = float32Bits(x);
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return ((bits >>> 16) & 0x8000) | 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Views `count` little-endian u16 elements of `bytes` without copying when alignment and host order allow. */
function u16Elements(bytes: Uint8Array, count: number): Uint16Array {
  if (HOST_IS_LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, count);
  const out = new Uint16Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < count; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}

/**
 * Decodes `bytes` (exactly `count × dtypeByteSize(dtype)` long) to float32.
 * For F32 on an aligned little-endian buffer the result is a view that shares `bytes`' memory,
 * so a multi-GB tensor is never held twice; callers pass a buffer they own.
 */
export function decodeTensor(bytes: Uint8Array, dtype: TensorDtype): Float32Array {
  const count = bytes.byteLength / dtypeByteSize(dtype);
  if (!Number.isInteger(count)) {
    throw new WeightsError('size-mismatch', `${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  }
  if (dtype === 'F32') {
    if (HOST_IS_LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, count);
    const out = new Float32Array(count);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }
  return decodeTensorInto(bytes, dtype, new Float32Array(count));
}

/**
 * Decodes `bytes` of `dtype` into the start of `out` (which must hold at least as many elements),
 * for readers that decode a large tensor piece by piece. Returns `out`.
 */
export function decodeTensorInto(bytes: Uint8Array, dtype: TensorDtype, out: Float32Array): Float32Array {
  const count = bytes.byteLength / dtypeByteSize(dtype);
  if (!Number.isInteger(count) || count > out.length) {
    throw new WeightsError('size-mismatch', `${bytes.byteLength} bytes of ${dtype} do not fit ${out.length} float32 elements`);
  }
  if (dtype === 'F32') {
    out.set(decodeTensor(bytes, 'F32'));
    return out;
  }
  const src = u16Elements(bytes, count);
  // Build f32 bit patterns directly through a u32 view of the output (no per-element float math).
  const outBits = new Uint32Array(out.buffer, out.byteOffset, count);
  if (dtype === 'BF16') {
    for (let i = 0; i < count; i++) outBits[i] = src[i]! << 16; // bf16 is the top half of an f32
    return out;
  }
  for (let i = 0; i < count; i++) {
    const h = src[i]!;
    const exp = h & 0x7c00;
    if (exp === 0) out[i] = f16BitsToF32(h); // zero or subnormal: not a normal f32 pattern shift
    else if (exp === 0x7c00) outBits[i] = ((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13); // inf / NaN
    else outBits[i] = ((h & 0x8000) << 16) | (((h & 0x7fff) << 13) + 0x38000000); // rebias exponent 15 → 127
  }
  return out;
}

/** Encodes float32 values as little-endian `dtype` bytes (F16/BF16 rounded to nearest, ties to even). */
export function encodeTensor(data: Float32Array, dtype: TensorDtype): Uint8Array {
  const out = new Uint8Array(data.length * dtypeByteSize(dtype));
  const view = new DataView(out.buffer);
  if (dtype === 'F32') {
    for (let i = 0; i < data.length; i++) view.setFloat32(4 * i, data[i]!, true);
  } else {
    const encode = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
    for (let i = 0; i < data.length; i++) view.setUint16(2 * i, encode(data[i]!), true);
  }
  return out;
}

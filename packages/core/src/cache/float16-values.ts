import { decodeTensorInto, f32ToF16Bits } from '../weights/dtype.js';

/**
 * binary16 bits → float32 values (exact: every binary16 value is a float32), into `out` (default:
 * a new array). How a {@link Float16KvCache}'s keys and values are read on the host.
 */
export function float16ToFloat32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  // The weights reader's bulk decoder: bit operations on a u32 view, no per-element float math.
  decodeTensorInto(new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength), 'F16', out);
  return out;
}

/** float32 values → binary16 bits, rounded to nearest, ties to even (overflow gives ±inf), into `out` (default: a new array). */
export function float32ToFloat16(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]!);
  return out;
}

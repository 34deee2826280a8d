import { BackendError } from '@ropeswitch/core';

/**
 * How the reference backend stores its weight matrices (the norms, biases and embedding stay
 * float32): `float32` (default) is exact; the others trade accuracy for memory, so a model that does
 * not fit in float32 still loads.
 *
 * - `bfloat16`: 2 bytes, float32's top half rounded to nearest even. Lossless for a bf16
 *   checkpoint (Phi-3 ships in bf16).
 * - `float16`: 2 bytes, IEEE half rounded to nearest even; values below half's smallest normal
 *   (|w| < 2^-14 ≈ 6.1e-5) round to 0 or ±2^-14, and a weight past ±65504 fails with
 *   `BackendError('weights-range')`.
 * - `int8`: 1 byte, symmetric per output row: `w ≈ q · scale`, `scale = max|w_row| / 127`,
 *   `q = round(w / scale)`.
 */
export type WeightDtype = 'float32' | 'bfloat16' | 'float16' | 'int8';

/** Every {@link WeightDtype}, in order of size. */
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['float32', 'bfloat16', 'float16', 'int8'];

/** The code the kernels take (`assembly/panels.ts`). */
export const WEIGHT_DTYPE_CODE: Readonly<Record<WeightDtype, number>> = { float32: 0, bfloat16: 1, float16: 2, int8: 3 };

/** Bytes per stored weight. */
export const WEIGHT_DTYPE_BYTES: Readonly<Record<WeightDtype, number>> = { float32: 4, bfloat16: 2, float16: 2, int8: 1 };

/** Checks a `weights` option. */
export function checkWeightDtype(dtype: unknown): WeightDtype {
  if (!WEIGHT_DTYPES.includes(dtype as WeightDtype)) {
    throw new BackendError('bad-option', `unknown weights ${String(dtype)}: one of ${WEIGHT_DTYPES.map((d) => `'${d}'`).join(', ')}`);
  }
  return dtype as WeightDtype;
}

/** Bytes of the panels of an `[outDim][inDim]` matrix in `dtype` (`[ceil(outDim/8)][inDim][8]`). */
export function panelBytes(dtype: WeightDtype, outDim: number, inDim: number): number {
  return Math.ceil(outDim / 8) * 8 * inDim * WEIGHT_DTYPE_BYTES[dtype];
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bfloat16 bits of float32 `x`, rounded to nearest even. */
export function toBfloat16(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * The IEEE half bits of float32 `x`, rounded to nearest even; results below the smallest normal
 * half go to ±0 or ±2^-14, whichever is nearer (the kernels decode halves without denormals).
 * NaN for a value past ±65504 (the caller reports it).
 */
export function toFloat16(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const abs = b & 0x7fffffff;
  if (abs >= 0x477ff000) return Number.NaN; // rounds past 65504 (or is inf/NaN)
  if (abs < 0x38800000) return Math.abs(x) >= 2 ** -15 ? sign | 0x0400 : sign; // below 2^-14
  // Rebias the exponent (127 → 15) and round the 23-bit mantissa to 10 bits, nearest even.
  const rounded = abs + 0xfff + ((abs >>> 13) & 1);
  return sign | ((rounded - 0x38000000) >>> 13);
}

/** The float32 value of half bits `h` (normal halves and zero, as {@link toFloat16} writes them). */
export function fromFloat16(h: number): number {
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  const v = e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
  return h & 0x8000 ? -v : v;
}

/** Per output row: the int8 scale of row o, `max|w[o]| / 127` in float32 (0 for an all-zero row). */
export function int8Scales(w: Float32Array, outDim: number, inDim: number): Float32Array {
  const scales = new Float32Array(outDim);
  for (let o = 0; o < outDim; o++) {
    let m = 0;
    for (let k = o * inDim, end = k + inDim; k < end; k++) m = Math.max(m, Math.abs(w[k]!));
    scales[o] = m / 127;
  }
  return scales;
}

/** The int8 value of w under `scale` (nearest, in [−127, 127]). */
function quantize(w: number, scale: number): number {
  return scale === 0 ? 0 : Math.max(-127, Math.min(127, Math.round(w / scale)));
}

/**
 * Writes the panels of `w` (`[outDim][inDim]`) in `dtype` at byte `at` of `buffer`
 * (`[ceil(outDim/8)][inDim][8]`, rows past outDim zero, which the buffer must already be), and for
 * int8 the row scales at byte `scalesAt` (`[outDim]` floats). `name` names the tensor in errors.
 */
export function writePanels(
  dtype: WeightDtype,
  w: Float32Array,
  outDim: number,
  inDim: number,
  buffer: ArrayBufferLike,
  at: number,
  scales: Float32Array | undefined,
  name: string,
): void {
  const panels = Math.ceil(outDim / 8);
  const count = panels * inDim * 8;
  const dst =
    dtype === 'float32' ? new Float32Array(buffer, at, count) : dtype === 'int8' ? new Int8Array(buffer, at, count) : new Uint16Array(buffer, at, count);
  const convert =
    dtype === 'bfloat16'
      ? toBfloat16
      : dtype === 'float16'
        ? (x: number) => {
            const h = toFloat16(x);
            if (Number.isNaN(h)) throw new BackendError('weights-range', `${name} holds ${x}, past float16's ±65504: use { weights: 'bfloat16' } (or 'float32', 'int8') for this model`);
            return h;
          }
        : undefined;
  for (let p = 0; p < panels; p++) {
    const rows = Math.min(8, outDim - 8 * p);
    for (let j = 0; j < rows; j++) {
      const o = 8 * p + j;
      const src = o * inDim;
      let d = p * inDim * 8 + j;
      if (dtype === 'float32') {
        for (let k = 0; k < inDim; k++, d += 8) dst[d] = w[src + k]!;
      } else if (dtype === 'int8') {
        const s = scales![o]!;
        for (let k = 0; k < inDim; k++, d += 8) dst[d] = quantize(w[src + k]!, s);
      } else {
        for (let k = 0; k < inDim; k++, d += 8) dst[d] = convert!(w[src + k]!);
      }
    }
  }
}

/**
 * `w` as the kernels see it in `dtype` (float32 values; int8 as `q · scale`): what the TypeScript
 * kernels compute with for that option, and the check of the WebAssembly ones.
 */
export function roundWeights(dtype: WeightDtype, w: Float32Array, outDim: number, inDim: number): Float32Array {
  if (dtype === 'float32') return w;
  const out = new Float32Array(outDim * inDim);
  if (dtype === 'int8') {
    const scales = int8Scales(w, outDim, inDim);
    for (let o = 0; o < outDim; o++) {
      const s = scales[o]!;
      for (let k = o * inDim, end = k + inDim; k < end; k++) out[k] = quantize(w[k]!, s) * s;
    }
    return out;
  }
  for (let i = 0; i < out.length; i++) {
    if (dtype === 'bfloat16') {
      u32[0] = toBfloat16(w[i]!) << 16;
      out[i] = f32[0]!;
    } else {
      const h = toFloat16(w[i]!);
      if (Number.isNaN(h)) throw new BackendError('weights-range', `a weight holds ${w[i]}, past float16's ±65504`);
      out[i] = fromFloat16(h);
    }
  }
  return out;
}

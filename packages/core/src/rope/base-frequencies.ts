/**
 * ω_i = 1 / b^(2i/r), the default RoPE frequencies, in float32 the way HF computes them
 * (`1.0 / (base ** (torch.arange(0, r, 2).float() / r))`: every step rounded to float32)
 * and in float64.
 */
export function baseFrequencies(theta: number, rotaryDim: number): { f32: Float32Array; f64: Float64Array } {
  const half = rotaryDim / 2;
  const f32 = new Float32Array(half);
  const f64 = new Float64Array(half);
  const base32 = Math.fround(theta);
  for (let i = 0; i < half; i++) {
    const exponent32 = Math.fround((2 * i) / rotaryDim);
    f32[i] = Math.fround(1 / Math.fround(Math.pow(base32, exponent32)));
    f64[i] = 1 / Math.pow(theta, (2 * i) / rotaryDim);
  }
  return { f32, f64 };
}

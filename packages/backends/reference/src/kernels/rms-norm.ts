/** HF RMSNorm on each of `rows` rows: `w ⊙ x / sqrt(mean(x²) + eps)`, variance in float64. */
export function rmsNorm(x: Float32Array, rows: number, dim: number, weight: Float32Array, eps: number, out: Float32Array): void {
  for (let t = 0; t < rows; t++) {
    const off = t * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) {
      const v = x[off + i]!;
      ss += v * v;
    }
    // HF rounds the normalised value to float32 before the weight multiply.
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[off + i] = weight[i]! * Math.fround(x[off + i]! * inv);
  }
}

/** `up ⊙ silu(gate)` per row, from the fused `[rows][gate | up]` projection output into `[rows][size]`. */
export function swiglu(gateUp: Float32Array, rows: number, size: number, out: Float32Array): void {
  for (let t = 0; t < rows; t++) {
    const g = t * 2 * size;
    const o = t * size;
    for (let i = 0; i < size; i++) {
      const gate = gateUp[g + i]!;
      out[o + i] = gateUp[g + size + i]! * (gate / (1 + Math.exp(-gate)));
    }
  }
}

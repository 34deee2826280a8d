import { exp4 } from './simd-exp';

/** `out[t][i] = up·silu(gate)` from the fused `[rows][gate | up]` projection output into `[rows][size]`. */
export function swiglu(gateUp: usize, rows: i32, size: i32, out: usize): void {
  const one = f32x4.splat(1);
  for (let t = 0; t < rows; t++) {
    const g = gateUp + (((<usize>t) * size * 2) << 2);
    const u = g + ((<usize>size) << 2);
    const o = out + (((<usize>t) * size) << 2);
    let i = 0;
    for (; i + 4 <= size; i += 4) {
      const at = (<usize>i) << 2;
      const gate = v128.load(g + at);
      const silu = f32x4.div(gate, f32x4.add(one, exp4(f32x4.neg(gate))));
      v128.store(o + at, f32x4.mul(v128.load(u + at), silu));
    }
    for (; i < size; i++) {
      const at = (<usize>i) << 2;
      const gate = load<f32>(g + at);
      const e = f32x4.extract_lane(exp4(f32x4.splat(-gate)), 0);
      store<f32>(o + at, load<f32>(u + at) * (gate / (1 + e)));
    }
  }
}

/** x[i] += y[i] for i < n (the residual adds). */
export function addInPlace(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const at = (<usize>i) << 2;
    v128.store(x + at, f32x4.add(v128.load(x + at), v128.load(y + at)));
  }
  for (; i < n; i++) {
    const at = (<usize>i) << 2;
    store<f32>(x + at, load<f32>(x + at) + load<f32>(y + at));
  }
}

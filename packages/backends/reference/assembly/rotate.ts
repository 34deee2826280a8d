// The rotation kernel of `rotateBlocks` (core/src/rope/rotate-blocks.ts) over one block: `count`
// head vectors, vector k at x + k·stride floats, turned by row rows[k] of the cos/sin tables
// (`[row][half]`). rotate-half pairs (i, i + half), interleaved pairs (2i, 2i + 1); dims past
// 2·half are left alone. As in the TypeScript kernel, products and sums are float64 (exact
// products, one rounding of the sum, one to float32), so both give the same bits; the SIMD loop
// runs two f64x2 halves per quad.

export function rotate(x: usize, count: i32, stride: i32, half: i32, interleaved: bool, cos: usize, sin: usize, rows: usize): void {
  const strideBytes = (<usize>stride) << 2;
  const halfBytes = (<usize>half) << 2;
  for (let k = 0; k < count; k++, x += strideBytes) {
    const t = (<usize>load<i32>(rows + ((<usize>k) << 2))) * halfBytes;
    const c = cos + t;
    const s = sin + t;
    if (interleaved) {
      for (let i: usize = 0; i < halfBytes; i += 4) {
        const p = x + (i << 1);
        const a = load<f32>(p);
        const b = load<f32>(p, 4);
        const ci = load<f32>(c + i);
        const si = load<f32>(s + i);
        store<f32>(p, <f32>(<f64>a * ci - <f64>b * si));
        store<f32>(p, <f32>(<f64>b * ci + <f64>a * si), 4);
      }
      continue;
    }
    let i: usize = 0;
    for (; i + 16 <= halfBytes; i += 16) {
      const p = x + i;
      const q = p + halfBytes;
      const a = v128.load(p);
      const b = v128.load(q);
      const cv = v128.load(c + i);
      const sv = v128.load(s + i);
      const a0 = f64x2.promote_low_f32x4(a), a1 = f64x2.promote_low_f32x4(v128.shuffle<f32>(a, a, 2, 3, 0, 1));
      const b0 = f64x2.promote_low_f32x4(b), b1 = f64x2.promote_low_f32x4(v128.shuffle<f32>(b, b, 2, 3, 0, 1));
      const c0 = f64x2.promote_low_f32x4(cv), c1 = f64x2.promote_low_f32x4(v128.shuffle<f32>(cv, cv, 2, 3, 0, 1));
      const s0 = f64x2.promote_low_f32x4(sv), s1 = f64x2.promote_low_f32x4(v128.shuffle<f32>(sv, sv, 2, 3, 0, 1));
      const x0 = f32x4.demote_f64x2_zero(f64x2.sub(f64x2.mul(a0, c0), f64x2.mul(b0, s0)));
      const x1 = f32x4.demote_f64x2_zero(f64x2.sub(f64x2.mul(a1, c1), f64x2.mul(b1, s1)));
      const y0 = f32x4.demote_f64x2_zero(f64x2.add(f64x2.mul(b0, c0), f64x2.mul(a0, s0)));
      const y1 = f32x4.demote_f64x2_zero(f64x2.add(f64x2.mul(b1, c1), f64x2.mul(a1, s1)));
      v128.store(p, v128.shuffle<f32>(x0, x1, 0, 1, 4, 5));
      v128.store(q, v128.shuffle<f32>(y0, y1, 0, 1, 4, 5));
    }
    for (; i < halfBytes; i += 4) {
      const p = x + i;
      const q = p + halfBytes;
      const a = load<f32>(p);
      const b = load<f32>(q);
      const ci = load<f32>(c + i);
      const si = load<f32>(s + i);
      store<f32>(p, <f32>(<f64>a * ci - <f64>b * si));
      store<f32>(q, <f32>(<f64>b * ci + <f64>a * si));
    }
  }
}


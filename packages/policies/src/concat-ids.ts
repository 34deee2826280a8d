/** `a` followed by `b` as one `Int32Array` (a cached sequence and a row's new tokens or positions). */
export function concatIds(a: ArrayLike<number>, b: ArrayLike<number>): Int32Array {
  const out = new Int32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A run of units (matrix rows, cache heads): `[first, first + count)`. */
export interface UnitRange {
  readonly first: number;
  readonly count: number;
}

/**
 * Splits `count` units of `unitBytes` each into the fewest runs of at most `maxBytes` bytes, of
 * near-equal size (a multiple of `granule` units, but the last, when a granule fits): one run when
 * everything fits. `undefined` when not even one unit fits.
 *
 * Even runs rather than full ones and a short rest: each run is a dispatch, and equal runs keep the
 * work of those dispatches balanced (16384 rows at 10922 a run: 8192 + 8192, not 10922 + 5462).
 */
export function splitIntoBlocks(count: number, unitBytes: number, maxBytes: number, granule = 1): UnitRange[] | undefined {
  const most = Math.floor(maxBytes / unitBytes);
  if (most < 1) return undefined;
  if (count <= most) return [{ first: 0, count }];
  const g = granule <= most ? granule : 1;
  const cap = Math.floor(most / g) * g;
  const runs = Math.ceil(count / cap);
  const size = Math.min(cap, Math.ceil(Math.ceil(count / runs) / g) * g);
  const out: UnitRange[] = [];
  for (let first = 0; first < count; first += size) out.push({ first, count: Math.min(size, count - first) });
  return out;
}

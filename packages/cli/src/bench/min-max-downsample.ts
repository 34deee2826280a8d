/** A point of a chart series, in data units. */
export interface ChartPoint {
  readonly x: number;
  readonly y: number;
}

/**
 * Thins a series (sorted by x) for drawing without losing its spikes: the x range is cut into
 * `buckets` equal slices (one per pixel column or two) and each slice keeps only its lowest and
 * highest point, in x order. A series with no more than two points per bucket comes back as it is.
 * The far scenario's ~2000-step latency series would otherwise put every point in the file, and a
 * plain stride would drop exactly the crossing step the chart is about.
 */
export function minMaxDownsample(points: readonly ChartPoint[], buckets: number): readonly ChartPoint[] {
  if (points.length <= 2 * buckets || points.length < 3) return points;
  const x0 = points[0]!.x;
  const span = points[points.length - 1]!.x - x0;
  if (!(span > 0)) return points;
  const out: ChartPoint[] = [];
  let bucket = -1;
  let lo: ChartPoint | undefined;
  let hi: ChartPoint | undefined;
  const flush = () => {
    if (lo === undefined || hi === undefined) return;
    if (lo === hi) out.push(lo);
    else if (lo.x <= hi.x) out.push(lo, hi);
    else out.push(hi, lo);
  };
  for (const p of points) {
    const b = Math.min(buckets - 1, Math.floor(((p.x - x0) / span) * buckets));
    if (b !== bucket) {
      flush();
      bucket = b;
      lo = p;
      hi = p;
    } else {
      if (p.y < lo!.y) lo = p;
      if (p.y > hi!.y) hi = p;
    }
  }
  flush();
  return out;
}

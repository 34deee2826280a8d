/**
 * A line chart as an inline SVG string, for the offline `report.html`: one `<path>` per series,
 * axes with ticks, a linear x axis and a linear or log y axis, vertical markers (the crossing).
 * Colours come from the page's CSS (`.series.s0` … `.s7`), so light and dark mode are the page's
 * business; the SVG itself references nothing outside it.
 */
import { escapeHtml } from './html-escape.js';
import { minMaxDownsample, type ChartPoint } from './min-max-downsample.js';

/** Distinct colours the page's CSS defines (`s0` … `s7`); series past that reuse them dashed. */
export const SERIES_COLOURS = 8;

export interface ChartSeries {
  readonly name: string;
  /** Index into the page's palette; the same policy keeps its colour across charts. */
  readonly colour: number;
  /** Sorted by x; non-finite y values are left out. */
  readonly points: readonly ChartPoint[];
}

export interface ChartMarker {
  readonly x: number;
  readonly label: string;
}

export interface LineChartOptions {
  /** Read by screen readers (`aria-label`). */
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly yScale: 'linear' | 'log';
  readonly series: readonly ChartSeries[];
  readonly markers?: readonly ChartMarker[];
  /** Log scale only: values at or below this (an exact policy's KL of 0 or 1e-15) are drawn at it. */
  readonly yFloor?: number;
  readonly width?: number;
  readonly height?: number;
}

const MARGIN = { top: 22, right: 18, bottom: 40, left: 62 };
/** Few enough points that each gets a dot (a sparse oracle), and a lone point still shows. */
const DOTS_UP_TO = 60;

interface Tick {
  readonly value: number;
  readonly label: string;
}

/** 1, 2 or 5 × 10^k closest above `rough`. */
function niceStep(rough: number): number {
  const power = 10 ** Math.floor(Math.log10(rough));
  const f = rough / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(6)));
  return v.toExponential(0).replace('e+', 'e');
}

/** Evenly spaced round ticks covering [lo, hi], about `count` of them. */
export function linearTicks(lo: number, hi: number, count: number): Tick[] {
  if (!(hi > lo)) return [{ value: lo, label: formatTick(lo) }];
  const step = niceStep((hi - lo) / count);
  const ticks: Tick[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    const value = Number(v.toPrecision(12));
    ticks.push({ value, label: formatTick(value) });
  }
  return ticks;
}

/** Most labelled decades on a log axis; more decades are labelled every k-th. */
const MAX_LOG_LABELS = 9;

/** Decades between labelled ticks for a log axis spanning `decades`. */
function logStride(decades: number): number {
  return Math.max(1, Math.ceil(decades / (MAX_LOG_LABELS - 1)));
}

/**
 * Ticks for a log axis over whole decades [10^loExp, 10^hiExp] (hiExp − loExp a multiple of the
 * stride): every decade, or every k-th when there are many, with 2× and 5× between when the axis
 * spans two decades or fewer.
 */
export function logTicks(loExp: number, hiExp: number): Tick[] {
  const decades = hiExp - loExp;
  const stride = logStride(decades);
  const ticks: Tick[] = [];
  for (let e = loExp; e <= hiExp; e += stride) {
    ticks.push({ value: 10 ** e, label: formatTick(10 ** e) });
    if (decades <= 2 && e < hiExp) {
      for (const m of [2, 5]) ticks.push({ value: m * 10 ** e, label: formatTick(Number((m * 10 ** e).toPrecision(6))) });
    }
  }
  return ticks;
}

const round1 = (v: number) => Math.round(v * 10) / 10;

export function svgLineChart(options: LineChartOptions): string {
  const width = options.width ?? 720;
  const height = options.height ?? 300;
  const plot = { x0: MARGIN.left, x1: width - MARGIN.right, y0: height - MARGIN.bottom, y1: MARGIN.top };
  const markers = options.markers ?? [];
  const log = options.yScale === 'log';

  const series = options.series.map((s) => ({ ...s, points: s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)) }));
  const all = series.flatMap((s) => s.points);

  // x domain: the data and the markers, so a crossing at the edge is still inside.
  const xs = [...all.map((p) => p.x), ...markers.map((m) => m.x)];
  let xLo = xs.length > 0 ? Math.min(...xs) : 0;
  let xHi = xs.length > 0 ? Math.max(...xs) : 1;
  if (xHi === xLo) {
    xLo -= 1;
    xHi += 1;
  }

  // y domain: whole decades on a log axis (values ≤ the floor drawn at it), padded round ticks on a linear one.
  let floorUsed = false;
  /** Where a data value is drawn (clamped to the floor on a log axis) and where a tick sits. */
  let yOf: (y: number) => number;
  let yTickOf: (y: number) => number;
  let yTicks: Tick[];
  if (log) {
    const positive = all.map((p) => p.y).filter((y) => y > 0);
    const floor = options.yFloor ?? (positive.length > 0 ? Math.min(...positive) : 1);
    const clamped = all.map((p) => Math.max(p.y, floor));
    floorUsed = options.yFloor !== undefined && all.some((p) => p.y <= options.yFloor!);
    let loExp = Math.floor(Math.log10(clamped.length > 0 ? Math.min(...clamped) : floor));
    let hiExp = Math.ceil(Math.log10(clamped.length > 0 ? Math.max(...clamped) : floor * 10));
    if (hiExp === loExp) hiExp++;
    if (!Number.isFinite(loExp) || !Number.isFinite(hiExp)) {
      loExp = 0;
      hiExp = 1;
    }
    // Whole strides, headroom at the top: the bottom stays at the floor's decade.
    const stride = logStride(hiExp - loExp);
    hiExp = loExp + Math.ceil((hiExp - loExp) / stride) * stride;
    const lo = loExp;
    const span = hiExp - loExp;
    yOf = (y) => plot.y0 - ((Math.log10(Math.max(y, floor)) - lo) / span) * (plot.y0 - plot.y1);
    yTickOf = (y) => plot.y0 - ((Math.log10(y) - lo) / span) * (plot.y0 - plot.y1);
    yTicks = logTicks(loExp, hiExp);
    if (floorUsed) {
      const bottom = yTicks[0];
      if (bottom !== undefined && bottom.value <= floor) yTicks[0] = { value: bottom.value, label: `≤${bottom.label}` };
    }
  } else {
    const ys = all.map((p) => p.y);
    let lo = ys.length > 0 ? Math.min(0, ...ys) : 0;
    let hi = ys.length > 0 ? Math.max(...ys) : 1;
    if (hi === lo) hi = lo + 1;
    yTicks = linearTicks(lo, hi, 5);
    const step = yTicks.length > 1 ? yTicks[1]!.value - yTicks[0]!.value : hi - lo;
    lo = Math.min(lo, yTicks[0]!.value);
    hi = Math.max(hi, Math.ceil(hi / step - 1e-9) * step);
    if (yTicks[yTicks.length - 1]!.value < hi) yTicks.push({ value: hi, label: formatTick(Number(hi.toPrecision(12))) });
    const [l, h] = [lo, hi];
    yOf = (y) => plot.y0 - ((y - l) / (h - l)) * (plot.y0 - plot.y1);
    yTickOf = yOf;
  }
  const xOf = (x: number) => plot.x0 + ((x - xLo) / (xHi - xLo)) * (plot.x1 - plot.x0);

  const out: string[] = [];
  out.push(
    `<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(options.title)}" preserveAspectRatio="xMidYMid meet">`,
  );

  // Grid and axes.
  const grid: string[] = [];
  const axis: string[] = [];
  for (const t of yTicks) {
    const y = round1(yTickOf(t.value));
    grid.push(`M${plot.x0} ${y}H${plot.x1}`);
    axis.push(`<text class="tick y" x="${plot.x0 - 6}" y="${y}">${escapeHtml(t.label)}</text>`);
  }
  const xTicks = linearTicks(xLo, xHi, Math.max(2, Math.round((plot.x1 - plot.x0) / 90))).filter((t) => Number.isInteger(t.value));
  for (const t of xTicks) {
    const x = round1(xOf(t.value));
    axis.push(`<text class="tick x" x="${x}" y="${plot.y0 + 16}">${escapeHtml(t.label)}</text>`);
  }
  out.push(`<path class="grid" d="${grid.join('')}"/>`);
  out.push(
    `<path class="axis" d="M${plot.x0} ${plot.y1}V${plot.y0}H${plot.x1}${xTicks.map((t) => `M${round1(xOf(t.value))} ${plot.y0}v4`).join('')}"/>`,
  );
  out.push(...axis);
  out.push(`<text class="axis-label x" x="${round1((plot.x0 + plot.x1) / 2)}" y="${height - 6}">${escapeHtml(options.xLabel)}</text>`);
  out.push(
    `<text class="axis-label y" transform="translate(14 ${round1((plot.y0 + plot.y1) / 2)}) rotate(-90)">${escapeHtml(options.yLabel)}</text>`,
  );

  // Markers under the lines, so a line through the crossing stays visible.
  for (const m of markers) {
    const x = round1(xOf(m.x));
    const anchor = x > (plot.x0 + plot.x1) / 2 ? 'end' : 'start';
    const dx = anchor === 'end' ? -4 : 4;
    out.push(
      `<g class="crossing"><line x1="${x}" y1="${plot.y1 - 8}" x2="${x}" y2="${plot.y0}"/>` +
        `<text x="${x + dx}" y="${plot.y1 - 10}" text-anchor="${anchor}">${escapeHtml(m.label)}</text></g>`,
    );
  }

  // Series: the first drawn widest, so lines that coincide (exact policies) still show each colour.
  const buckets = Math.max(1, Math.round((plot.x1 - plot.x0) / 2));
  series.forEach((s, i) => {
    const pts = minMaxDownsample(s.points, buckets).map((p) => `${round1(xOf(p.x))} ${round1(yOf(p.y))}`);
    let d = pts.length > 0 ? `M${pts.join(' ')}` : '';
    if (pts.length > 0 && pts.length <= DOTS_UP_TO) d += pts.map((p) => `M${p}m-2 0a2 2 0 1 0 4 0a2 2 0 1 0-4 0`).join('');
    const strokeWidth = round1(1.4 + 0.5 * (series.length - 1 - i));
    const dash = s.colour >= SERIES_COLOURS ? ' stroke-dasharray="6 3"' : '';
    out.push(
      `<path class="series s${s.colour % SERIES_COLOURS}" data-series="${escapeHtml(s.name)}" stroke-width="${strokeWidth}"${dash} d="${d}"><title>${escapeHtml(s.name)}</title></path>`,
    );
  });

  out.push('</svg>');
  return out.join('');
}

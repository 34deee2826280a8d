/**
 * How the bench reports print numbers: the same text in `report.md`, on stdout and in `report.html`.
 * `null` (a value that does not apply) prints as an en dash.
 */

export const NOT_APPLICABLE = '–';

function nonFinite(x: number): string | undefined {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '∞';
  if (x === -Infinity) return '−∞';
  return undefined;
}

/** Milliseconds with 3 significant digits, whole numbers from 100 ms up (`0.0123`, `4.50`, `78.9`, `1234`). */
export function formatMs(ms: number | null): string {
  if (ms === null) return NOT_APPLICABLE;
  const odd = nonFinite(ms);
  if (odd !== undefined) return odd;
  if (ms === 0) return '0';
  if (Math.abs(ms) >= 100) return String(Math.round(ms));
  if (Math.abs(ms) < 1e-3) return ms.toExponential(1);
  return ms.toPrecision(3);
}

/**
 * A small non-negative quantity that spans many decades (KL in nats, |Δlogit|): 3 significant
 * digits, exponent form below 10⁻³ (`1.2e-7`), so an exact policy's float noise reads as such.
 */
export function formatSmall(x: number | null): string {
  if (x === null) return NOT_APPLICABLE;
  const odd = nonFinite(x);
  if (odd !== undefined) return odd;
  if (x === 0) return '0';
  if (Math.abs(x) < 1e-3) return x.toExponential(1);
  if (Math.abs(x) >= 1e4) return x.toExponential(2);
  return x.toPrecision(3);
}

/** A ratio with 2 decimals (`1.37`), whole from 100 up (`862`: re-prefill's crossing, where decimals are noise). */
export function formatRatio(x: number | null): string {
  if (x === null) return NOT_APPLICABLE;
  const odd = nonFinite(x);
  if (odd !== undefined) return odd;
  return Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(2);
}

/** A fraction in [0, 1] as a percentage with one decimal, whole at the ends (`100%`, `58.4%`, `0%`). */
export function formatPercent(fraction: number | null): string {
  if (fraction === null) return NOT_APPLICABLE;
  const odd = nonFinite(fraction);
  if (odd !== undefined) return odd;
  const pct = fraction * 100;
  if (pct === 100 || pct === 0) return `${pct}%`;
  return `${pct.toFixed(1)}%`;
}

/** A count of tokens, sequences or steps, whole (`4097`; no separators: these are sizes people grep for). */
export function formatCount(n: number | null): string {
  if (n === null) return NOT_APPLICABLE;
  return nonFinite(n) ?? String(Math.round(n));
}

/** Bytes in B, KiB or MiB with 3 significant digits (`512 B`, `96.0 KiB`, `1.50 MiB`). */
export function formatBytes(bytes: number | null): string {
  if (bytes === null) return NOT_APPLICABLE;
  const odd = nonFinite(bytes);
  if (odd !== undefined) return odd;
  if (Math.abs(bytes) < 1024) return `${Math.round(bytes)} B`;
  const units = ['KiB', 'MiB', 'GiB'] as const;
  let value = bytes / 1024;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
  return `${text} ${units[unit]}`;
}

/** Any other figure (a target's value or limit): 3 significant digits, exponent form when tiny or huge. */
export function formatNumber(x: number | null): string {
  if (x === null) return NOT_APPLICABLE;
  const odd = nonFinite(x);
  if (odd !== undefined) return odd;
  if (x === 0) return '0';
  if (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e6) return x.toExponential(2);
  return Number(x.toPrecision(3)).toString();
}

/** min–max of a spread over repeats, in ms. */
export function formatMsRange(range: { readonly min: number; readonly max: number } | null): string {
  if (range === null) return NOT_APPLICABLE;
  return `${formatMs(range.min)}–${formatMs(range.max)}`;
}

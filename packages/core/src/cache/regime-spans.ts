import type { RopeRegime } from '../rope/regime.js';
import type { RegimeSpan } from './kv-cache.js';

/**
 * Run-length record of which regime rotated each cached key: one entry per change, not per token.
 * Kept by each cache's `CacheRecord` (imported by it, never the other way round).
 */
export class RegimeSpans {
  private spans: RegimeSpan[] = [];

  get all(): readonly RegimeSpan[] {
    return this.spans;
  }

  /** Records `count` new keys at the end (`start` = current length) rotated under `regime`. */
  append(start: number, count: number, regime: RopeRegime): void {
    if (count === 0) return;
    const last = this.spans[this.spans.length - 1];
    if (last && last.regime.id === regime.id && last.end === start) {
      this.spans[this.spans.length - 1] = { start: last.start, end: start + count, regime: last.regime };
    } else {
      this.spans.push({ start, end: start + count, regime });
    }
  }

  /** Marks indices [0, length) as rotated under one regime (after a rerotation). */
  reset(length: number, regime: RopeRegime): void {
    this.spans = length > 0 ? [{ start: 0, end: length, regime }] : [];
  }

  crop(length: number): void {
    const kept: RegimeSpan[] = [];
    for (const s of this.spans) {
      if (s.start >= length) break;
      kept.push(s.end > length ? { start: s.start, end: length, regime: s.regime } : s);
    }
    this.spans = kept;
  }

  at(index: number): RopeRegime | undefined {
    let lo = 0;
    let hi = this.spans.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.spans[mid]!;
      if (index < s.start) hi = mid - 1;
      else if (index >= s.end) lo = mid + 1;
      else return s.regime;
    }
    return undefined;
  }

  copy(): RegimeSpans {
    const c = new RegimeSpans();
    c.spans = this.spans.slice();
    return c;
  }
}

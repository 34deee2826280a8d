import type { PolicyEvent } from './policy-events.js';
import type { PolicyResult, PolicyRowResult } from './cache-policy.js';

/**
 * `result` with `events` added to row `index`'s events (a new object; `result` is not changed).
 * `'first'` puts them before the events inner policies reported: use it for what a policy decided
 * before calling `next`, so a row's events read in the order things happened.
 */
export function withRowEvents(result: PolicyResult, index: number, events: readonly PolicyEvent[], position: 'first' | 'last' = 'last'): PolicyResult {
  if (events.length === 0) return result;
  const rows = result.rows.slice();
  const row = rows[index]!;
  const inner = row.events ?? [];
  rows[index] = { ...row, events: position === 'first' ? [...events, ...inner] : [...inner, ...events] };
  return { ...result, rows };
}

/** The events of one result row (empty when none were reported). */
export function rowEvents(row: PolicyRowResult): readonly PolicyEvent[] {
  return row.events ?? [];
}

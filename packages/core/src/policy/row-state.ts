import type { ForwardRow } from '../backend/backend.js';

/** Total length S of a row's sequence after its new tokens. */
export function lengthAfter(row: ForwardRow): number {
  return row.cache.length + row.tokens.length;
}

/** Whether some cached key of the row's sequence was rotated under another regime than its new tokens'. */
export function hasStaleKeys(row: ForwardRow): boolean {
  if (row.cache.length === 0) return false;
  const uniform = row.cache.uniformRegime();
  return uniform === undefined || uniform.id !== row.regime.id;
}

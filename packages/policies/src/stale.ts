import type { CachePolicy } from '@ropeswitch/core';

/**
 * The baseline: nothing happens at a regime change. Cached keys keep the rotation they were computed
 * with, new tokens get the new regime: what a hand-written loop over HF transformers does.
 */
export function stale(): CachePolicy {
  return { name: 'stale' };
}

/**
 * The policy chains the hardening tests (faults, aborts, isolation) drive: every named policy, the
 * shadow copy built in decode chunks, and compositions (a late shadow passing the crossing to
 * rerotate, `when()` routing by schedule or by length). Each says how exact it is, per schedule.
 */
import type { CachePolicy } from '@ropeswitch/core';
import { POLICY_NAMES, policyByName, rePrefill, rerotate, shadowPrefill, when } from '@ropeswitch/policies';

/**
 * How a chain's logits compare after a crossing: `oracle`, equal to the no-cache forward under the
 * regime of the total length; `planned-oracle`, under the regime of the planned length
 * (preEstimate); `twin`, only equal to an undisturbed run of the same chain.
 */
export type Exactness = 'oracle' | 'planned-oracle' | 'twin';

export interface PolicyCase {
  readonly name: string;
  /** A fresh chain (policies keep per-sequence state: one chain per wrapped backend). */
  readonly make: () => CachePolicy[];
  /** Exactness on LongRoPE, and on dynamic NTK. */
  readonly exact: readonly [Exactness, Exactness];
  /** Whether the chain may rotate cached keys before a forward (rerotate), which a failed forward does not undo. */
  readonly rotates: boolean;
}

const EXACT: Partial<Record<string, readonly [Exactness, Exactness]>> = {
  're-prefill': ['oracle', 'oracle'],
  'shadow-prefill': ['oracle', 'oracle'],
  'pre-estimate': ['planned-oracle', 'planned-oracle'],
};

export const POLICY_CASES: readonly PolicyCase[] = [
  ...POLICY_NAMES.map((name): PolicyCase => ({ name, make: () => [policyByName(name)], exact: EXACT[name] ?? ['twin', 'twin'], rotates: name === 'rerotate' })),
  // The copy built in decode chunks (a 10-token prompt lies outside the window of a threshold-16 model).
  { name: 'shadow-prefill { window: 6, chunk: 3 }', make: () => [shadowPrefill({ window: 6, chunk: 3 })], exact: ['oracle', 'oracle'], rotates: false },
  // A late shadow lets the crossing pass to rerotate, then swaps in the exact copy once caught up.
  { name: "[shadow-prefill { late: 'pass' }, rerotate]", make: () => [shadowPrefill({ window: 3, chunk: 2, late: 'pass' }), rerotate()], exact: ['twin', 'oracle'], rotates: true },
  {
    name: "when(changesEveryStep, re-prefill, [shadow-prefill { late: 'pass' }, rerotate])",
    make: () => [when((_row, { schedule }) => schedule.changesEveryStep, rePrefill(), [shadowPrefill({ window: 4, chunk: 3, late: 'pass' }), rerotate()])],
    exact: ['twin', 'oracle'],
    rotates: true,
  },
  // A policy before a when(): both see every row; the branch decides per sequence and per step.
  {
    name: 'warn-only → when(S > 12, re-prefill, stale)',
    make: () => [policyByName('warn-only'), when((row) => row.cache.length + row.tokens.length > 12, rePrefill(), policyByName('stale'))],
    exact: ['oracle', 'oracle'],
    rotates: false,
  },
];

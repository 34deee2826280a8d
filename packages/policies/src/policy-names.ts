import type { CachePolicy } from '@ropeswitch/core';
import { PolicyError } from '@ropeswitch/core';
import { preEstimate } from './pre-estimate.js';
import { rePrefill } from './re-prefill.js';
import { rerotate } from './rerotate.js';
import { shadowPrefill } from './shadow-prefill.js';
import { stale } from './stale.js';
import { warnOnly } from './warn-only.js';

/** The policies by the names the CLI and reports use. */
export const POLICY_NAMES = ['stale', 'warn-only', 're-prefill', 'rerotate', 'pre-estimate', 'shadow-prefill'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

const factories: Record<PolicyName, () => CachePolicy> = {
  stale,
  'warn-only': warnOnly,
  're-prefill': rePrefill,
  rerotate,
  'pre-estimate': preEstimate,
  'shadow-prefill': () => shadowPrefill(),
};

/** A fresh policy with default options for one of {@link POLICY_NAMES}. */
export function policyByName(name: string): CachePolicy {
  const make = (factories as Record<string, (() => CachePolicy) | undefined>)[name];
  if (!make || !Object.hasOwn(factories, name)) throw new PolicyError('unknown-policy', `unknown policy "${name}"; expected one of ${POLICY_NAMES.join(', ')}`);
  return make();
}

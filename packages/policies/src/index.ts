/**
 * @packageDocumentation
 * Cache policies for RoPE regime changes. Each is a factory returning a `CachePolicy`; compose them
 * with `wrapBackend(backend, ...policies)` from `@ropeswitch/core` (first policy sees the request
 * first) and route per sequence with {@link when}.
 */
export { stale } from './stale.js';
export { warnOnly } from './warn-only.js';
export { rePrefill } from './re-prefill.js';
export { type RerotateOptions, rerotate } from './rerotate.js';
export { preEstimate } from './pre-estimate.js';
export { shadowPrefill, type ShadowPrefillOptions } from './shadow-prefill.js';
export { when, type PolicyCondition } from './when.js';
export { policyByName, POLICY_NAMES, type PolicyName } from './policy-names.js';

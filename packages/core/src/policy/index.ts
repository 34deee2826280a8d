export type {
  CachePolicy,
  ForwardNext,
  PolicyRequest,
  PolicyResult,
  PolicyRow,
  PolicyRowResult,
  WrapForwardOptions,
} from './cache-policy.js';
export type * from './policy-events.js';
export { composePolicies } from './compose-policies.js';
export { wrapBackend, type PolicyBackend } from './wrap-backend.js';
export { withRowEvents, rowEvents } from './policy-result.js';
export { lengthAfter, hasStaleKeys } from './row-state.js';

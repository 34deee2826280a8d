export type {
  CachePolicy,
  ForwardNext,
  PolicyRequest,
  PolicyResult,
  PolicyRow,
  PolicyRowResult,
  PrefixSource,
  StaleKeyHandling,
  WrapForwardOptions,
} from './cache-policy.js';
export type * from './policy-events.js';
export { composePolicies } from './compose-policies.js';
export { type PolicyBackend, type SequenceReleaser, type WrapOptions, isPolicyBackend, scheduleOf, wrapBackend } from './wrap-backend.js';
export { backendCall } from './backend-call.js';
export { withRowEvents, rowEvents } from './policy-result.js';
export { lengthAfter, hasStaleKeys } from './row-state.js';
export { type RowRewrite, type RowRewriter, eventsOnly, forwardWithRewrites, rewriteRows } from './row-rewrite.js';

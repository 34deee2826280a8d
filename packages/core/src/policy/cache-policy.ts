import type { Backend, ForwardRequest, ForwardResult, ForwardRow, RowLogits } from '../backend/backend.js';
import type { KvCache } from '../cache/kv-cache.js';
import type { RopeSchedule } from '../rope/schedule.js';
import type { PolicyEvent } from './policy-events.js';

/**
 * A forward row as policies see it: the backend's row plus what the sequence's owner knows about
 * its future. Backends ignore the extra fields.
 */
export interface PolicyRow extends ForwardRow {
  /** Total length the sequence is expected to reach (prompt + max new tokens), when known. */
  readonly plannedLength?: number;
  /** True for the rows of a prompt (`Session.prefill`); decode rows leave it unset. */
  readonly prefill?: boolean;
}

export interface PolicyRequest extends ForwardRequest {
  readonly rows: readonly PolicyRow[];
}

/** One row's logits and the events policies reported for its sequence during this forward. */
export interface PolicyRowResult extends RowLogits {
  readonly events?: readonly PolicyEvent[];
}

export interface PolicyResult extends ForwardResult {
  readonly rows: readonly PolicyRowResult[];
}

/** Runs the rest of the chain (the next policy, or the backend after the last one). */
export type ForwardNext = (request: PolicyRequest) => Promise<PolicyResult>;

export interface WrapForwardOptions {
  /** The request as the previous policy passed it on. */
  readonly request: PolicyRequest;
  /** The rest of the chain. Call it at most once. */
  readonly next: ForwardNext;
  /** The backend under the chain: capabilities, `createCache`, `rerotateKeys`. */
  readonly backend: Backend;
  /** The model's RoPE schedule (threshold, regimes). */
  readonly schedule: RopeSchedule;
}

/**
 * A KV-cache policy: a plain object of optional hooks around a backend's forward call (like a
 * Vercel AI SDK middleware). `wrapForward` sees each request with every row's cache and the
 * schedule, and may rewrite rows (another regime, a rebuilt cache), add rows (a shadow copy's
 * chunk, batched into the same pass over the weights), rotate caches, report events on a row's
 * result, or pass the request through unchanged. It must return one result row per request row,
 * in order.
 *
 * Each sequence decides for itself: a policy keeps per-sequence state keyed by the sequence's
 * cache (whose identity survives a swap, see {@link KvCache.replaceWith}), never across rows.
 */
export interface CachePolicy {
  /** Shown in events and reports (e.g. `re-prefill`). */
  readonly name: string;
  wrapForward?(options: WrapForwardOptions): Promise<PolicyResult>;
  /** The sequence owning `cache` ended: drop (and dispose) whatever is kept for it. */
  releaseSequence?(cache: KvCache): void;
}
